"""The reference facilitator under the 2026 rules: verify is read-only; settlement_pending always
carries the hash it sent, and a resend is reconciled against that transaction; reserved ``extra``
keys are honoured or refused by name. Judged by the chain: blocks, balances, authorizationState,
Transfer logs and the facilitator's own transaction count."""

from __future__ import annotations

import pytest

from x402sim import Testbed
from x402sim.actors import Facilitator, HttpRequest, Send
from x402sim.actors import facilitator as facilitator_module
from x402sim.actors.facilitator import PendingSettlement
from x402sim.protocol import ReasonClass, SettleResponse, parse_payment_required, reason_class

PRICE = 10_000


def _signed(tb, payers=1):
    """``payers`` funded payers' payments for one shop's offer, and the offer."""
    shop = tb.server({"GET /item": PRICE})
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    required = parse_payment_required(challenge.headers, challenge.body)
    accounts = tb.accounts(payers, usdc=1_000_000)
    payments = [tb.client(a).create_payment(required) for a in accounts]
    return shop, accounts, payments, required.accepts[0]


def _nonce(payment) -> bytes:
    return bytes.fromhex(payment.payload["authorization"]["nonce"][2:])


def _chain_facts(tb, shop, accounts, payments):
    """Everything a write would change: the head, the pool, the facilitator's transaction count,
    the state root, balances and the authorizations' state."""
    fac = tb.facilitator.role
    return (
        tb.chain.block_number,
        tb.chain.pending_count,
        tb.chain.pending_nonce(fac.address),
        tb.chain.latest_state().state_root,
        tb.chain.balance_of(shop.pay_to),
        [tb.chain.balance_of(a.address) for a in accounts],
        [tb.chain.authorization_state(a.address, _nonce(p)) for a, p in zip(accounts, payments, strict=True)],
        fac.claimed,
        fac.unconfirmed,
    )


def _transfers_to(tb, address):
    return [(t.from_, t.value) for t in tb.chain.transfers() if t.to == address]


# -- verify is read-only ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["state", "simulate"])
def test_verify_many_times_writes_nothing_and_settle_still_works(mode):
    tb = Testbed(seed=21)
    tb.facilitator.role.verify_mode = mode
    shop, accounts, payments, requirements = _signed(tb, payers=2)
    poor = tb.account(usdc=PRICE - 1)  # a payment that fails on chain is verified too
    short = tb.client(poor).create_payment(parse_payment_required(*_challenge(tb, shop)))
    before = _chain_facts(tb, shop, accounts, payments)
    for _ in range(5):
        assert all(tb.facilitator.verify(p, requirements).is_valid for p in payments)
        refused = tb.facilitator.verify(short, requirements)
        assert reason_class(refused.invalid_reason) is ReasonClass.balance
    assert _chain_facts(tb, shop, accounts, payments) == before
    answers = [tb.facilitator.settle(p, requirements) for p in payments]
    assert all(a.success for a in answers)
    assert sorted(_transfers_to(tb, shop.pay_to)) == sorted((a.address, PRICE) for a in accounts)


def _challenge(tb, shop):
    answer = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    return answer.headers, answer.body


# -- settlement_pending and its resend ------------------------------------------------------------


def _pending(tb, payment, requirements) -> tuple[PendingSettlement, SettleResponse]:
    fac = tb.facilitator.role
    pending = fac.begin_settle(payment, requirements, tb.now)
    assert isinstance(pending, PendingSettlement)
    answer = fac.abandon_settle(pending, "the receipt wait timed out")
    assert reason_class(answer.error_reason) is ReasonClass.settlement_pending and not answer.success
    assert answer.transaction == "0x" + pending.tx_hash.hex() and len(pending.tx_hash) == 32
    return pending, answer


def test_a_resent_settle_after_pending_is_reconciled_never_sent_twice(tb):
    shop, (alice,), (payment,), requirements = _signed(tb)
    fac = tb.facilitator.role
    sent = tb.chain.pending_nonce(fac.address)
    pending, first = _pending(tb, payment, requirements)
    # Still unmined: the resend is the same settlement, pending again with the same hash.
    again = fac.begin_settle(payment, requirements, tb.now)
    assert again is pending and tb.chain.pending_count == 1
    assert fac.abandon_settle(again).transaction == first.transaction
    # Mined: the resend answers the transaction's outcome.
    tb.mine()
    landed = fac.settle_now(payment, requirements, tb.now)
    assert landed.success and landed.transaction == first.transaction
    assert tb.chain.pending_nonce(fac.address) == sent + 1  # one transaction in all
    assert _transfers_to(tb, shop.pay_to) == [(alice.address, PRICE)]
    assert tb.chain.authorization_state(alice.address, _nonce(payment)) is True
    assert [r.success for r in fac.settlements] == [True]  # judged and recorded once
    # Its answer was given: a further copy meets the claim (no "nonce used", nothing sent).
    late = fac.settle_now(payment, requirements, tb.now)
    assert reason_class(late.error_reason) is ReasonClass.duplicate and late.transaction == ""
    assert tb.chain.pending_nonce(fac.address) == sent + 1 and fac.unconfirmed == 0


