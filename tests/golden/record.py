"""Golden outputs that prove a refactoring changed no behaviour.

Each golden file is what a command of x402sim printed before the change, with its wall-clock
fields removed: a shipped scenario's ``summary.json`` at its default seed (on each backend the
scenario allows), or the conformance JSON report of ``--builtin reference`` for one role.
``tests/golden/test_golden.py`` runs the same commands and demands identical results.

Two sizes: ``small`` cases (a short virtual duration, or a thousandth of the population) run in
``make test``; ``full`` cases (each scenario as shipped) run in ``make soak``.

Record or refresh the goldens (only when a change is *meant* to change results; review the diff):

    .venv/bin/python -m tests.golden.record small
    .venv/bin/python -m tests.golden.record full conformance

``--tree DIR`` runs another checkout's code (``PYTHONPATH=DIR``) with this interpreter, which is how
the goldens were taken from the commit before the refactoring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
SCENARIOS = ROOT / "scenarios"
# Fields that change from run to run whatever the code: wall-clock times and memory; in conformance
# reports also each case's evidence (the ports the OS gave, HTTP dates, fresh harness nonces); and the
# ``tool`` (x402sim's name and version) that summaries and reports record, which changes with releases.
WALL_CLOCK = {
    "wall_seconds",
    "counterfactual_wall_seconds",
    "peak_rss_mb",
    "payments_per_wall_second",
    "duration",
    "started",
}
NOT_REPEATABLE = {"evidence", "tool"}


@dataclass(frozen=True)
class Case:
    """One golden: a command's arguments, and the file its stripped output is kept in."""

    name: str  # file stem under tests/golden/<size>/
    size: str  # "small", "full" or "conformance"
    args: tuple[str, ...]

    @property
    def path(self) -> Path:
        return GOLDEN / self.size / f"{self.name}.json"


# The other backend each scenario is also recorded on (None: the scenario allows one backend only).
OTHER_BACKEND = {
    "agent-toolchain": "ledger",
    "budget-governance": "ledger",
    "channel-withdraw-race": "ledger",
    "channels-vs-exact": "ledger",
    "compromised-agent": "evm",
    "facilitator-outage": "ledger",
    "fee-economics": "ledger",
    "mandated-agents": None,  # trust keys: EVM only
    "non-reverting-token": "ledger",
    "pay-per-crawl": None,
    "permit2-cold-start": "ledger",
    "quickstart": "ledger",
    "replay-attack": "ledger",
    "reputation-market": None,
    "slow-finality": "ledger",
    "toctou-race": "ledger",
    "upto-llm": "ledger",
    "x402scan-month": "evm",
    "x402-december-2025": None,  # 63 M payments: the ledger only, and only its small size
}
# Scenarios whose other backend is held in the full set only (``make soak``), for the test budget:
# the differential tests of the ledger against py-evm cover their mechanisms in ``make test``.
OTHER_IN_FULL_ONLY = {"channel-withdraw-race", "channels-vs-exact", "permit2-cold-start", "upto-llm"}
# The small version of each scenario: a shorter virtual duration (the month: 72 agents, 1/1000).
SMALL = {name: ("--set", "simulation.duration=30") for name in OTHER_BACKEND}
SMALL["compromised-agent"] = ("--set", "simulation.duration=360")
SMALL["mandated-agents"] = ("--set", "simulation.duration=90")
SMALL["reputation-market"] = ("--set", "simulation.duration=90")
SMALL["pay-per-crawl"] = ("--set", "simulation.duration=60")
SMALL["x402scan-month"] = ("--set", "agents.buyers.count=72", "--set", "x402scan.buyers=72")
# December 2025 at 1/1000 of its population (its header's 1/1000 size), for its first day: the whole
# month at 1/1000 is 63,000 payments, about 2 minutes
SMALL["x402-december-2025"] = tuple(
    arg
    for option in (
        "agents.dexter.count=27",
        "agents.cdp.count=19",
        "agents.payai.count=11",
        "agents.daydreams.count=7",
        "agents.wash.count=1",
        "simulation.duration=86400",
    )
    for arg in ("--set", option)
)
# Scenarios recorded at their small size only (as shipped, December 2025 is 63 M payments)
NO_FULL = {"x402-december-2025"}


def scenario_cases(size: str) -> list[Case]:
    cases = []
    for name, other in OTHER_BACKEND.items():
        if size == "full" and name in NO_FULL:
            continue
        extra = SMALL[name] if size == "small" else ()
        cases.append(Case(f"{name}", size, ("run", str(SCENARIOS / f"{name}.toml"), *extra)))
        if other is None or (size == "small" and (name == "x402scan-month" or name in OTHER_IN_FULL_ONLY)):
            continue  # the month on py-evm runs at its small size even in the full set (hours otherwise)
        more = SMALL[name] if name == "x402scan-month" else extra
        cases.append(
            Case(
                f"{name}.{other}",
                size,
                ("run", str(SCENARIOS / f"{name}.toml"), *more, "--set", f"chain.backend={other}"),
            )
        )
    return cases


def conformance_cases() -> list[Case]:
    # The server is told to wait 2 s for a facilitator, so the hung-facilitator cases take seconds.
    bound = {"server": ("--facilitator-timeout", "2")}
    return [
        Case(
            role,
            "conformance",
            ("conformance", role, "--builtin", "reference", "--seed", "1", *bound.get(role, ())),
        )
        for role in ("server", "facilitator", "client")
    ]


CASES = {"small": scenario_cases("small"), "full": scenario_cases("full"), "conformance": conformance_cases()}


def strip(value):
    """``value`` without its wall-clock and unrepeatable fields, at any depth."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in WALL_CLOCK | NOT_REPEATABLE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def produce(case: Case, tree: Path | None = None) -> dict:
    """Run ``case``'s command and return its stripped JSON output."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        if case.args[0] == "run":
            args = [*case.args, "--out", str(Path(tmp) / "run"), "--quiet", "--no-plots"]
            result_file = Path(tmp) / "run" / "summary.json"
        else:
            args = [*case.args, "--json", str(out), "--quiet"]
            result_file = out
        done = subprocess.run(
            [sys.executable, "-m", "x402sim", *args], env=env, cwd=tmp, capture_output=True, text=True
        )
        if not result_file.exists():
            raise RuntimeError(f"{case.name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        return strip(json.loads(result_file.read_text()))


def write(case: Case, data: dict) -> None:
    case.path.parent.mkdir(parents=True, exist_ok=True)
    case.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def main(argv: list[str]) -> int:
    tree = None
    if "--tree" in argv:
        at = argv.index("--tree")
        tree = Path(argv[at + 1]).resolve()
        argv = argv[:at] + argv[at + 2 :]
    for size in argv or ["small"]:
        for case in CASES[size]:
            try:
                data = produce(case, tree)
            except RuntimeError as exc:
                print(f"FAILED {exc}", flush=True)
                continue
            write(case, data)
            print(f"recorded {case.size}/{case.name}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
