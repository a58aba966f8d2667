"""Monte Carlo sweeps: every combination of a grid of overrides, run many times on a Dask cluster.

``x402sim sweep FILE --grid key.path=v1,v2 [--grid ...] --runs R`` (and ``sweep(...)`` from Python)
runs each combination of grid values ``R`` times and writes what the runs say, with confidence
intervals.

Rules:

* Grid keys are ``x402sim run --set`` paths and grid values are values (``sweep`` takes them
  parsed; the command reads them as TOML values, a bare word being a string: ``cli.parse_grid``
  splits ``--grid k=a,b`` at commas outside brackets, braces and quotes, so an inline table such as
  ``'chain.fee={model="l1", base_fee_gwei=20}'`` is one value). A grid key with one value is a
  fixed override. Every combination is validated (``load_scenario``) in this process
  before any cluster starts: a typo fails at once, naming the combination, the key and the problem.
* Seeds. Run ``i`` (0-based) of a combination gets ``derive_seed(scenario seed, parameters, i)``:
  the first 53 bits of the 8-byte BLAKE2b digest (person ``x402sim-sweep``) of the compact JSON
  text ``[scenario seed, [[key, value], ...], i]``, where the pairs are the combination's parsed
  TOML values sorted by key and the scenario seed is ``simulation.seed`` after the combination's
  overrides. The same command gives the same seeds, in any order of ``--grid`` options and of
  spellings of a value (``1e-3`` and ``0.001``); 53 bits survive JSON readers that use doubles.
* Engine: dask.distributed (``cluster``). By default a ``LocalCluster`` of ``workers``
  single-threaded worker processes (``os.cpu_count()``, at most one per run) bound to 127.0.0.1, its
  dashboard on loopback too, closed at the end; or a ``Client`` connected to an existing scheduler
  (loopback only unless ``allow_remote``: a scheduler can make this process unpickle what it sends). Each run
  is one task calling ``x402sim.sim.run.run(..., keep_rows=False, plots=False)`` without an output
  folder; it returns a small dict (parameters, seed, metrics, wall seconds, or the formatted
  traceback of what it raised). Results are taken as they finish (``as_completed``).
* A run that raises is recorded with its traceback and the sweep goes on. The sweep fails (exit 1)
  only when every run failed: a few crashing combinations are a finding, not a broken sweep.
* Metrics per run (``headline.METRICS``) come from the run's summary. Two answer the fee question:
  ``break_even_fee_usd`` = ``gas.usd_per_settlement``, the flat fee per settlement at which the
  facilitators' margin is zero (no free tier); ``break_even_price_usd`` = gas the facilitators
  paid (USD, reverted transactions included) / paid requests, the price per request at which
  settlement gas equals what the requests paid. A request priced below it does not pay for its own
  settlement, whoever carries the gas. With a grid over a gas price (a key ending in ``_gwei``,
  e.g. ``chain.fee.l2_base_fee_gwei``), ``break_even.png`` draws it against that gas price, with
  the scenario's prices as reference lines, and sweep.json says at which gas price each line
  crosses each price (linear interpolation between grid points, see ``sweep_plots``).
* Statistics per combination and numeric metric (booleans count as 0/1), over the runs where the
  metric has a value: n, mean, sample standard deviation and the 95% confidence interval of the
  mean (``stats.describe``).
* Outputs (``out``, ``sweep_output``): sweep.csv (one row per run), sweep.json (per combination),
  PNG plots. They are written into a temporary folder beside ``out`` and moved into place at the
  end; an existing ``out`` is refused without ``force`` before anything runs, and a failed sweep
  leaves nothing. Without ``out`` (from Python) nothing is written: the ``SweepResult`` holds it
  all. The ``x402sim sweep`` command is ``cli.sweep_command``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..money import UNIT
from .cluster import SweepError, dask_client
from .headline import DEFAULT_PLOTS, METRICS, headline
from .run import OutputExists
from .run import run as simulate
from .scenario import Scenario, ScenarioError, load_scenario, price_mean
from .stats import describe
from .sweep_output import SweepResult, write_sweep
from .toml_text import toml_literal

if TYPE_CHECKING:
    from rich.progress import Progress

SEED_BITS = 53


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of grid values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def derive_seed(scenario_seed: int, params: dict[str, Any], run: int) -> int:
    """The seed of run ``run`` of the combination ``params`` (see the module docstring)."""
    pairs = [[key, params[key]] for key in sorted(params)]
    text = json.dumps([scenario_seed, pairs, run], separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=b"x402sim-sweep").digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)


def run_task(task: dict) -> dict:
    """Run one simulation (the task a worker executes); never raises for what the run raises."""
    started = time.perf_counter()
    try:
        result = simulate(
            task["scenario"], seed=task["seed"], overrides=task["overrides"], keep_rows=False, plots=False
        )
        metrics, error = headline(result.summary), ""
    except Exception:
        metrics, error = {}, traceback.format_exc()
    return {
        "combination": task["combination"],
        "run": task["run"],
        "seed": task["seed"],
        "params": task["params"],
        "metrics": metrics,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "error": error,
    }


def _source(scenario: Scenario | str | Path | dict) -> tuple[dict, str]:
    """The scenario as a plain dict (what workers get) and a label for messages."""
    if isinstance(scenario, Scenario):
        return scenario.model_dump(mode="json", by_alias=True), "scenario"
    if isinstance(scenario, dict):
        return json.loads(json.dumps(scenario)), "scenario"
    path = Path(scenario)
    load_scenario(path)  # the file's own problems, named as `x402sim run` names them
    with path.open("rb") as f:
        return tomllib.load(f), str(path)


def _validate(
    base: dict, label: str, grid: dict[str, list[Any]]
) -> tuple[Scenario, list[tuple[dict, dict[str, Any], int]]]:
    """The scenario without the grid, and (parameters, overrides, scenario seed) of every
    combination, each validated."""
    try:
        plain = load_scenario(base, where=label)
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None
    out = []
    for params in combinations(grid):
        overrides = dict(params)
        try:
            scenario = load_scenario(base, overrides, where=label)
        except ScenarioError as exc:
            where = exc.where.replace("--set ", "--grid ", 1)
            said = " ".join(f"{key}={toml_literal(value)}" for key, value in params.items())
            raise SweepError(f"{where}: {exc.problem} (in the combination {said})") from None
        out.append((params, overrides, scenario.simulation.seed))
    return plain, out


def _prices(scenario: Scenario) -> list[float]:
    """The endpoints' prices in USD; a price drawn from a distribution counts as its mean."""
    prices = {price_mean(e.price) for server in scenario.servers for e in server.endpoints}
    return sorted(p / UNIT for p in prices)


