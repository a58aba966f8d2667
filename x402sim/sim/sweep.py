"""Monte Carlo sweeps: every combination of a grid of overrides, run many times on a Dask cluster.

``x402sim sweep FILE --grid key.path=v1,v2 [--grid ...] --runs R`` (and ``sweep(...)`` from Python)
runs each combination of grid values ``R`` times and writes what the runs say, with confidence
intervals.

Rules:

* Grid keys are ``x402sim run --set`` paths and grid values are TOML values (a bare word is a
  string); ``--grid k=a,b`` splits at commas outside brackets, braces and quotes, so an inline
  table such as ``'chain.fee={model="l1", base_fee_gwei=20}'`` is one value. A grid key with one
  value is a fixed override. Every combination is validated (``load_scenario``) in this process
  before any cluster starts: a typo fails at once, naming the combination, the key and the problem.
* Seeds. Run ``i`` (0-based) of a combination gets ``derive_seed(scenario seed, parameters, i)``:
  the first 53 bits of the 8-byte BLAKE2b digest (person ``x402sim-sweep``) of the compact JSON
  text ``[scenario seed, [[key, value], ...], i]``, where the pairs are the combination's parsed
  TOML values sorted by key and the scenario seed is ``simulation.seed`` after the combination's
  overrides. The same command gives the same seeds, in any order of ``--grid`` options and of
  spellings of a value (``1e-3`` and ``0.001``); 53 bits survive JSON readers that use doubles.
* Engine: dask.distributed. By default a ``LocalCluster`` of ``workers`` single-threaded worker
  processes (``os.cpu_count()``, at most one per run) bound to 127.0.0.1, its dashboard on
  loopback too, closed at the end; or a ``Client`` connected to an existing scheduler (loopback
  only unless ``allow_remote``: a scheduler can make this process unpickle what it sends). Each run
  is one task calling ``x402sim.sim.run.run(..., keep_rows=False, plots=False)`` without an output
  folder; it returns a small dict (parameters, seed, metrics, wall seconds, or the formatted
  traceback of what it raised). Results are taken as they finish (``as_completed``).
* A run that raises is recorded with its traceback and the sweep goes on. The sweep fails (exit 1)
  only when every run failed: a few crashing combinations are a finding, not a broken sweep.
* Metrics per run (``METRICS``) come from the run's summary. Two answer the fee question:
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
  mean, mean +- t(0.975, n-1) s / sqrt(n). The t quantile is computed exactly (the closed form of
  the Student t distribution for whole degrees of freedom, inverted by bisection) up to 1000
  degrees of freedom and by its Cornish-Fisher expansion beyond.
* Outputs (``out``): sweep.csv (one row per run), sweep.json (per combination), PNG plots. They
  are written into a temporary folder beside ``out`` and moved into place at the end; an existing
  ``out`` is refused without ``force`` before anything runs, and a failed sweep leaves nothing.
  Without ``out`` (from Python) nothing is written: the ``SweepResult`` holds it all.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from .run import OutputExists
from .run import run as simulate
from .scenario import ATOMIC, Scenario, ScenarioError, load_scenario, price_mean

CONFIDENCE = 0.95
SEED_BITS = 53
EXACT_T_MAX_DF = 1000


class SweepError(InputError):
    """A sweep that cannot start: a bad grid, option, scenario or output folder."""


# -- grid values ------------------------------------------------------------------------------------


def toml_value(raw: str) -> Any:
    """``raw`` read as ``--set`` reads a value: a TOML value, else (a bare word) the stripped text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def toml_literal(value: Any) -> str:
    """``value`` written as a TOML value (the inverse of ``toml_value`` for TOML's types)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"TOML table keys are strings, not {key!r}")
            name = key if key and set(key) <= _BARE_KEY else toml_literal(key)
            items.append(f"{name} = {toml_literal(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"{value!r} has no TOML form")


def split_values(text: str) -> list[str]:
    """``text`` cut at the commas that are outside brackets, braces and quoted strings."""
    parts, current, depth, quote, escaped = [], [], 0, "", False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def parse_grid(options: Iterable[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,...`` options as ``{key: [values]}``, in the order given."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(f"--grid {option}: expected key.path=value1,value2,...")
        if key in grid:
            raise SweepError(f"--grid {key}: given twice; list all its values in one --grid")
        pieces = split_values(raw)
        if any(not piece for piece in pieces):
            raise SweepError(f"--grid {option}: an empty value (values are separated by commas)")
        grid[key] = [toml_value(piece) for piece in pieces]
    return grid


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


# -- statistics -------------------------------------------------------------------------------------


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with ``df`` degrees of freedom (closed form for whole ``df``)."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2:
        if df == 1:
            return 2 / math.pi * theta
        term = total = cos
        for j in range(1, (df - 1) // 2):
            term *= 2 * j / (2 * j + 1) * cos * cos
            total += term
        return 2 / math.pi * (theta + sin * total)
    term = total = 1.0
    for j in range(1, df // 2):
        term *= (2 * j - 1) / (2 * j) * cos * cos
        total += term
    return sin * total


def _normal_quantile(p: float) -> float:
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_expansion(df: int, confidence: float) -> float:
    z = _normal_quantile((1 + confidence) / 2)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _t_exact(df: int, confidence: float) -> float:
    low, high = 0.0, 1.0
    while _t_central(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if _t_central(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-13 * high:
            break
    return (low + high) / 2


@lru_cache(maxsize=4096)
def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value of Student's t: P(|T| < t) = ``confidence``."""
    if df < 1:
        raise ValueError("a t critical value needs at least one degree of freedom")
    if not 0 < confidence < 1:
        raise ValueError("confidence is a probability strictly between 0 and 1")
    return _t_exact(df, confidence) if df <= EXACT_T_MAX_DF else _t_expansion(df, confidence)