def test_a_resent_settle_of_a_reverted_transaction_answers_its_failure(tb):
    shop, (alice,), (payment,), requirements = _signed(tb)
    fac = tb.facilitator.role
    sent = tb.chain.pending_nonce(fac.address)
    _, first = _pending(tb, payment, requirements)
    tb.advance(requirements.max_timeout_seconds + 60)  # it is mined only after validBefore
    tb.mine()
    answer = fac.settle_now(payment, requirements, tb.now)
    assert not answer.success and answer.transaction == first.transaction
    assert reason_class(answer.error_reason) is ReasonClass.expired
    assert tb.chain.pending_nonce(fac.address) == sent + 1
    assert tb.chain.balance_of(alice.address) == 1_000_000 and _transfers_to(tb, shop.pay_to) == []
    assert tb.chain.authorization_state(alice.address, _nonce(payment)) is False


def test_a_different_payment_is_never_reconciled_against_a_pending_one(tb):
    shop, accounts, payments, requirements = _signed(tb, payers=2)
    fac = tb.facilitator.role
    pending, _ = _pending(tb, payments[0], requirements)
    other = fac.begin_settle(payments[1], requirements, tb.now)
    assert isinstance(other, PendingSettlement) and other.tx_hash != pending.tx_hash
    tb.mine()
    assert fac.finish_settle(other, tb.chain.receipt(other.tx_hash)).success
    assert fac.settle_now(payments[0], requirements, tb.now).transaction == "0x" + pending.tx_hash.hex()
    assert sorted(_transfers_to(tb, shop.pay_to)) == sorted((a.address, PRICE) for a in accounts)


def test_the_pending_store_is_bounded_and_a_forgotten_resend_is_a_definite_refusal(tb, monkeypatch):
    monkeypatch.setattr(facilitator_module, "MAX_UNCONFIRMED", 2)
    shop, accounts, payments, requirements = _signed(tb, payers=3)
    fac = tb.facilitator.role
    hashes = [_pending(tb, p, requirements)[1].transaction for p in payments]
    assert fac.unconfirmed == 2
    tb.mine()
    oldest = fac.settle_now(payments[0], requirements, tb.now)
    assert reason_class(oldest.error_reason) is ReasonClass.duplicate and oldest.transaction == ""
    assert [fac.settle_now(p, requirements, tb.now).transaction for p in payments[1:]] == hashes[1:]
    landed = sorted(_transfers_to(tb, shop.pay_to))
    assert landed == sorted((a.address, PRICE) for a in accounts)  # each payment's one transaction


class _NoHash(Facilitator):
    """A submission hook that reports no transaction hash."""

    def submit(self, calldata: bytes, asset: str, **call: object) -> bytes:
        return b""


def test_nothing_sent_is_never_pending_but_a_definite_failure(tb):
    shop, (alice,), (payment,), requirements = _signed(tb)
    fac = _NoHash(tb.chain, tb.chain.new_key())
    answer = fac.begin_settle(payment, requirements, tb.now)
    assert isinstance(answer, SettleResponse) and not answer.success
    assert reason_class(answer.error_reason) is ReasonClass.transaction_failed and fac.claimed == 0
    real = tb.facilitator.role.begin_settle(payment, requirements, tb.now)
    assert isinstance(real, PendingSettlement)
    hashless = PendingSettlement(
        b"", real.payer, real.offer, real.verdict, real.network, tb.now, real.mechanism
    )
    refused = tb.facilitator.role.abandon_settle(hashless)
    assert reason_class(refused.error_reason) is ReasonClass.transaction_failed and refused.transaction == ""
    tb.mine()
    assert _transfers_to(tb, shop.pay_to) == [(alice.address, PRICE)]  # the real one only


# -- reserved extra keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected", "named"),
    [
        ({"assetTransferMethod": "erc7710"}, ReasonClass.scheme, "'erc7710'"),
        ({"assetTransferMethod": 3009}, ReasonClass.scheme, "3009"),
        ({"paymentFlow": "stream"}, ReasonClass.malformed_requirements, "'stream'"),
        ({"paymentFlow": ["upfront"]}, ReasonClass.malformed_requirements, "['upfront']"),
    ],
)
def test_a_reserved_key_it_cannot_honour_is_refused_by_name_and_nothing_moves(tb, extra, expected, named):
    shop, accounts, payments, requirements = _signed(tb)
    odd = requirements.model_copy(update={"extra": {**requirements.extra, **extra}})
    before = _chain_facts(tb, shop, accounts, payments)
    verdict = tb.facilitator.verify(payments[0], odd)
    assert not verdict.is_valid and reason_class(verdict.invalid_reason) is expected
    assert named in verdict.invalid_message
    settled = tb.facilitator.settle(payments[0], odd)
    assert not settled.success and reason_class(settled.error_reason) is expected
    assert settled.transaction == "" and named in (settled.error_message or "")
    assert _chain_facts(tb, shop, accounts, payments) == before


@pytest.mark.parametrize(
    "extra",
    [
        {"paymentFlow": "authorization"},
        {"paymentFlow": "upfront"},
        {"paymentFlow": "escrow"},
        {"assetTransferMethod": "eip3009"},
        {"paymentFlow": None, "assetTransferMethod": None},
    ],
)
def test_the_reserved_flows_and_eip3009_verify_and_settle_as_usual(tb, extra):
    shop, (alice,), (payment,), requirements = _signed(tb)
    flowed = requirements.model_copy(update={"extra": {**requirements.extra, **extra}})
    assert tb.facilitator.verify(payment, flowed).is_valid
    assert tb.facilitator.settle(payment, flowed).success
    assert _transfers_to(tb, shop.pay_to) == [(alice.address, PRICE)]
    assert tb.chain.authorization_state(alice.address, _nonce(payment)) is True
