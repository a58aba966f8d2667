"""The weakness switches of the reference roles, judged by what the chain says.

Each switch reproduces a behaviour seen in deployed x402 services, for the simulator to study:
they are options of the one implementation, so each test also shows the safe default.
"""

import pytest

from x402sim import Testbed
from x402sim.actors import BaseDriver, HttpRequest, HttpResponse, ResourceServer, Route, Send, run
from x402sim.actors.server import ReplayGuard
from x402sim.evm.token import AUTHORIZATION_ALREADY_USED_TOPIC
from x402sim.protocol import (
    PAYMENT_SIGNATURE,
    ReasonClass,
    SettleResponse,
    encode_header,
    parse_payment_required,
    reason_class,
)

PRICE = 20_000


def _signed(tb, payer_usdc=1_000_000):
    alice = tb.account(usdc=payer_usdc)
    shop = tb.server({"GET /item": PRICE})
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    required = parse_payment_required(challenge.headers, challenge.body)
    return shop, tb.client(alice).create_payment(required), required.accepts[0]


def _settle_mined(tb, payment, requirements):
    pending = tb.facilitator.role.begin_settle(payment, requirements, tb.now)
    tb.mine()
    return _finish(tb.facilitator.role, tb.chain, pending)


def _finish(facilitator, chain, pending):
    if isinstance(pending, SettleResponse):
        return pending
    return facilitator.finish_settle(pending, chain.receipt(pending.tx_hash))


def test_share_answers_every_concurrent_copy_with_the_one_transaction():
    tb = Testbed(seed=21, dedupe="share")
    shop, payment, requirements = _signed(tb)
    facilitator = tb.facilitator.role
    copies = [facilitator.begin_settle(payment, requirements, tb.now) for _ in range(3)]
    tb.mine()
    answers = [_finish(facilitator, tb.chain, p) for p in copies]

    assert all(a.success for a in answers)
    assert len({a.transaction for a in answers}) == 1  # upstream #1805: one hash for every copy
    assert [t.to for t in tb.chain.transfers() if t.to == shop.pay_to] == [shop.pay_to]
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    assert len(facilitator.settlements) == 1  # judged and recorded once


def test_dedupe_off_sends_every_copy_and_the_token_refuses_all_but_one():
    tb = Testbed(seed=22, dedupe="off")
    shop, payment, requirements = _signed(tb)
    facilitator = tb.facilitator.role
    copies = [facilitator.begin_settle(payment, requirements, tb.now) for _ in range(3)]
    tb.mine()
    answers = [_finish(facilitator, tb.chain, p) for p in copies]

    assert [a.success for a in answers] == [True, False, False]
    assert {reason_class(a.error_reason) for a in answers[1:]} == {ReasonClass.nonce_used}
    receipts = [tb.chain.receipt(p.tx_hash) for p in copies]
    assert [r.success for r in receipts] == [True, False, False]  # gas spent on two reverts
    assert tb.chain.balance_of(shop.pay_to) == PRICE


def test_unknown_dedupe_mode_is_refused():
    with pytest.raises(ValueError, match="dedupe"):
        Testbed(seed=1, dedupe="sometimes")


@pytest.mark.parametrize("check_log", [True, False])
def test_receipt_trust_on_a_non_reverting_token(check_log):
    tb = Testbed(seed=23, dedupe="off", token="pyusd")
    shop, payment, requirements = _signed(tb)
    facilitator = tb.facilitator.role
    facilitator.check_transfer_log = check_log
    first = _settle_mined(tb, payment, requirements)
    replay_pending = facilitator.begin_settle(payment, requirements, tb.now)  # verify passes: no revert
    tb.mine()
    receipt = tb.chain.receipt(replay_pending.tx_hash)
    assert receipt.success and not receipt.transfers()  # the token moved nothing
    assert any(log.topics[0] == AUTHORIZATION_ALREADY_USED_TOPIC for log in receipt.logs)
    replay = facilitator.finish_settle(replay_pending, receipt)

    assert first.success
    assert replay.success is (not check_log)  # trusting the status "settles" a replay for free
    if check_log:
        assert reason_class(replay.error_reason) is ReasonClass.transfer_event_mismatch
    assert tb.chain.balance_of(shop.pay_to) == PRICE


def test_abandoned_settlement_answers_pending_and_keeps_its_claim(tb):
    shop, payment, requirements = _signed(tb)
    facilitator = tb.facilitator.role
    pending = facilitator.begin_settle(payment, requirements, tb.now)
    answer = facilitator.abandon_settle(pending)
    assert not answer.success and reason_class(answer.error_reason) is ReasonClass.settlement_pending
    assert answer.transaction == "0x" + pending.tx_hash.hex()
    resent = facilitator.begin_settle(payment, requirements, tb.now)
    assert resent is pending  # reconciled against the transaction sent, none sent again
    again = facilitator.begin_settle(payment, requirements, tb.now)  # a third copy meets the claim
    assert reason_class(again.error_reason) is ReasonClass.duplicate
    tb.mine()
    assert tb.chain.balance_of(shop.pay_to) == PRICE  # it landed after all


