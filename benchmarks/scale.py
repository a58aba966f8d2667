"""Scale benchmarks: how x402sim grows with more hardware and more payments.

Run: ``.venv/bin/python benchmarks/scale.py`` (every section but ``month`` and ``december``, which
take minutes or hours)
or ``--only NAME`` (repeatable). Each section is a function ``bench_<name>()`` that prints
its own table.

``ledger``: the wall time of one simulated payment on one core with the ledger backend
(scenarios/fee-economics.toml, 600 virtual seconds, 6,152 payments), against the signature floor
measured in the same run: the 2 signs and 2 recoveries a payment needs (``breakdown.signature_floor``).
The target: the floor is at least 0.4 of a payment's cost. Then the cost per payment by part
(signatures, SimPy, messages, chain, roles, simulator), from a cProfile run of 300 virtual seconds.

``backends``: the same scenario (fee-economics, 300 virtual seconds, about 3,000 payments) on py-evm
and on the ledger, in this run: the speed-up, and whether the two summaries are identical (they
must be, wall-clock fields aside).

``month``: scenarios/x402scan-month.toml in full (1.35 M payments, 72,150 agents, 960 endpoints),
sharded by agent population over the cores (``--shards``, default one per core): wall time, peak
memory of the whole run (every shard's process and this one) and the four x402scan figures against
the article's. The target: at most 3 minutes and 2 GB on a 2-core machine.

``december``: scenarios/x402-december-2025.toml at 1/``--fraction`` (default 10: 6.3 M payments,
6,400 buyers, the 10,000 sellers), sharded like the month: wall time, peak memory, the per-shard
figures and the four published figures against the run's. The target at 1/10: at most 30 minutes on
a 2-core machine. ``--fraction 1 --shards 8`` runs the full month on a LocalCluster of one worker per
core, 8 shards (the per-shard figures show how it would spread on a bigger cluster). With
``--shard-dir DIR`` (month, december) each finished shard is kept in DIR and a later run with the
same options takes those already there, so a run of hours can be done in pieces.

``sweep``: the same Monte Carlo sweep (``x402sim.sim.sweep``: scenarios/quickstart.toml, two L2 base
fees x 4 runs = 8 runs of about 2-3 s each) on a local Dask cluster of 1 worker process, then of 2,
in this run. Each cluster is started and its workers warmed up (x402sim imported, one short run)
before the clock starts, so the timed part is the sweep itself: submitting the runs, running them
and gathering their results. Printed: cluster start-up, sweep wall time, the runs' own wall time
summed, and the speed-up of 2 workers over 1 (ideal 2.0 on a machine with 2 free cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from breakdown import parts, print_parts, signature_floor

from x402sim.sim import load_scenario
from x402sim.sim.cluster import local_cluster
from x402sim.sim.expected import expected_x402scan
from x402sim.sim.run import run
from x402sim.sim.summary import stable
from x402sim.sim.sweep import sweep

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
FEE_ECONOMICS = ROOT / "scenarios" / "fee-economics.toml"
MONTH = ROOT / "scenarios" / "x402scan-month.toml"
DECEMBER = ROOT / "scenarios" / "x402-december-2025.toml"
DECEMBER_TARGET_S = 1800  # at 1/10, on 2 cores
LEDGER_TARGET = 0.4  # of the signature floor
LEDGER_300 = {"chain.backend": "ledger", "simulation.duration": 300}
MONTH_TARGET_S, MONTH_TARGET_MB = 180, 2048


def _warm() -> None:
    from x402sim.sim.run import run

    run(
        QUICKSTART,
        overrides={"simulation.duration": 12, "agents.agents.count": 2},
        keep_rows=False,
        plots=False,
    )


def bench_sweep(runs: int = 4) -> dict[int, float]:
    grid = {"chain.fee.l2_base_fee_gwei": [0.0002, 0.002]}
    total = runs * len(grid["chain.fee.l2_base_fee_gwei"])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"sweep: {QUICKSTART.name}, {total} runs, the same seeds for every cluster size")
    print(f"{os.cpu_count()} cores, load average before {load} (other work on the machine skews the ratio)")
    print(f"{'workers':>7} {'start s':>8} {'sweep s':>8} {'runs s':>8} {'runs/s':>7} {'speed-up':>8}")
    walls: dict[int, float] = {}
    seeds = None
    for workers in (1, 2):
        started = time.perf_counter()
        with local_cluster(workers) as cluster:
            from distributed import Client

            with Client(cluster) as client:
                client.run(_warm)
            start_up = time.perf_counter() - started
            clock = time.perf_counter()
            result = sweep(QUICKSTART, grid, runs, scheduler=cluster.scheduler_address)
            wall = time.perf_counter() - clock
        if result.failures:
            sys.exit(f"a run failed:\n{result.failures[0]['traceback']}")
        run_seeds = [row["seed"] for row in result.rows]
        assert seeds is None or run_seeds == seeds, "the cluster size changed the seeds"
        seeds = run_seeds
        walls[workers] = wall
        busy = sum(row["wall_seconds"] for row in result.rows)
        ratio = walls[1] / wall
        print(f"{workers:>7} {start_up:>8.2f} {wall:>8.2f} {busy:>8.2f} {total / wall:>7.2f} {ratio:>7.2f}x")
    print(f"speed-up of 2 workers over 1: {walls[1] / walls[2]:.2f}x (ideal 2.00x)")
    return walls


def _simulate(backend: str, duration: int) -> dict:
    overrides = {"chain.backend": backend, "simulation.duration": duration}
    return run(FEE_ECONOMICS, overrides=overrides, keep_rows=False, plots=False).summary


def _rate(summary: dict) -> float:
    return summary["paid_requests"] / summary["wall_seconds"]


def bench_ledger() -> float:
    floor = signature_floor()
    summary = _simulate("ledger", 600)
    us = 1e6 * summary["wall_seconds"] / summary["paid_requests"]
    print(
        f"ledger backend: {summary['paid_requests']:,} paid requests in {summary['wall_seconds']:.2f} s"
        f" = {1e6 / us:,.0f} /s on one core ({us:.0f} us each)"
    )
    print(f"signature floor (2 signs + 2 recoveries, coincurve): {floor:.0f} us a payment")
    ratio = floor / us
    print(
        f"ratio to the floor: {ratio:.3f} (target >= {LEDGER_TARGET}: "
        f"at most {1 / LEDGER_TARGET:.1f}x the floor)"
    )
    code = (
        f"from x402sim.sim.run import run; run({str(FEE_ECONOMICS)!r}, overrides={LEDGER_300!r}, plots=False)"
    )
    print_parts(us, parts(code, "run_world"), floor)
    return ratio


def bench_backends() -> float:
    evm, ledger = _simulate("evm", 300), _simulate("ledger", 300)
    for name, summary in (("py-evm", evm), ("ledger", ledger)):
        print(
            f"{name:>7}: {summary['paid_requests']:,} paid in {summary['wall_seconds']:.2f} s"
            f" = {_rate(summary):,.0f} /s"
        )
    speed_up = evm["wall_seconds"] / ledger["wall_seconds"]
    print(f"speed-up of the ledger over py-evm: {speed_up:.2f}x")
    print(f"x402scan figures identical: {evm['x402scan'] == ledger['x402scan']}")
    print(f"summaries identical (wall-clock fields aside): {stable(evm) == stable(ledger)}")
    if stable(evm) != stable(ledger):
        sys.exit("the backends disagree: tests/evm/test_ledger.py should have caught it")
    return speed_up


def _sharded(
    what: str,
    scenario: Path,
    overrides: dict,
    shards: int | None,
    target_s: float | None,
    target_mb: float | None,
    shard_dir: Path | None = None,
) -> dict:
    """Run ``scenario`` sharded over the cores and print its wall time, memory (each against its
    target when there is one, as the share of the target met) and the published figures."""
    shards = shards or os.cpu_count() or 1
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{what}: {shards} shards, {os.cpu_count()} cores, load average before {load}")
    summary = run(
        scenario, overrides=overrides, shards=shards, keep_rows=False, plots=False, shard_dir=shard_dir
    ).summary
    resources, scan = summary["resources"], summary["x402scan"]
    wall, rss = resources["wall_seconds"], resources["peak_rss_mb"]
    met = f" (target {target_s:,.0f} s: {target_s / wall:.2f} of the speed)" if target_s else ""
    print(f"wall time {wall:.1f} s{met}; shards {resources['shard_wall_seconds']} s")
    met = f" (target {target_mb:,.0f} MB)" if target_mb else ""
    print(f"peak RSS of the run {rss:,.0f} MB{met}; shards {resources['shard_peak_rss_mb']} MB")
    if resources.get("shards_resumed"):
        print(
            f"shards taken from {shard_dir} (wall time and memory of the run that made them): "
            f"{resources['shards_resumed']}"
        )
    print(f"{summary['paid_requests']:,} paid requests, {resources['payments_per_wall_second']:,.0f} /s")
    for name, t in scan["targets"].items():
        print(
            f"{name:>13}: {scan[name]:>14,.2f}  target {t['target']:>14,.2f}  deviation {t['deviation']:+.2%}"
        )
    return summary


def bench_month(shards: int | None = None, shard_dir: Path | None = None) -> dict:
    return _sharded("x402scan month", MONTH, {}, shards, MONTH_TARGET_S, MONTH_TARGET_MB, shard_dir)


def december_overrides(fraction: int) -> dict:
    """The overrides that run December 2025 at 1/``fraction``: every agent group's count and the
    published figures divided by it (rates are per agent), the sellers to expect at that size."""
    full = load_scenario(DECEMBER)
    overrides: dict = {f"agents.{g.name}.count": max(1, round(g.count / fraction)) for g in full.agents}
    targets = full.x402scan
    assert targets is not None and targets.transactions and targets.volume_usdc and targets.buyers
    sellers = expected_x402scan(load_scenario(DECEMBER, overrides))["sellers"]
    return {
        **overrides,
        "x402scan.transactions": round(targets.transactions / fraction),
        "x402scan.volume_usdc": str(targets.volume_usdc / 10**6 / fraction),
        "x402scan.buyers": round(targets.buyers / fraction),
        "x402scan.sellers": round(sellers),
    }


def bench_december(fraction: int = 10, shards: int | None = None, shard_dir: Path | None = None) -> dict:
    target = DECEMBER_TARGET_S if fraction == 10 else None  # the target is for 1/10 on 2 cores
    overrides = december_overrides(fraction) if fraction > 1 else {}
    return _sharded(f"December 2025 at 1/{fraction}", DECEMBER, overrides, shards, target, None, shard_dir)


BENCHES = {
    name.removeprefix("bench_"): fn for name, fn in sorted(globals().items()) if name.startswith("bench_")
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHES), help="run only this section (repeatable)"
    )
    parser.add_argument("--fraction", type=int, default=10, help="december: run 1/FRACTION of the month")
    parser.add_argument("--shards", type=int, default=None, help="month, december: shards (default: cores)")
    parser.add_argument(
        "--shard-dir",
        type=Path,
        default=None,
        help="month, december: keep finished shards here and take those already there (a run in pieces)",
    )
    args = parser.parse_args()
    for name in args.only or sorted(set(BENCHES) - {"month", "december"}):
        if name == "december":
            bench_december(args.fraction, args.shards, args.shard_dir)
        elif name == "month":
            bench_month(args.shards, args.shard_dir)
        else:
            BENCHES[name]()
        print()


if __name__ == "__main__":
    main()
