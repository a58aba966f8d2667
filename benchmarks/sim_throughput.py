"""Simulator throughput: simulated paid requests per wall-second, against the py-evm floor.

Run: ``.venv/bin/python benchmarks/sim_throughput.py`` (``--sizes 1000,5000`` to run fewer sizes,
``--profile`` to cProfile the simulator at the smallest size and print the top 20 by cumulative time).

For each size N (default 1,000, 5,000 and 20,000 payments):
1. the simulator: one facilitator (high concurrency, no service time), one server with one endpoint
   ("0.001" USDC), 100 honest agents with Poisson arrivals at 50 requests/s in all for N/50 virtual
   seconds, 2-second blocks, an l1 fee model. ``run(scenario, keep_rows=False, plots=False)`` is
   timed whole (World construction included; it is also timed alone and shown as "setup");
2. the py-evm floor, measured right after it in the same process: as many ``transferWithAuthorization``
   as the simulator produced paid requests, from the same number of payers, mined in blocks of the
   simulator's average size, with nothing else done (no HTTP messages, no verification, no
   simulator). Authorizations and the relayer's raw transactions are signed before the clock starts;
   only submission (``send_raw_transaction``) and mining are timed.

Printed: paid requests per wall-second of each, their ratio (target >= 0.85), the simulator's wall
milliseconds per paid request and its growth against the smallest size (target: within 25%, i.e.
<= 1.25), and the run's peak RSS; then the cost per payment at the smallest size by part
(signatures, SimPy, messages, chain, roles, simulator: ``breakdown.parts``, from a sampling profile
of a second run). The machines are noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time

from breakdown import parts, print_parts

from x402sim.evm.chain import ETHER, GWEI, LocalChain
from x402sim.evm.eip712 import address_of_key
from x402sim.evm.txsign import sign_eip1559
from x402sim.mechanisms.exact_eip3009 import Offer, settlement_calldata, sign_authorization
from x402sim.sim import load_scenario, run
from x402sim.sim.engine import long_lived_frozen
from x402sim.sim.world import World

AGENTS = 100
RATE = 50.0  # paid requests per virtual second, all agents together
BLOCK_TIME = 2
PRICE = 1_000  # atomic units of "0.001"
SETTLE_GAS = 150_000
RATIO_TARGET = 0.85
FLATNESS_TARGET = 1.25


def _scenario(n: int) -> dict:
    duration = n / RATE
    per_agent = n / AGENTS
    return {
        "simulation": {
            "name": f"throughput-{n}",
            "seed": 1,
            "duration": duration,
            "warmup": 0,
            "drain": 10 * BLOCK_TIME,
        },
        "chain": {"block_time": BLOCK_TIME, "fee": {"model": "l1", "base_fee_gwei": 1.0}},
        "network": {"client_server": 0.01, "server_facilitator": 0.005, "facilitator_chain": 0.005},
        "facilitators": [{"name": "facilitator", "concurrency": 100_000}],
        "servers": [
            {
                "name": "api",
                "facilitators": ["facilitator"],
                "endpoints": [{"path": "/data", "price": "0.001"}],
            }
        ],
        "agents": [
            {
                "name": "agents",
                "count": AGENTS,
                "funding": str(max(1, round(4 * per_agent * PRICE / 10**6 + 1))),
                "arrivals": {"kind": "poisson", "rate": RATE / AGENTS},
            }
        ],
    }


def _simulate(n: int, profile: bool = False) -> dict:
    scenario = load_scenario(_scenario(n))
    t0 = time.perf_counter()
    World(scenario)
    setup = time.perf_counter() - t0
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = run(scenario, keep_rows=False, plots=False)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - start
    assert result.invariants_hold, f"invariants broken at {n}: {result.summary['invariants']}"
    paid = result.summary["paid_requests"]
    assert paid > 0, "the simulation paid nothing"
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
        print(f"profile of the simulator at {n} payments (top 20 by cumulative time):")
        print(out.getvalue())
    return {
        "paid": paid,
        "wall": wall,
        "setup": setup,
        "blocks": result.summary["chain"]["blocks"],
        "rss": result.summary["resources"]["peak_rss_mb"],
    }


def _floor(n: int, per_block: int, seed: int = 7) -> float:
    """Seconds to submit and mine ``n`` pre-signed transferWithAuthorization, ``per_block`` a block."""
    chain = LocalChain(seed=seed)
    payers = [chain.new_key() for _ in range(AGENTS)]
    payee = address_of_key(chain.new_key())
    relayer = chain.new_key()
    chain.fund_many(
        [(address_of_key(k), 10**12, 0) for k in payers] + [(address_of_key(relayer), 0, 1_000 * ETHER)]
    )
    offer = Offer(
        scheme="exact",
        network=chain.network,
        amount=PRICE,
        asset=chain.usdc,
        pay_to=payee,
        max_timeout_seconds=86_400,
        extra={"name": chain.token_name, "version": chain.token_version},
    )
    rng = random.Random(seed)
    start_nonce = chain.pending_nonce(address_of_key(relayer))
    max_fee = 2 * chain.base_fee + GWEI
    raws = []
    for i in range(n):
        key = payers[i % AGENTS]
        payload = sign_authorization(key, address_of_key(key), offer, chain.now, rng.randbytes(32))
        signed = sign_eip1559(
            relayer,
            chain_id=chain.chain_id,
            nonce=start_nonce + i,
            gas=SETTLE_GAS,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=0,
            to=chain.usdc,
            data=settlement_calldata(payload),
        )
        raws.append(signed.raw)

    hashes = []
    with long_lived_frozen():  # the garbage collector set as a simulation runs, so both compare alike
        start = time.perf_counter()
        for first in range(0, n, per_block):
            for raw in raws[first : first + per_block]:
                hashes.append(chain.send_raw_transaction(raw))
            chain.advance(BLOCK_TIME)
            chain.mine()
        elapsed = time.perf_counter() - start
    receipts = [chain.receipt(h) for h in hashes]
    assert all(r is not None and r.success for r in receipts), "a floor settlement failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000", help="payments per run, comma-separated")
    parser.add_argument("--profile", action="store_true", help="cProfile the simulator at the smallest size")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())

    if args.profile:
        _simulate(sizes[0], profile=True)

    rows = []
    for n in sizes:
        sim = _simulate(n)
        per_block = max(1, round(sim["paid"] / max(1, sim["blocks"])))
        floor = _floor(sim["paid"], per_block)
        rows.append((n, sim, per_block, floor))

    print(
        f"simulator vs py-evm floor ({AGENTS} payers, {RATE:g} req/s, {BLOCK_TIME}-s blocks); "
        f"targets: ratio >= {RATIO_TARGET}, ms/payment growth <= {FLATNESS_TARGET}"
    )
    header = (
        f"{'payments':>8} {'paid':>6} {'tx/blk':>6} {'sim s':>7} {'setup s':>7} {'sim paid/s':>10} "
        f"{'floor tx/s':>10} {'ratio':>6} {'sim ms/pay':>10} {'growth':>6} {'rss MB':>7}"
    )
    print(header)
    base_ms = None
    for n, sim, per_block, floor in rows:
        sim_rate = sim["paid"] / sim["wall"]
        floor_rate = sim["paid"] / floor
        ms = 1e3 * sim["wall"] / sim["paid"]
        base_ms = base_ms or ms
        ratio = sim_rate / floor_rate
        growth = ms / base_ms
        print(
            f"{n:>8} {sim['paid']:>6} {per_block:>6} {sim['wall']:>7.2f} {sim['setup']:>7.2f} "
            f"{sim_rate:>10.1f} {floor_rate:>10.1f} {ratio:>5.2f}{'' if ratio >= RATIO_TARGET else '!'} "
            f"{ms:>10.2f} {growth:>5.2f}{'' if growth <= FLATNESS_TARGET else '!'} {sim['rss']:>7.1f}"
        )
    print("(! marks a figure that misses its target; rss is the process's peak so far)")
    n, sim = rows[0][0], rows[0][1]
    code = f"from x402sim.sim import load_scenario, run; run(load_scenario({_scenario(n)!r}), plots=False)"
    print_parts(1e6 * sim["wall"] / sim["paid"], parts(code, "run_world"))


if __name__ == "__main__":
    main()
