"""The facilitator controls themselves, as roles: a control must misbehave only in its one way."""

from __future__ import annotations

from x402sim import Testbed
from x402sim.actors import HttpRequest, Send
from x402sim.actors.facilitator import PendingSettlement
from x402sim.conformance.facilitator_controls import _SettleSkipsReverify
from x402sim.evm.chain import ETHER
from x402sim.evm.eip712 import address_of_key
from x402sim.protocol import parse_payment_required

PRICE = 20_000


def test_settle_skips_reverify_settles_a_valid_payment():
    # It once built its PendingSettlement without the mechanism (a TypeError on every parsable payment).
    tb = Testbed(seed=31)
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /item": PRICE})
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    required = parse_payment_required(challenge.headers, challenge.body)
    payment, requirements = tb.client(alice).create_payment(required), required.accepts[0]
    key = tb.chain.new_key()
    tb.chain.fund(address_of_key(key), eth=ETHER)
    facilitator = _SettleSkipsReverify(tb.chain, key)

    pending = facilitator.begin_settle(payment, requirements, tb.now)
    assert isinstance(pending, PendingSettlement)
    tb.mine()
    answer = facilitator.finish_settle(pending, tb.chain.receipt(pending.tx_hash))

    assert answer.success
    assert tb.chain.balance_of(shop.pay_to) == PRICE
