"""Run a scenario: build the world, let virtual time pass, write the results all at once.

Rules:

* Outputs are written into a temporary folder beside ``out`` and moved into place only when the
  run has finished, so a failed run leaves nothing half-written. An existing ``out`` is refused
  unless ``force`` is given.
* The run ends when every agent has stopped (at ``duration``) and every request and transaction in
  flight is done, or ``drain`` seconds later at most; what is still unfinished then is reported
  as such.
* ``run`` returns a ``SimResult``: the summary and, unless told not to keep them, every row.
"""

from __future__ import annotations

import csv
import json
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .agents import Traffic
from .records import TIMELINE_COLUMNS, Row, RowWriter
from .scenario import Scenario, load_scenario
from .summary import build_summary
from .world import World


class OutputExists(Exception):
    """The output folder exists and ``force`` was not given."""


@dataclass
class SimResult:
    """What a run produced: its summary, its rows (if kept), latency samples, and where it wrote."""

    summary: dict
    rows: list[Row] | None
    latencies: dict[str, list[float]] = field(repr=False, default_factory=dict)
    timeline: list[list] = field(repr=False, default_factory=list)
    out: Path | None = None

    @property
    def invariants_hold(self) -> bool:
        return all(self.summary["invariants"].values())


def run(
    scenario: Scenario | str | Path | dict,
    *,
    seed: int | None = None,
    out: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    force: bool = False,
    keep_rows: bool = True,
    progress: bool = False,
    plots: bool = True,
) -> SimResult:
    """Simulate ``scenario`` (a ``Scenario``, a TOML path or a dict) and return its ``SimResult``;
    with ``out``, also write summary.json, payments.csv, timeline.csv, report.md and plots there."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, overrides)
    elif overrides:
        scenario = load_scenario(scenario.model_dump(mode="json", by_alias=True), overrides)
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and not force:
        raise OutputExists(f"{target} exists; give --force to replace it")
    staging = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the results are an ordinary folder
    try:
        result = _simulate(scenario, seed, staging, keep_rows, progress, plots)
        if target is not None:
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            result.out = target
        return result
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _simulate(scenario: Scenario, seed, staging: Path | None, keep_rows: bool, progress: bool, plots: bool):
    started = time.perf_counter()
    stream = (staging / "payments.csv").open("w", newline="", encoding="utf-8") if staging else None
    try:
        world = World(scenario, seed, RowWriter(stream, keep=keep_rows))
        Traffic(world)
        world.env.process(_sample_queues(world))
        done = world.env.process(_closer(world))
        if progress:
            _run_with_progress(world, done)
        else:
            world.env.run(until=done)
        for row in sorted(world.rows_open.values(), key=lambda r: r.id):
            world._write(row)  # unfinished, or waiting for a finality that never came
    finally:
        if stream is not None:
            stream.close()
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = build_summary(world, world.tally, wall, rss)
    timeline = [row for row in world.timeline.rows() if float(row[0]) < world.env.now]
    result = SimResult(summary, world.writer.kept, world.latency, timeline)
    if staging is not None:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        with (staging / "timeline.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(TIMELINE_COLUMNS)
            writer.writerows(timeline)
        from .report import write_report

        write_report(result, scenario, staging, plots=plots)
    return result


def _closer(world: World):
    s = world.scenario.simulation
    env = world.env
    tick = world.producer.tick
    yield env.timeout(s.duration)
    while env.now < s.duration + s.drain and (
        world.in_flight or world.rows_open or world.chain.pending_count
    ):
        yield env.timeout(tick)


def _sample_queues(world: World):
    timeline = world.timeline
    env = world.env
    yield env.timeout(timeline.bucket / 2)  # mid-bucket, between blocks rather than on them
    while True:
        index = timeline.index(env.now)
        timeline.pending_txs[index] = world.chain.pending_count
        timeline.queues[index] = {name: len(f.slots.queue) for name, f in world.facilitators.items()}
        yield env.timeout(timeline.bucket)


def _run_with_progress(world: World, done) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    s = world.scenario.simulation
    env = world.env
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>8.0f}/{task.total:.0f} virtual s"),
        TextColumn("{task.fields[paid]} paid, {task.fields[rate]}/wall-s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(s.name, total=s.duration, paid=0, rate="0")
        step = max(s.duration / 200, world.producer.tick)
        while not done.triggered:
            env.run(until=min(env.now + step, s.duration + s.drain + step))
            if done.processed or env.peek() == float("inf"):
                break
            paid = world.tally.outcomes["paid"]
            rate = paid / max(1e-9, time.perf_counter() - started)
            bar.update(task, completed=min(env.now, s.duration), paid=paid, rate=f"{rate:.0f}")
        if not done.processed:
            env.run(until=done)
        paid = world.tally.outcomes["paid"]
        bar.update(
            task,
            completed=s.duration,
            paid=paid,
            rate=f"{paid / max(1e-9, time.perf_counter() - started):.0f}",
        )
    sys.stderr.flush()