def _server(tb, **options):
    return ResourceServer.with_prices(
        {"GET /item": Route("GET /item", PRICE)}, chain=tb.chain, pay_to=tb.account().address, **options
    )


class _Driver(BaseDriver):
    """The testbed's facilitator, and a handler that notes the paths it served in ``handled``."""

    world = "test"

    def __init__(self, tb, handled, before_settle=None):
        self.tb, self.handled, self.before_settle = tb, handled, before_settle

    def handle(self, effect):
        self.handled.append(effect.request.path)
        return HttpResponse.of_json(200, {"ok": True})

    def verify(self, effect):
        return self.tb.facilitator.verify(effect.payload, effect.requirements)

    def settle(self, effect):
        if self.before_settle is not None:
            self.before_settle()
        return self.tb.facilitator.settle(effect.payload, effect.requirements)


def _perform(tb, handled):
    return _Driver(tb, handled)


def test_replay_guard_refuses_a_second_presentation_before_verify(tb):
    server = _server(tb, replay_guard=ReplayGuard(ttl=60))
    alice = tb.account(usdc=1_000_000)
    client = tb.client(alice)
    first = run(server.handle(HttpRequest("GET", "/item"), tb.now), _perform(tb, []))
    payment = client.create_payment(parse_payment_required(first.headers, first.body))
    paid = HttpRequest("GET", "/item", ((PAYMENT_SIGNATURE, encode_header(payment)),))
    handled = []
    answers = [run(server.handle(paid, tb.now), _perform(tb, handled)) for _ in range(2)]
    assert [a.status for a in answers] == [200, 402]
    assert handled == ["/item"]  # the copy never reached the handler
    assert server.stats["replay_refused"] == 1
    tb.advance(61)  # after the TTL the facilitator, not the guard, refuses it (nonce used)
    late = run(server.handle(paid, tb.now), _perform(tb, handled))
    assert late.status == 402 and server.stats["invalid"] == 1
    assert tb.chain.balance_of(server.pay_to) == PRICE


def test_replay_guard_forgets_a_payment_refused_at_verify(tb):
    guard = ReplayGuard(ttl=60)
    server = _server(tb, replay_guard=guard)
    broke = tb.account(usdc=0)
    first = run(server.handle(HttpRequest("GET", "/item"), tb.now), _perform(tb, []))
    payment = tb.client(broke).create_payment(parse_payment_required(first.headers, first.body))
    paid = HttpRequest("GET", "/item", ((PAYMENT_SIGNATURE, encode_header(payment)),))
    answer = run(server.handle(paid, tb.now), _perform(tb, []))
    assert answer.status == 402 and len(guard) == 0


def test_a_guarded_server_needs_the_time(tb):
    server = _server(tb, replay_guard=ReplayGuard(ttl=60))
    first = run(server.handle(HttpRequest("GET", "/item"), tb.now), _perform(tb, []))
    payment = tb.client(tb.account(usdc=10**6)).create_payment(
        parse_payment_required(first.headers, first.body)
    )
    paid = HttpRequest("GET", "/item", ((PAYMENT_SIGNATURE, encode_header(payment)),))
    with pytest.raises(ValueError, match="needs the time"):
        run(server.handle(paid), _perform(tb, []))


@pytest.mark.parametrize("upfront", [False, True])
def test_serve_unsettled_delivers_although_settlement_failed(tb, upfront):
    server = _server(tb, serve_unsettled=True, upfront=upfront)
    broke = tb.account(usdc=PRICE, eth=10**16)
    first = run(server.handle(HttpRequest("GET", "/item"), tb.now), _perform(tb, []))
    payment = tb.client(broke).create_payment(parse_payment_required(first.headers, first.body))
    paid = HttpRequest("GET", "/item", ((PAYMENT_SIGNATURE, encode_header(payment)),))
    handled = []

    def drain():  # the payer's funds are gone when settlement runs
        tb.chain.transact(broke.key, tb.chain.usdc, _transfer(tb, PRICE))
        tb.mine()

    answer = run(server.handle(paid, tb.now), _Driver(tb, handled, before_settle=drain))
    assert answer.status == 200 and handled == ["/item"]
    assert server.stats["served_unsettled"] == 1
    assert tb.chain.balance_of(server.pay_to) == 0  # served, never paid


def _transfer(tb, amount):
    from x402sim.evm.token import encode_call

    return encode_call("transfer(address,uint256)", tb.chain.bank, amount)