def describe(values: Sequence[float | int | bool | None], confidence: float = CONFIDENCE) -> dict:
    """n, mean, sample std and the confidence interval of the mean of the values that are not None
    (std and interval are None below two values)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if not n:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = math.fsum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


# -- metrics ----------------------------------------------------------------------------------------


def _get(summary: dict, *path: str) -> Any:
    node: Any = summary
    for part in path:
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _margin(s: dict) -> float | None:
    margins = [f.get("margin_usd") for f in (s.get("facilitators") or {}).values()]
    return round(math.fsum(m for m in margins if m is not None), 6) if margins else None


def _success_rate(s: dict) -> float | None:
    needed = s["requests"] - (s.get("outcomes") or {}).get("free", 0)
    return _ratio(s["paid_requests"], needed)


METRICS: dict[str, Callable[[dict], Any]] = {
    "requests": lambda s: s["requests"],
    "paid_requests": lambda s: s["paid_requests"],
    "settled_payments": lambda s: s["settled_payments"],
    "volume_usdc": lambda s: s["volume_usdc"],
    "success_rate": _success_rate,
    "latency_p50_ms": lambda s: _get(s, "latency_ms", "end_to_end", "p50"),
    "latency_p99_ms": lambda s: _get(s, "latency_ms", "end_to_end", "p99"),
    "gas_per_settlement": lambda s: _get(s, "gas", "per_settlement"),
    "gas_usd_per_settlement": lambda s: _get(s, "gas", "usd_per_settlement"),
    "gas_usd": lambda s: _get(s, "gas", "usd"),
    "margin_usd": _margin,
    "double_settlements": lambda s: _get(s, "security", "double_settlements"),
    "served_without_settlement": lambda s: _get(s, "security", "served_without_settlement"),
    "settled_without_delivery": lambda s: _get(s, "security", "settled_without_delivery"),
    "replays_served": lambda s: _get(s, "security", "replays_served"),
    "invariants_hold": lambda s: all((s.get("invariants") or {}).values()),
    "x402scan_transactions": lambda s: _get(s, "x402scan", "transactions"),
    "x402scan_buyers": lambda s: _get(s, "x402scan", "buyers"),
    "x402scan_sellers": lambda s: _get(s, "x402scan", "sellers"),
    "break_even_fee_usd": lambda s: _get(s, "gas", "usd_per_settlement"),
    "break_even_price_usd": lambda s: _ratio(_get(s, "gas", "usd"), s["paid_requests"]),
}
DEFAULT_PLOTS = ("success_rate", "latency_p50_ms", "latency_p99_ms", "gas_usd_per_settlement", "margin_usd")


def headline(summary: dict) -> dict[str, Any]:
    """The metrics of one run (``METRICS``), from its summary."""
    return {name: pick(summary) for name, pick in METRICS.items()}


# -- one run, on a worker ---------------------------------------------------------------------------


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


# -- the sweep --------------------------------------------------------------------------------------


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
            if key.endswith("_gwei") and len(values) > 1 and all(_is_number(v) for v in values):
                return key
        return None

    def break_even(self) -> list[dict]:
        from .sweep_plots import break_even_crossings

        return break_even_crossings(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
) -> tuple[Scenario, list[tuple[dict, list[str], int]]]:
    """The scenario without the grid, and (parameters, overrides, scenario seed) of every
    combination, each validated."""
    try:
        plain = load_scenario(base, where=label)
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None
    out = []
    for params in combinations(grid):
        overrides = [f"{key}={toml_literal(value)}" for key, value in params.items()]
        try:
            scenario = load_scenario(base, overrides, where=label)
        except ScenarioError as exc:
            where = exc.where.replace("--set ", "--grid ", 1)
            raise SweepError(f"{where}: {exc.problem} (in the combination {' '.join(overrides)})") from None
        out.append((params, overrides, scenario.simulation.seed))
    return plain, out


def _prices(scenario: Scenario) -> list[float]:
    """The endpoints' prices in USD; a price drawn from a distribution counts as its mean."""
    prices = {price_mean(e.price) for server in scenario.servers for e in server.endpoints}
    return sorted(p / ATOMIC for p in prices)


