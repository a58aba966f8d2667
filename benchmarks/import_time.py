"""Cost of ``import x402sim``, against ``import httpx`` measured in the same run.

Run: ``.venv/bin/python benchmarks/import_time.py`` (``--repeat 9`` for more runs).

Each import runs in a fresh interpreter (``python -c "import ..."``), ``--repeat`` times, alternating
the two so that both see the same machine; the time is measured inside the interpreter around the
import statement alone (interpreter start-up excluded), and the median of the runs is kept.
1. baseline: ``import httpx`` (an HTTP client many libraries load; x402sim loads it too, for the
   chain's JSON-RPC client);
2. ``import x402sim``: the roles, the embedded chain (py-evm), the protocol, governance and trust;
   not the command line, the simulator or the web server (see ``tests/test_imports.py``).
It prints milliseconds per import and the ratio to the baseline. The machines are noisy: read the
ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

TIMED = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _once(module: str) -> float:
    """Seconds ``import module`` takes in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", TIMED.format(module=module)], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh interpreters per import (default 5)")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"httpx": [], "x402sim": []}
    for _ in range(args.repeat):
        for module in runs:
            runs[module].append(_once(module))
    median = {k: statistics.median(v) for k, v in runs.items()}
    b = median["httpx"]
    print(f"import time, median of {args.repeat} fresh interpreters (ms, ratio to the baseline):")
    rows = {"httpx": "baseline, import httpx", "x402sim": "import x402sim"}
    for key, label in rows.items():
        print(f"  {label:<28} {median[key] * 1e3:8.1f}   {median[key] / b:6.2f}x")


if __name__ == "__main__":
    main()
