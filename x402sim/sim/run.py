"""Run a scenario: build the world, let virtual time pass, write the results all at once.

Rules:

* Outputs are written into a temporary folder beside ``out`` and moved into place only when the
  run has finished, so a failed run leaves nothing half-written. An existing ``out`` is refused
  unless ``force`` is given.
* The run ends when every agent has stopped (at ``duration``) and every request and transaction in
  flight is done, or ``drain`` seconds later at most; what is still unfinished then is reported
  as such.
* ``run`` returns a ``SimResult``: the summary, the run's ``RunMetrics`` (mergeable, picklable),
  and, unless told not to keep them, every row. Nothing else the run keeps grows with payments.
* ``payments`` says what ``payments.csv`` holds: ``all`` rows (the default), a ``sample`` (the
  first 1,000, then 1 % of the rest, drawn from the seed: ``records.RowWriter``) or ``none`` (no
  file). It defaults to the scenario's ``[simulation] payments``.
* Governance: when a group names a policy, an unsharded run with ``out`` also writes the
  governors' hash-chained ``audit.jsonl`` (``x402sim audit verify`` checks it; its head is the
  summary's ``governance.audit.head``); a sharded run writes none (one chain per shard), and
  refuses a policy in use with a ``shared = true`` counter (a counter cannot be shared by
  processes). Unless ``[governance] counterfactual = false``, the same seed is then run again
  without governors (sharded alike, nothing written) to measure the loss prevented.
  ``governance=False`` runs the scenario without governors (the counterfactual itself).
* Shards: with ``shard_dir``, a sharded run keeps each finished shard in that folder and takes the
  shards already there (``shard_store``: a folder of another run is refused before anything runs).
* Trust: a scenario with registered servers (``identity = true``) is refused with ``--shards``
  above 1 (reputations live on each shard's chain); mandates and crawl policies shard like any
  per-agent figure (``sim.trust``).
"""

from __future__ import annotations

import csv
import json
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from ..errors import OutputError
from .engine import run_world
from .metrics import RunMetrics
from .records import TIMELINE_COLUMNS, Row, RowWriter
from .scenario import Scenario, ScenarioError, load_scenario
from .sketch import LatencyStats
from .summary import RunFacts, build_summary
from .world import World

if TYPE_CHECKING:
    from .shard_store import ShardStore
    from .shards import ShardResult


class OutputExists(OutputError):
    """The output folder exists and ``force`` was not given."""


@dataclass
class SimResult:
    """What a run produced: its summary, its rows (if kept), and where it wrote.

    ``latencies`` maps each latency kind to its ``LatencyStats`` (exact count, mean, min and max,
    and a sketch for percentiles and the CDF: ``.cdf()``); ``timeline`` the rows of timeline.csv;
    ``daily`` one dict per virtual day (daily.csv); ``metrics`` the run's ``RunMetrics`` and
    ``facts`` what else its summary is built from (``build_summary(metrics, facts)``)."""

    summary: dict
    rows: list[Row] | None
    latencies: dict[str, LatencyStats] = field(repr=False, default_factory=dict)
    timeline: list[list] = field(repr=False, default_factory=list)
    out: Path | None = None
    daily: list[dict] = field(repr=False, default_factory=list)
    metrics: RunMetrics | None = field(repr=False, default=None)
    facts: RunFacts | None = field(repr=False, default=None)

    @property
    def invariants_hold(self) -> bool:
        return all(self.summary["invariants"].values())


