"""One big run split by agent population across processes (Dask), its metrics merged.

A run of ``n`` shards builds ``n`` worlds of the same scenario and seed. Shard ``k`` holds the agents
whose index in their group is ``k`` modulo ``n`` (``World(shard=(k, n))``), and everything else
whole: servers, facilitators, a chain of its own. Each shard is one Dask task on its own core; what
it returns is its ``RunMetrics`` (counters, sketches, per-day figures: a few kilobytes per
facilitator, endpoint and day) and the peak memory of its process. ``summary.summary_from_shards``
merges them (``metrics`` says what is summed, unioned and maxed) into one summary.

What sharding changes, and why it is sound for populations of independent agents:

* Agents are the same agents (keys, funding, behaviour), and each shard draws its own arrivals at
  the rate of its part of the population, so the run's traffic is the same process; its random
  draws differ from the one-process run with the same seed (the figures agree statistically, not
  to the digit). Prices and other build-time draws are shared by all shards.
* Servers and facilitators see ``1/n`` of the load each in ``n`` copies: their queues, and a block
  gas limit, are per shard. Scenarios whose question is a shared queue or a full block (outages,
  congestion) should run in one process; the x402scan month, whose facilitators are never the
  bottleneck, is what sharding is for.
* No ``payments.csv``: rows are counted, not kept, in shards.
* Governance: each shard has governors of its own for its agents (so per-agent limits and
  triggers hold as in one process) and no audit file; a ``shared = true`` counter, which would
  need one governor for all agents, is refused (``run``).
* Trust: registered servers (ERC-8004) are refused (``run``): feedback lands on one shard's chain
  and is never read in another. Mandates (one verifier per shard, each agent's budget whole in its
  shard) and crawl policies shard.

Rules: the scheduler is the sweep's (``cluster``: a local cluster of single-threaded processes on 127.0.0.1 by
default, or an existing one); a shard that raises fails the run with its traceback. Shards already
done (a shard folder's, ``shard_store``) are taken as they are, and each shard run is handed on as
soon as it is done, so a folder keeps it before the others finish.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .scenario import Scenario


@dataclass
class ShardResult:
    """What one shard sends back."""

    index: int
    metrics: object  # RunMetrics
    facts: object  # RunFacts
    wall_seconds: float
    peak_rss_mb: float
    resumed: bool = False  # taken from a shard folder (``shard_store``), not simulated in this run


def run_shard(
    scenario: Scenario, seed: int | None, index: int, count: int, governance: bool = True
) -> ShardResult:
    """Simulate shard ``index`` of ``count`` in this process (a Dask task, or a test); without
    ``governance``, its agents pay without governors (a counterfactual)."""
    from .engine import run_world
    from .records import RowWriter
    from .summary import RunFacts
    from .world import World

    started = time.perf_counter()
    world = World(scenario, seed, RowWriter(None, keep=False), shard=(index, count), governance=governance)
    metrics = run_world(world)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ShardResult(index, metrics, RunFacts.of(world), time.perf_counter() - started, rss)


def run_shards(
    scenario: Scenario,
    seed: int | None,
    count: int,
    *,
    workers: int | None = None,
    scheduler=None,
    allow_remote: bool = False,
    governance: bool = True,
    kept: Sequence[ShardResult] = (),
    keep: Callable[[ShardResult], None] | None = None,
) -> list[ShardResult]:
    """Simulate the ``count`` shards of a run on Dask and return their results, in shard order
    (``governance=False``: without governors). The shards in ``kept`` are taken as they are (a
    shard folder's, ``shard_store``); ``keep`` is given each other one as soon as it is done."""
    results = list(kept)
    missing = sorted(set(range(count)) - {r.index for r in results})
    if missing:
        from distributed import as_completed

        from .cluster import dask_client

        with dask_client(workers, scheduler, allow_remote, len(missing)) as client:
            futures = [
                client.submit(
                    run_shard,
                    scenario,
                    seed,
                    k,
                    count,
                    governance,
                    key=f"x402sim-shard-{k}-of-{count}-{'' if governance else 'ungoverned-'}{time.time_ns()}",
                )
                for k in missing
            ]
            for future in as_completed(futures):
                result = future.result()
                if keep is not None:
                    keep(result)
                results.append(result)
    return sorted(results, key=lambda r: r.index)