def _loopback(address: str) -> bool:
    from distributed.comm import parse_address, parse_host_port

    _, location = parse_address(address)
    host = parse_host_port(location)[0] if ":" in location else location
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded processes, everything on 127.0.0.1."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
        silence_logs=logging.ERROR,
    )


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler, allow_remote: bool, n_tasks: int):
    """A Dask client: on a local cluster of ``workers`` processes (at most ``n_tasks``), or on
    ``scheduler`` (an address, loopback only unless ``allow_remote``; a ``LocalCluster``; a ``Client``)."""
    from distributed import Client

    if scheduler is None:
        n = max(1, min(workers or os.cpu_count() or 1, n_tasks))
        with local_cluster(n) as cluster, Client(cluster) as client:
            yield client
        return
    if isinstance(scheduler, Client):
        yield scheduler
        return
    address = getattr(scheduler, "scheduler_address", scheduler)  # a LocalCluster, or its address
    if not allow_remote and not _loopback(address):
        raise SweepError(
            f"--scheduler {address}: not a loopback address; a scheduler can make this process unpickle "
            "what it sends, so x402sim connects to this machine only unless --allow-remote is given"
        )
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(f"--scheduler {address}: cannot connect: {exc}") from None
    with client:
        yield client


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
        _write(result, target, force, metrics, label)
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
        self.bar = None

    def __enter__(self) -> _Progress:
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("runs, {task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
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


def _cell(value: Any) -> Any:
    """A grid value as a CSV cell or JSON value: numbers and strings as they are, else TOML."""
    if isinstance(value, float) and not math.isfinite(value):
        return toml_literal(value)
    return value if isinstance(value, int | float | str) else toml_literal(value)


def _row(res: dict, grid: dict) -> dict:
    row = {key: res["params"][key] for key in grid}
    row["run"] = res["run"]
    row["seed"] = res["seed"]
    for name in METRICS:
        row[name] = res["metrics"].get(name)
    row["wall_seconds"] = res["wall_seconds"]
    row["error"] = res["error"]
    return row


def _stats(combos: list[tuple[dict, list[str], int]], results: list[dict]) -> list[dict]:
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


def _write(result: SweepResult, target: Path, force: bool, metrics: list[str], label: str) -> None:
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
                cells = [_cell(row[c]) if c in result.grid else row[c] for c in columns[:-1]]
                error = row["error"].strip().splitlines()[-1] if row["error"] else ""
                writer.writerow(["" if c is None else c for c in cells] + [error])
        images = write_plots(result, staging, metrics)
        document = {
            "scenario": result.scenario,
            "source": label,
            "grid": {key: [_cell(v) for v in values] for key, values in result.grid.items()},
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
                {**s, "parameters": {k: _cell(v) for k, v in s["parameters"].items()}} for s in result.stats
            ],
        }
        text = json.dumps(document, indent=2, allow_nan=False, default=_json_default)
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


def _json_default(value: Any) -> Any:
    return toml_literal(value)


