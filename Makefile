# One-command setup: every target that runs code depends on the virtualenv stamp,
# which is rebuilt whenever the pins change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp

.PHONY: demo test lint format docs bench fuzz soak lock clean node-deps

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "x402sim needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The main job: a scenario on the embedded chain, ending with a report (runs/quickstart/report.md).
demo: $(STAMP)
	$(VENV)/bin/x402sim run scenarios/quickstart.toml --force

lint: $(STAMP)
	$(VENV)/bin/ruff check x402sim tests benchmarks examples
	$(VENV)/bin/ruff format --check x402sim tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy x402sim

format: $(STAMP)
	$(VENV)/bin/ruff format x402sim tests benchmarks examples
	$(VENV)/bin/ruff check --fix x402sim tests benchmarks examples

# The documentation site, into site/ (open site/index.html); --strict: a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --site-dir site

# The TypeScript SDK interop tests need node and npm; without them they are skipped, saying why.
node-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(NODE_STAMP); \
	else echo "npm not found: the TypeScript SDK interop tests will be skipped"; fi

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: lint node-deps
	@echo "soak tests are deselected (pytest -m 'not soak'); run them with: make soak SEED=1 STEPS=100000"
	$(PY) -m pytest -n auto

bench: $(STAMP)
	$(PY) benchmarks/settlement_batch.py
	$(PY) benchmarks/paid_requests.py
	$(PY) benchmarks/rpc_starvation.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/sim_throughput.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/import_time.py

# A long seeded fuzz campaign against served processes (loopback only); FUZZ_INPUTS=N to resize.
FUZZ_INPUTS ?= 100000
fuzz: $(STAMP)
	$(VENV)/bin/x402sim fuzz --inputs $(FUZZ_INPUTS) --seed 1

# The long runs: the differential state machine (testbed vs HTTP services), seeded, printing what it
# ran, then every shipped scenario at full size against its golden summary.
SEED ?= 1
STEPS ?= 100000
soak: $(STAMP)
	X402SIM_SOAK_SEED=$(SEED) X402SIM_SOAK_STEPS=$(STEPS) $(PY) -m pytest -m soak -p no:cacheprovider -s tests/actors/test_differential.py
	$(PY) -m pytest -m soak -p no:cacheprovider tests/golden

# Re-resolve the pinned tree from pyproject.toml (run by a maintainer, never by CI).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ echo "# Whole dependency tree of x402sim[dev], pinned. Regenerate with 'make lock'."; echo "setuptools==80.9.0"; .lock-venv/bin/pip freeze --exclude-editable --exclude x402sim; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .mypy_cache .hypothesis build *.egg-info $(NODE_DIR)/node_modules
