"""Idle block ticks cost no event: a producer that sleeps while nothing is pending gives the very
run that one ticking every block time gives (``x402sim.sim.producer``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.sim import producer as producer_module
from x402sim.sim import run
from x402sim.sim import world as world_module
from x402sim.sim.summary import stable


class TickingProducer(producer_module.BlockProducer):
    """The producer as it was: it never sleeps, so every tick is an event."""

    def _idle(self) -> bool:
        return False


def _scenario(block_time, flashblocks, confirmations, stall, rate, seed) -> dict:
    chain: dict = {"block_time": block_time, "confirmations": confirmations}
    if flashblocks:
        chain["preconfirmation"] = block_time / flashblocks
    return {
        "simulation": {"name": "idle", "seed": seed, "duration": 60, "warmup": 0, "timeline_bucket": 10},
        "chain": chain,
        "network": {"client_server": {"kind": "exponential", "mean": 0.05}, "server_facilitator": 0.01},
        "facilitators": [{"name": "fac", "verify_time": 0.01, "settle_time": 0.02}],
        "servers": [
            {"name": "shop", "facilitators": ["fac"], "endpoints": [{"path": "/a", "price": "0.01"}]}
        ],
        "agents": [
            {"name": "buyers", "count": 2, "funding": "5", "arrivals": {"kind": "poisson", "rate": rate}}
        ],
        "faults": [{"kind": "chain-stall", "start": stall[0], "end": stall[0] + stall[1]}] if stall else [],
    }


def _outcome(scenario: dict):
    result = run(scenario)
    return stable(result.summary), [(r.id, r.tx_hash, r.outcome, r.done, r.final) for r in result.rows]


@settings(max_examples=6)
@given(
    block_time=st.sampled_from([0.4, 1.0, 2.0, 2.2, 12.0]),
    flashblocks=st.sampled_from([0, 4, 10]),
    confirmations=st.integers(0, 2),
    stall=st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(1, 25))),
    rate=st.sampled_from([0.02, 0.1, 1.0]),  # sparse traffic: long idle stretches between payments
    seed=st.integers(1, 1000),
)
def test_sleeping_through_idle_ticks_changes_nothing(
    block_time, flashblocks, confirmations, stall, rate, seed
):
    scenario = _scenario(block_time, flashblocks, confirmations, stall, rate, seed)
    sleeping = _outcome(scenario)
    original = world_module.BlockProducer
    world_module.BlockProducer = TickingProducer
    try:
        ticking = _outcome(scenario)
    finally:
        world_module.BlockProducer = original
    assert sleeping == ticking
    summary = sleeping[0]
    assert summary["chain"]["height"] > 0 and summary["invariants"]["supply_conserved"]