def run(
    scenario: Scenario | str | Path | dict,
    *,
    seed: int | None = None,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] = MappingProxyType({}),
    force: bool = False,
    keep_rows: bool = True,
    progress: bool = False,
    plots: bool = True,
    payments: str | None = None,
    shards: int = 1,
    workers: int | None = None,
    scheduler=None,
    governance: bool = True,
    shard_dir: str | Path | None = None,
) -> SimResult:
    """Simulate ``scenario`` (a ``Scenario``, a TOML path or a dict) and return its ``SimResult``;
    with ``out``, also write summary.json, payments.csv (``payments``: all, sample or none),
    timeline.csv, daily.csv, report.md, report.html and plots there.

    ``shards`` > 1 splits the agents into that many worlds simulated in parallel on Dask (a local
    cluster of ``workers`` processes, one per core by default, or ``scheduler``) and merges their
    metrics (see ``shards``); such a run keeps no rows and writes no payments.csv. With
    ``shard_dir``, each finished shard is kept in that folder and the shards already there (of the
    same scenario, seed and shard count) are taken instead of being run again (``shard_store``):
    a long run that stops goes on where it stopped.

    ``governance=False`` builds the world without governors; with them, the run also writes
    audit.jsonl (unsharded) and, unless the scenario says otherwise, runs its counterfactual (the
    module's docstring). ``ScenarioError`` for a shared counter, or registered servers, split
    across shards."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shard_dir is not None and shards == 1:
        raise ValueError("shard_dir goes with shards > 1")
    label = str(scenario) if isinstance(scenario, str | Path) else None
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, overrides)
    elif overrides:
        scenario = load_scenario(scenario.model_dump(mode="json", by_alias=True), overrides)
    shared = scenario.shared_counter() if governance and shards > 1 else None
    if shared is not None:
        raise ScenarioError(
            f"{label or scenario.simulation.name}: {shared}",
            f"a shared counter cannot be kept across {shards} shards (each is a process of its own): "
            "run with one shard, or make the limit per agent",
        )
    registered = scenario.unshardable() if shards > 1 else None
    if registered is not None:
        raise ScenarioError(
            f"{label or scenario.simulation.name}: {registered}",
            f"the reputation section cannot be split across {shards} shards: each shard has its own chain, "
            "so feedback given in one is never read in another (a reputation-aware agent would choose "
            "from a part of the reviews): run with one shard",
        )
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and not force:
        raise OutputExists(f"{target} exists; give --force to replace it")
    store = None
    if shard_dir is not None:
        from .shard_store import ShardStore

        store = ShardStore(shard_dir, scenario, seed, shards)  # a folder of another run is refused here
    staging = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the results are an ordinary folder
    try:
        payments = payments or scenario.simulation.payments
        if shards > 1:
            sharding = _Sharding(shards, workers, scheduler, store, progress)
            result = _simulate_shards(scenario, seed, staging, plots, sharding, governance)
        else:
            result = _simulate(scenario, seed, staging, keep_rows, progress, plots, payments, governance)
        if target is not None and staging is not None:  # staging is made for a target
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            result.out = target
        return result
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _simulate(
    scenario: Scenario,
    seed,
    staging: Path | None,
    keep_rows: bool,
    progress: bool,
    plots: bool,
    payments: str,
    governance: bool = True,
):
    started = time.perf_counter()
    stream = (
        (staging / "payments.csv").open("w", newline="", encoding="utf-8")
        if staging is not None and payments != "none"
        else None
    )
    governed = governance and bool(scenario.governed())
    audit = staging / "audit.jsonl" if staging is not None and governed else None
    try:
        run_seed = scenario.simulation.seed if seed is None else seed
        writer = RowWriter(stream, keep=keep_rows, payments=payments, seed=run_seed)
        world = World(scenario, seed, writer, governance=governance, audit=audit)
        metrics = run_world(world, progress)
    finally:
        if stream is not None:
            stream.close()
    wall = time.perf_counter() - started
    counterfactual = _counterfactual(scenario, seed, metrics, governed) if governed else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    facts = RunFacts.of(world)
    summary = build_summary(metrics, facts, wall, rss)
    if counterfactual is not None:
        summary["resources"]["counterfactual_wall_seconds"] = round(counterfactual, 3)
    return _result(summary, metrics, facts, world.writer.kept, staging, plots)


@dataclass(frozen=True)
class _Sharding:
    """How a sharded run's shards are run: how many, on which cluster (``workers`` local processes
    or ``scheduler``), kept in which shard folder, with a progress bar or not."""

    count: int
    workers: int | None
    scheduler: Any
    store: ShardStore | None
    progress: bool


def _simulate_shards(
    scenario: Scenario, seed, staging: Path | None, plots: bool, sharding: _Sharding, governance: bool = True
):
    started = time.perf_counter()
    parts = _run_shards(scenario, seed, sharding, governance)
    wall = time.perf_counter() - started
    # Memory of the whole run: this process and every shard's at its peak.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + sum(p.peak_rss_mb for p in parts)
    metrics = RunMetrics.combine(_shard_metrics(parts))
    governed = governance and bool(scenario.governed())
    counterfactual = _counterfactual(scenario, seed, metrics, governed, sharding) if governed else None
    facts = cast(RunFacts, parts[0].facts)  # ShardResult.facts is typed object; run_shard puts a RunFacts
    summary = build_summary(metrics, facts, wall, rss)
    summary["resources"]["shard_wall_seconds"] = [round(p.wall_seconds, 3) for p in parts]
    summary["resources"]["shard_peak_rss_mb"] = [round(p.peak_rss_mb, 1) for p in parts]
    if sharding.store is not None:  # their wall time and memory are of the run that made them
        summary["resources"]["shards_resumed"] = [p.index for p in parts if p.resumed]
    if counterfactual is not None:
        summary["resources"]["counterfactual_wall_seconds"] = round(counterfactual, 3)
    return _result(summary, metrics, facts, None, staging, plots)


def _counterfactual(
    scenario: Scenario,
    seed,
    metrics: RunMetrics,
    governed: bool,
    sharding: _Sharding | None = None,
) -> float | None:
    """Run ``scenario`` again with the same seed and no governors (sharded alike, nothing written)
    when it asks for it, and put its attack-bound figures in ``metrics``; returns the wall seconds
    it took (None: not run)."""
    if not (governed and scenario.governance.counterfactual):
        return None
    started = time.perf_counter()
    if sharding is not None:
        parts = _run_shards(scenario, seed, sharding, governance=False)
        without = RunMetrics.combine(_shard_metrics(parts))
    else:
        without = run_world(World(scenario, seed, RowWriter(None, keep=False), governance=False))
    attack = without.governance.attack
    metrics.governance.counterfactual = Counter(
        attack_spend=attack["settled_amount"],
        attack_payments=attack["settled"],
        attack_requests=attack["requests"],
    )
    return time.perf_counter() - started


def _run_shards(scenario: Scenario, seed, sharding: _Sharding, governance: bool) -> list[ShardResult]:
    """The shards of a run: those its shard folder holds, the others simulated (and kept there as
    each is done); with ``progress``, a bar on stderr and a line per shard done."""
    from .bars import ShardProgress
    from .shards import run_shards

    store = sharding.store
    kept = store.kept(governance) if store is not None else []
    name = scenario.simulation.name + ("" if governance else " without governors")
    folder = store.folder if store is not None else None
    with ShardProgress(name, sharding.count, kept, folder, sharding.progress) as bar:

        def keep(result: ShardResult) -> None:
            if store is not None:
                store.save(result, governance)
            bar.done(result)

        return run_shards(
            scenario,
            seed,
            sharding.count,
            workers=sharding.workers,
            scheduler=sharding.scheduler,
            governance=governance,
            kept=kept,
            keep=keep,
        )


def _shard_metrics(parts: list[ShardResult]) -> list[RunMetrics]:
    # ShardResult.metrics is typed object (shards.py); run_shard puts the RunMetrics of run_world
    return [cast(RunMetrics, p.metrics) for p in parts]


def _result(summary: dict, metrics: RunMetrics, facts: RunFacts, rows, staging: Path | None, plots: bool):
    """The ``SimResult`` of a finished run; with ``staging``, its files written there."""
    timeline = [row for row in metrics.timeline.rows() if float(row[0]) < metrics.virtual_seconds]
    daily = metrics.daily_rows(facts.facilitators)
    result = SimResult(summary, rows, metrics.latency, timeline, daily=daily, metrics=metrics, facts=facts)
    if staging is not None:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        with (staging / "timeline.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(TIMELINE_COLUMNS)
            writer.writerows(timeline)
        with (staging / "daily.csv").open("w", newline="", encoding="utf-8") as f:
            days = csv.DictWriter(f, fieldnames=list(daily[0]))
            days.writeheader()
            days.writerows(daily)
        from .report import write_report
        from .report_html import write_html_report

        write_report(result, facts.scenario, staging, plots=plots)
        write_html_report(result, facts.scenario, staging)
    return result
