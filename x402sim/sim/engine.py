"""One world let run in virtual time: its traffic started, its queues sampled, until its work is done.

Rules: ``run_world`` starts the agents' traffic (``agents.Traffic``), a sampler of the pending pool
and the facilitators' queues (mid-bucket, between blocks rather than on them) and a closer that ends
the run once every agent has stopped (at ``duration``) and every request and transaction in flight
is done, or ``drain`` seconds later at most; what is still unfinished then is written as such. It
returns the world's ``RunMetrics``. With ``progress``, a progress bar on stderr (the only wall-clock
reading here, for the bar's rate). A world with batch-settlement endpoints also runs its channel
processes (``channels.start``), and its servers' books are read against the chain at the end
(``channels.finish``). While it runs, what existed before is frozen out of the garbage collector's
scans (``long_lived_frozen``).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from . import channels
from .agents import Traffic
from .metrics import RunMetrics
from .world import World


def run_world(world: World, progress: bool = False) -> RunMetrics:
    """Let ``world`` run to its end (arrivals over, work in flight done or drained), write its
    unfinished rows and return its metrics. A shard of a run is a ``World`` of its own: the metrics
    of a run's shards merge (``RunMetrics.merge``, ``summary.summary_from_shards``)."""
    Traffic(world)
    channels.start(world)
    world.env.process(_sample_queues(world))
    done = world.env.process(_closer(world))
    with long_lived_frozen():
        if progress:
            _run_with_progress(world, done)
        else:
            world.env.run(until=done)
    for row in sorted(world.rows_open.values(), key=lambda r: r.id):
        world.flight.write(row)  # unfinished, or waiting for a finality that never came
    metrics = world.metrics()
    channels.finish(world)  # the servers' books against the chain, at the end (into its metrics)
    return metrics


@contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off what exists before the run (the world, its agents, the
    imported modules) and let it run less often during it.

    A run allocates a few dozen short-lived objects per event; at CPython's default thresholds a
    young collection runs every 700 allocations, and the oldest generation, the whole world, is
    scanned again every time it grows by a quarter. At a twentieth of the x402scan month, 3.0 s of
    a 53 s run went to collections, 0.6 s with this. Frozen objects are never scanned (nor freed)
    until ``gc.unfreeze``; cycles made during the run are still collected, after 50,000 allocations
    instead of 700. The previous settings come back after, also when the run fails.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _closer(world: World):
    s = world.scenario.simulation
    env = world.env
    tick = world.producer.tick
    yield env.timeout(s.duration)
    while env.now < s.duration + s.drain and (
        world.flight.in_flight or world.rows_open or world.chain.pending_count
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