# -- the command ------------------------------------------------------------------------------------


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def sweep_command(
    file: Annotated[Path, typer.Argument(help="Scenario file (TOML).", show_default=False)],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="key.path=value1,value2,... (TOML values, as --set takes them; repeatable).",
            show_default=False,
        ),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs per combination, each with its own seed.")] = 5,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes of the local cluster (default: one per core).", show_default=False
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Use the Dask cluster at this address (tcp://host:port) instead.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: runs/sweep-<scenario name>/).", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    plot: Annotated[
        list[str] | None,
        typer.Option(
            "--plot",
            help=f"A metric to plot (repeatable; default: {', '.join(DEFAULT_PLOTS)}).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="No progress bar, no line per failed run, no table (a count stays)."),
    ] = False,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a --scheduler that is not on this machine.")
    ] = False,
) -> None:
    """Run every combination of --grid values --runs times on a Dask cluster, with confidence intervals.

    Writes sweep.csv (one row per run), sweep.json (mean, std and 95% interval of each metric per
    combination, tracebacks of failed runs) and plots into the output folder, all at once at the
    end. A failed run is reported and the sweep goes on. Exit code 1 when every run failed, 2 for
    a bad grid, file or option (before anything runs).

    Examples:

      x402sim sweep scenarios/quickstart.toml --grid agents.agents.count=10,20,40 --runs 5

      x402sim sweep scenarios/fee-economics.toml --grid chain.fee.l2_base_fee_gwei=0.0002,0.002,0.02 --runs 3

      x402sim sweep scenarios/toctou-race.toml --grid facilitators.shop.dedupe=refuse,share --scheduler tcp://127.0.0.1:8786
    """
    if workers is not None and scheduler is not None:
        raise _fail("--workers and --scheduler exclude each other: start a local cluster or join one")
    try:
        parsed = parse_grid(grid or [])
        name = load_scenario(file).simulation.name
        target = out or Path("runs") / f"sweep-{name}"
        result = sweep(
            file,
            parsed,
            runs,
            workers=workers,
            scheduler=scheduler,
            out=target,
            force=force,
            progress=not quiet,
            plots=plot,
            allow_remote=allow_remote,
        )
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    except (SweepError, OutputExists) as exc:
        raise _fail(str(exc)) from None
    if not quiet:
        _print_table(result)
    failed = len(result.failures)
    if failed:
        from rich.console import Console

        Console(stderr=True).print(
            f"{failed} of {len(result.rows)} runs failed; their tracebacks are in {target / 'sweep.json'}",
            highlight=False,
            markup=False,
        )
    if result.all_failed:
        raise _fail("every run failed", code=1)


def _short(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits, in fixed notation unless it is very large or small."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    x = float(f"{x:.{digits - 1}e}")  # rounded first: 0.96 to one digit is 1, not 1.0
    magnitude = math.floor(math.log10(abs(x)))
    if -4 <= magnitude < 6:
        return f"{x:.{max(0, digits - 1 - magnitude)}f}"
    return f"{x:.{digits - 1}e}"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else toml_literal(value)


def _print_table(result: SweepResult) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    columns = {
        "success_rate": "success",
        "latency_p50_ms": "p50 ms",
        "break_even_price_usd": "break-even $",
        "margin_usd": "margin $",
    }
    varying = [key for key, values in result.grid.items() if len(values) > 1]
    last = [key.rsplit(".", 1)[-1] for key in varying]
    headers = last if len(set(last)) == len(last) else varying
    title = f"{result.scenario}: mean ± 95% half-width"
    table = Table(title=title, title_justify="left")
    for header in [*headers, "ok", *columns.values()]:
        table.add_column(Text(header))
    for s in result.stats:
        cells = [_shown(s["parameters"][key]) for key in varying]
        cells.append(f"{s['runs_ok']}/{s['runs_ok'] + s['runs_failed']}")
        for name in columns:
            d = s["metrics"][name]
            if d["mean"] is None:
                cells.append("-")
            elif d["ci95"] is None:
                cells.append(_short(d["mean"], 3))
            else:
                cells.append(f"{_short(d['mean'], 3)} ± {_short((d['ci95'][1] - d['ci95'][0]) / 2, 1)}")
        table.add_row(*(Text(cell) for cell in cells))
    console = Console()
    console.print(table)
    for line in result.break_even():
        if line["range_usd"] is None:
            continue
        where = " ".join(f"{k}={_shown(v)}" for k, v in line["parameters"].items())
        low = line["range_usd"][0]
        for price, gas in line["crossings"].items():
            if gas is not None:
                said = f"stops paying for its settlement at {result.gas_key} = {gas:.4g}"
            elif low > float(price):
                said = "never pays for its settlement inside the grid"
            else:
                said = "pays for its settlement everywhere in the grid"
            line_text = f"a ${price} request {said}" + (f" ({where})" if where else "")
            console.print(line_text, highlight=False, markup=False)
    if result.out is not None:
        where = f"{result.out / 'sweep.csv'}, {result.out / 'sweep.json'}"
        console.print(f"results: {where}", highlight=False, markup=False)
