"""The exact scheme judges a payment's offline rows once per authorization: verify and settle of
the same payment share the parse, the offer and every row but the two that depend on the time,
which are judged again at each call (``x402sim.mechanisms.exact_eip3009``)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim import Testbed
from x402sim.actors import HttpRequest, Send
from x402sim.mechanisms import exact_eip3009
from x402sim.protocol import PaymentPayload, Reason, codec, parse_payment_required

PRICE = 10_000


def _signed(tb: Testbed):
    shop = tb.server({"GET /item": PRICE})
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    required = parse_payment_required(challenge.headers, challenge.body)
    (payer,) = tb.accounts(1, usdc=1_000_000)
    return shop, payer, tb.client(payer).create_payment(required), required.accepts[0]


def _fresh(payment, requirements, now, chain_id):
    """The verdict judged from nothing: a copy of each message, so nothing is shared."""
    return exact_eip3009.check_offline(copy.deepcopy(payment), copy.deepcopy(requirements), now, chain_id)


@settings(max_examples=20)
@given(st.lists(st.integers(-400, 400), min_size=1, max_size=5))
def test_each_check_of_one_payment_gives_the_verdict_of_a_fresh_judgement(offsets: list[int]) -> None:
    # The same objects judged at several times (verify, then settle later or earlier) give, at each
    # time, what a judgement from scratch gives: the time rows are not kept.
    tb = Testbed(seed=3)
    _, _, payment, requirements = _signed(tb)
    for offset in offsets:
        now = tb.now + offset
        kept = exact_eip3009.check_offline(payment, requirements, now, tb.chain.chain_id)
        fresh = _fresh(payment, requirements, now, tb.chain.chain_id)
        assert (kept.reason, kept.message, kept.payer) == (fresh.reason, fresh.message, fresh.payer)


def test_a_payment_verified_in_time_is_refused_at_settle_once_its_window_closed() -> None:
    tb = Testbed(seed=4)
    shop, payer, payment, requirements = _signed(tb)
    fac = tb.facilitator.role
    assert fac.verify(payment, requirements, tb.now).is_valid
    late = tb.now + 10 * requirements.max_timeout_seconds
    answer = fac.begin_settle(payment, requirements, late)
    assert not answer.success
    assert answer.error_reason == Reason.invalid_exact_evm_payload_authorization_valid_before.value
    tb.mine()
    assert tb.chain.balance_of(shop.pay_to) == 0 and tb.chain.balance_of(payer.address) == 1_000_000


def test_a_payload_signed_here_is_parsed_once_and_an_altered_copy_in_full(monkeypatch) -> None:
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", False)  # the path users run
    parsed = []
    real = exact_eip3009.parse_exact_evm_payload
    monkeypatch.setattr(
        exact_eip3009, "parse_exact_evm_payload", lambda data: parsed.append(data) or real(data)
    )
    tb = Testbed(seed=5)
    shop, payer, payment, requirements = _signed(tb)
    fac = tb.facilitator.role
    assert fac.verify(payment, requirements, tb.now).is_valid
    assert parsed == []  # the client's own payload: its model, not a parse
    altered = copy.deepcopy(payment.payload)
    altered["authorization"]["value"] = str(2 * PRICE)
    forged = PaymentPayload.from_wire({**payment.to_wire(), "payload": altered})
    answer = fac.verify(forged, requirements, tb.now)
    assert len(parsed) == 1 and not answer.is_valid
    assert answer.invalid_reason == Reason.invalid_exact_evm_payload_authorization_value_mismatch.value
    settled = fac.begin_settle(payment, requirements, tb.now)
    tb.mine()
    assert fac.finish_settle(settled, tb.chain.receipt(settled.tx_hash)).success
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    nonce = bytes.fromhex(payment.payload["authorization"]["nonce"][2:])
    assert tb.chain.authorization_state(payer.address, nonce)


def test_under_the_check_a_payment_changed_between_two_checks_is_caught() -> None:
    tb = Testbed(seed=6)
    _, _, payment, requirements = _signed(tb)
    fac = tb.facilitator.role
    assert fac.verify(payment, requirements, tb.now).is_valid
    payment.payload["authorization"]["to"] = payment.payload["authorization"]["from"]  # in place
    assert codec.CHECK_TRUSTED_HOPS  # the suite's setting (tests/conftest.py)
    with pytest.raises(AssertionError, match="changed between two offline checks"):
        fac.verify(payment, requirements, tb.now)
