# One-command setup: every target that runs code depends on the virtualenv stamp,
# which is rebuilt whenever the pins change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp

.PHONY: demo test lint format docs bench fuzz soak lock clean node-deps browser

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "x402sim needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The main job: a scenario on the embedded chain, ending with a report (runs/quickstart/report.md, report.html).
demo: $(STAMP)
	$(VENV)/bin/x402sim run scenarios/quickstart.toml --force

lint: $(STAMP)
	$(VENV)/bin/ruff check x402sim tests benchmarks examples docsgen
	$(VENV)/bin/ruff format --check x402sim tests benchmarks examples docsgen
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy x402sim

format: $(STAMP)
	$(VENV)/bin/ruff format x402sim tests benchmarks examples docsgen
	$(VENV)/bin/ruff check --fix x402sim tests benchmarks examples docsgen

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

# Chromium for the browser tests of the HTML reports (tests/browser): Debian's package, installed with
# apt-get where it is missing and apt-get can run (as root, or through sudo without a password).
# Elsewhere those tests are skipped, saying why. A failed install is reported loudly but fails nothing.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	skip="the browser tests of the HTML reports will be skipped"; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "no $(CHROMIUM) and no apt-get: $$skip"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "no $(CHROMIUM), and apt-get needs root (no password-less sudo): $$skip"; exit 0; fi; \
	echo "installing Chromium for the browser tests: apt-get install -y --no-install-recommends chromium"; \
	if $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium && [ -x $(CHROMIUM) ]; then exit 0; fi; \
	echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
	echo "!!! apt-get could not install chromium (see above): $$skip" >&2; \
	echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2

# The package is byte-compiled first: where writing bytecode is off (PYTHONDONTWRITEBYTECODE), each
# of the many processes the suite starts would compile every x402sim module it imports again.
test: lint node-deps browser
	@echo "soak tests are deselected (pytest -m 'not soak'); run them with: make soak SEED=1 STEPS=100000"
	$(PY) -m compileall -q x402sim
	$(PY) -m pytest -n auto --dist worksteal --durations=15

bench: $(STAMP)
	$(PY) benchmarks/settlement_batch.py
	$(PY) benchmarks/paid_requests.py
	$(PY) benchmarks/paid_tool_calls.py
	$(PY) benchmarks/rpc_starvation.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/sim_throughput.py
	$(PY) benchmarks/permit2_gas.py
	$(PY) benchmarks/mechanism_throughput.py
	$(PY) benchmarks/channels.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/import_time.py

# A long seeded fuzz campaign against served processes (loopback only); FUZZ_INPUTS=N to resize.
FUZZ_INPUTS ?= 100000
fuzz: $(STAMP)
	$(VENV)/bin/x402sim fuzz --inputs $(FUZZ_INPUTS) --seed 1

# The long runs: the differential state machine (testbed vs HTTP services), seeded, printing what it
# ran, then every shipped scenario at full size against its golden summary (December 2025 has its small one
# only), the month at 1/100 and December 2025 at 1/1000.
SEED ?= 1
STEPS ?= 100000
LEDGER_STEPS ?= 2000
CHANNEL_STEPS ?= 2000
soak: $(STAMP)
	X402SIM_SOAK_SEED=$(SEED) X402SIM_SOAK_STEPS=$(STEPS) $(PY) -m pytest -m soak -p no:cacheprovider -s tests/actors/test_differential.py
	X402SIM_SOAK_STEPS=$(LEDGER_STEPS) $(PY) -m pytest -m soak -p no:cacheprovider tests/evm/test_ledger_permit2.py tests/evm/test_ledger_batch.py
	X402SIM_SOAK_STEPS=$(CHANNEL_STEPS) $(PY) -m pytest -m soak -p no:cacheprovider tests/evm/test_batch_stateful.py
	$(PY) -m pytest -m soak -p no:cacheprovider tests/golden tests/sim/test_month.py tests/sim/test_metrics.py tests/sim/test_december.py

# Re-resolve the pinned tree from pyproject.toml (run by a maintainer, never by CI). --all keeps wheel
# (vyper needs it), which pip freeze leaves out; setuptools is pinned by hand (the venv's own is older).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -e '.[sim,dask,agents,dev]'
	{ echo "# Whole dependency tree of x402sim[sim,dask,agents,dev], pinned. Regenerate with 'make lock'."; echo "setuptools==80.9.0"; .lock-venv/bin/pip freeze --all --exclude pip --exclude setuptools --exclude-editable --exclude x402sim; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .mypy_cache .hypothesis build *.egg-info $(NODE_DIR)/node_modules
