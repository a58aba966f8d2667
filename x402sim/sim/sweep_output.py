"""What a sweep produced (``SweepResult``) and its files: sweep.csv, sweep.json and the plots.

Rules:

* sweep.csv has one row per run (grid values, run, seed, every metric of ``headline.METRICS``, wall
  seconds, the last line of a failed run's traceback); sweep.json one entry per combination (n,
  mean, std and 95% interval of each metric, the failures' tracebacks), the grid, the prices and
  the break-even crossings (``sweep_plots.break_even_crossings``). A grid value is written as it
  is when it is a number or a string, else as TOML (``cell``).
* The files are written into a temporary folder beside ``out`` and moved into place at the end;
  an existing ``out`` is refused without ``force``, and a failed write leaves nothing.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .headline import METRICS
from .run import OutputExists
from .stats import CONFIDENCE, is_number
from .toml_text import toml_literal


@dataclass
class SweepResult:
    """What a sweep produced. ``rows``: one per run (grid parameters, ``run``, ``seed``, metrics,
    ``wall_seconds``, ``error``); ``stats``: one per combination (as in sweep.json); ``failures``:
    the failed runs with their tracebacks; ``out``: where it wrote (None without ``out``)."""

    scenario: str
    grid: dict[str, list[Any]]
    runs: int
    rows: list[dict] = field(repr=False)
    stats: list[dict] = field(repr=False)
    failures: list[dict] = field(repr=False)
    prices_usd: list[float] = field(repr=False, default_factory=list)
    out: Path | None = None
    wall_seconds: float = 0.0

    @property
    def all_failed(self) -> bool:
        return bool(self.rows) and all(row["error"] for row in self.rows)

    @property
    def gas_key(self) -> str | None:
        """The grid key the break-even plot uses as gas price: the first numeric ``*_gwei`` key."""
        for key, values in self.grid.items():
            if key.endswith("_gwei") and len(values) > 1 and all(is_number(v) for v in values):
                return key
        return None

    def break_even(self) -> list[dict]:
        from .sweep_plots import break_even_crossings

        return break_even_crossings(self)


def cell(value: Any) -> Any:
    """A grid value as a CSV cell or JSON value: numbers and strings as they are, else TOML."""
    if isinstance(value, float) and not math.isfinite(value):
        return toml_literal(value)
    return value if isinstance(value, int | float | str) else toml_literal(value)


def write_sweep(result: SweepResult, target: Path, force: bool, metrics: list[str], label: str) -> None:
    """Write sweep.csv, sweep.json and the plots of ``metrics`` into ``target``, all at once (module
    docstring); ``label`` names the scenario's source in sweep.json."""
    from .sweep_plots import write_plots

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)
    try:
        with (staging / "sweep.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            columns = [*result.grid, "run", "seed", *METRICS, "wall_seconds", "error"]
            writer.writerow(columns)
            for row in result.rows:
                cells = [cell(row[c]) if c in result.grid else row[c] for c in columns[:-1]]
                error = row["error"].strip().splitlines()[-1] if row["error"] else ""
                writer.writerow(["" if c is None else c for c in cells] + [error])
        images = write_plots(result, staging, metrics)
        document = {
            "scenario": result.scenario,
            "source": label,
            "grid": {key: [cell(v) for v in values] for key, values in result.grid.items()},
            "runs": result.runs,
            "seed_derivation": "derive_seed(simulation.seed, parameters, run) in x402sim/sim/sweep.py",
            "confidence": CONFIDENCE,
            "runs_ok": sum(1 for row in result.rows if not row["error"]),
            "runs_failed": len(result.failures),
            "wall_seconds": result.wall_seconds,
            "prices_usd": result.prices_usd,
            "gas_key": result.gas_key,
            "break_even": result.break_even(),
            "plots": images,
            "combinations": [
                {**s, "parameters": {k: cell(v) for k, v in s["parameters"].items()}} for s in result.stats
            ],
        }
        text = json.dumps(document, indent=2, allow_nan=False, default=json_default)
        (staging / "sweep.json").write_text(text + "\n", encoding="utf-8")
        if target.exists():
            if not force:
                raise OutputExists(f"{target} exists; give --force to replace it")
            shutil.rmtree(target)
        staging.rename(target)
        result.out = target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def json_default(value: Any) -> Any:
    return toml_literal(value)