def sweep(
    scenario: Scenario | str | Path | dict,
    grid: dict[str, list[Any]],
    runs: int,
    *,
    workers: int | None = None,
    scheduler=None,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
    plots: Sequence[str] | None = None,
    allow_remote: bool = False,
) -> SweepResult:
    """Run every combination of ``grid`` ({key.path: [values]}) ``runs`` times.

    ``workers``: size of the local cluster started for the sweep (default: one per core, at most
    one per run); ``scheduler``: instead, a scheduler address, a ``LocalCluster`` or a ``Client``.
    With ``out``, write sweep.csv, sweep.json and plots there (``plots``: metrics to draw, default
    ``DEFAULT_PLOTS``). ``progress``: a progress bar and one line per failed run on stderr.
    Raises ``SweepError`` (before any run) for a bad grid, scenario or output folder, and
    ``OutputExists`` for an existing ``out`` without ``force``."""
    if workers is not None and scheduler is not None:
        raise SweepError("--workers and --scheduler exclude each other: start a local cluster or join one")
    if workers is not None and workers < 1:
        raise SweepError("--workers must be at least 1")
    if runs < 1:
        raise SweepError("--runs must be at least 1")
    if not grid:
        raise SweepError("give at least one --grid key.path=value1,value2,...")
    for key, values in grid.items():
        if not values:
            raise SweepError(f"--grid {key}: no values")
        literals = [toml_literal(v) for v in values]
        if len(set(literals)) != len(literals):
            raise SweepError(f"--grid {key}: a value is listed twice")
    metrics = list(DEFAULT_PLOTS if plots is None else plots)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SweepError(f"--plot {unknown[0]}: not a metric (metrics: {', '.join(METRICS)})")
    try:
        base, label = _source(scenario)
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None
    plain, combos = _validate(base, label, grid)
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and not force:
        raise OutputExists(f"{target} exists; give --force to replace it")

    tasks = [
        {
            "combination": index,
            "run": r,
            "seed": derive_seed(seed, params, r),
            "params": params,
            "overrides": overrides,
            "scenario": base,
        }
        for index, (params, overrides, seed) in enumerate(combos)
        for r in range(runs)
    ]
    started = time.perf_counter()
    with dask_client(workers, scheduler, allow_remote, len(tasks)) as client:
        results = _gather(client, tasks, progress)
    results.sort(key=lambda res: (res["combination"], res["run"]))
    result = SweepResult(
        scenario=plain.simulation.name,
        grid={key: list(values) for key, values in grid.items()},
        runs=runs,
        rows=[_row(res, grid) for res in results],
        stats=_stats(combos, results),
        failures=[
            {"params": res["params"], "run": res["run"], "seed": res["seed"], "traceback": res["error"]}
            for res in results
            if res["error"]
        ],
        prices_usd=_prices(plain),
        wall_seconds=round(time.perf_counter() - started, 3),
    )
    if target is not None:
        write_sweep(result, target, force, metrics, label)
    return result


