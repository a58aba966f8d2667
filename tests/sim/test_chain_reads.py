"""Charging the facilitator's chain latency per round trip it makes (``network.facilitator_chain_reads``)."""

from __future__ import annotations

from pathlib import Path

from x402sim.actors import Facilitator, HttpRequest, Send
from x402sim.protocol import parse_payment_required
from x402sim.sim import run
from x402sim.sim.reads import CountingChain
from x402sim.testbed import Testbed

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.toml"
SHORT = {"simulation.duration": 20}


def test_counting_changes_no_answer_and_counts_the_round_trips():
    tb = Testbed(seed=5)
    payer = tb.account(usdc=100_000)
    shop = tb.server({"GET /item": 1_000})
    counted = CountingChain(tb.chain)
    facilitator = Facilitator(counted, tb.chain.new_key())
    tb.chain.fund(facilitator.address, eth=10**18)
    client = tb.client(payer)
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    payment = client.create_payment(parse_payment_required(challenge.headers, challenge.body))
    requirements = shop.role.requirements(shop.role.routes["GET /item"])
    assert facilitator.verify(payment, requirements, tb.now).is_valid
    assert counted.take() == 2  # the asset's code, and the call predicted from its storage
    answer = facilitator.settle_now(payment, requirements, tb.now)
    assert answer.success and tb.chain.balance_of(shop.pay_to) == 1_000
    # again the two reads, then the facilitator's nonce, the base fee, the submission, the receipt
    assert counted.take() == 6
    assert counted.take() == 0


def test_counted_round_trips_keep_every_invariant_and_change_only_timing():
    fixed = run(QUICKSTART, overrides=SHORT, plots=False, keep_rows=False).summary
    counted = run(
        QUICKSTART, overrides={**SHORT, "network.facilitator_chain_reads": "counted"}, plots=False
    ).summary
    assert all(counted["invariants"].values())
    assert counted["settled_payments"] == counted["paid_requests"] > 0
    # a verify on the embedded chain makes exactly the two round trips the fixed mode charges
    assert counted["latency_ms"]["verify"] == fixed["latency_ms"]["verify"]