def _gather(client, tasks: list[dict], progress: bool) -> list[dict]:
    from distributed import as_completed

    token = hashlib.blake2b(os.urandom(16), digest_size=6).hexdigest()  # keys unique on a shared scheduler
    futures = [
        client.submit(
            run_task, task, key=f"x402sim-run-{token}-{task['combination']}-{task['run']}", pure=False
        )
        for task in tasks
    ]
    by_key = {f.key: task for f, task in zip(futures, tasks, strict=True)}
    results: list[dict] = []
    with _Progress(len(tasks), progress) as bar:
        for future in as_completed(futures):
            task = by_key[future.key]
            if future.status == "finished":
                res = future.result()
            else:  # the task itself never raises: the worker died, or the task was lost
                exc = future.exception()
                error = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
                res = {**_task_fields(task), "metrics": {}, "wall_seconds": None, "error": error}
            future.release()
            results.append(res)
            bar.advance(res)
    return results


def _task_fields(task: dict) -> dict:
    return {key: task[key] for key in ("combination", "run", "seed", "params")}


class _Progress:
    """A rich progress bar on stderr (completed/total, failures) and a line per failed run."""

    def __init__(self, total: int, show: bool) -> None:
        self.total, self.show, self.failed = total, show, 0
        self.bar: Progress | None = None

    def __enter__(self) -> _Progress:
        if self.show:
            from .bars import counting_bar

            self.bar = counting_bar("runs, {task.fields[failed]} failed")
            self.task = self.bar.add_task("sweep", total=self.total, failed=0)
        return self

    def advance(self, res: dict) -> None:
        if res["error"]:
            self.failed += 1
        if self.bar is None:
            return
        if res["error"]:
            params = " ".join(f"{k}={toml_literal(v)}" for k, v in res["params"].items())
            last = res["error"].strip().splitlines()[-1]
            from rich.markup import escape

            said = escape(f"{params} run {res['run']} (seed {res['seed']}): {last}")
            self.bar.console.print(f"[red]run failed:[/red] {said}", highlight=False, soft_wrap=True)
        self.bar.update(self.task, advance=1, failed=self.failed)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _row(res: dict, grid: dict) -> dict:
    row = {key: res["params"][key] for key in grid}
    row["run"] = res["run"]
    row["seed"] = res["seed"]
    for name in METRICS:
        row[name] = res["metrics"].get(name)
    row["wall_seconds"] = res["wall_seconds"]
    row["error"] = res["error"]
    return row


def _stats(combos: list[tuple[dict, dict[str, Any], int]], results: list[dict]) -> list[dict]:
    out = []
    for index, (params, _, _) in enumerate(combos):
        mine = [res for res in results if res["combination"] == index]
        ok = [res for res in mine if not res["error"]]
        out.append(
            {
                "parameters": params,
                "runs_ok": len(ok),
                "runs_failed": len(mine) - len(ok),
                "seeds": [res["seed"] for res in mine],
                "metrics": {name: describe([res["metrics"][name] for res in ok]) for name in METRICS},
                "failures": [
                    {"run": res["run"], "seed": res["seed"], "traceback": res["error"]}
                    for res in mine
                    if res["error"]
                ],
            }
        )
    return out


__all__ = ["SEED_BITS", "SweepError", "SweepResult", "combinations", "derive_seed", "run_task", "sweep"]
