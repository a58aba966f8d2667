"""Every verify reason of the exact scheme, triggered by a crafted payment and judged by class.

For each bad payment, ``/verify`` must refuse it with the expected reason class, and ``/settle`` must
refuse it too without moving anything on chain.
"""

import dataclasses

import pytest

from tests.helpers import craft_payment
from x402sim.mechanisms.exact_eip3009 import CHECKS, Offer
from x402sim.protocol import ReasonClass, reason_class

PRICE = 10_000
OTHER = "0x" + "ab" * 20


def _setup(tb, usdc=1_000_000):
    payer = tb.account(usdc=usdc)
    server = tb.server({"GET /data": PRICE})
    requirements = server.role.requirements(server.role.routes["GET /data"])
    return payer, server, requirements


def _with(requirements, **changes):
    return requirements.model_copy(update=changes)


CASES = {
    "wrong scheme": (
        ReasonClass.scheme,
        lambda tb, p, req, base: craft_payment(
            p.key, p.address, req, tb.now, accepted=_with(req, scheme="upto")
        ),
        None,
    ),
    "network mismatch": (
        ReasonClass.network,
        lambda tb, p, req, base: craft_payment(
            p.key, p.address, req, tb.now, accepted=_with(req, network="eip155:1")
        ),
        None,
    ),
    "network not served here": (
        ReasonClass.network_config,
        lambda tb, p, req, base: craft_payment(p.key, p.address, _with(req, network="eip155:1"), tb.now),
        lambda req: _with(req, network="eip155:1"),
    ),
    "missing EIP-712 domain": (
        ReasonClass.eip712_domain,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, sign_offer=Offer.of(base)),
        lambda req: _with(req, extra={}),
    ),
    "recipient is not payTo": (
        ReasonClass.recipient,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, to=OTHER),
        None,
    ),
    "amount under": (
        ReasonClass.amount,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, value=PRICE - 1),
        None,
    ),
    "amount over": (
        ReasonClass.amount,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, value=PRICE + 1),
        None,
    ),
    "expired": (
        ReasonClass.expired,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, valid_before=tb.now + 5),
        None,
    ),
    "not yet valid": (
        ReasonClass.not_yet_valid,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, valid_after=tb.now + 30),
        None,
    ),
    "garbage signature": (
        ReasonClass.signature,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, signature="0x" + "11" * 65),
        None,
    ),
    "signer is not from": (
        ReasonClass.signature,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, sign_key=b"\x09" * 32),
        None,
    ),
    "signed over another chain id": (
        ReasonClass.signature,
        lambda tb, p, req, base: craft_payment(
            p.key, p.address, req, tb.now, sign_offer=dataclasses.replace(Offer.of(req), network="eip155:1")
        ),
        None,
    ),
    "insufficient balance": (
        ReasonClass.balance,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now, nonce=b"\x07" * 32),
        "poor",
    ),
    "wrong token name": (
        ReasonClass.token_name,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now),
        lambda req: _with(req, extra={"name": "USDC", "version": "2"}),
    ),
    "wrong token version": (
        ReasonClass.token_version,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now),
        lambda req: _with(req, extra={"name": "USD Coin", "version": "1"}),
    ),
    "asset is not a contract": (
        ReasonClass.asset_not_contract,
        lambda tb, p, req, base: craft_payment(p.key, p.address, req, tb.now),
        lambda req: _with(req, asset=OTHER),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_payment_is_refused_by_verify_and_settle(tb, case):
    expected, make, adjust = CASES[case]
    payer, server, base = _setup(tb, usdc=0 if adjust == "poor" else 1_000_000)
    requirements = adjust(base) if callable(adjust) else base
    payment = make(tb, payer, requirements, base)
    supply, block = tb.chain.total_supply(), tb.chain.block_number

    verdict = tb.facilitator.verify(payment, requirements)
    assert not verdict.is_valid
    assert reason_class(verdict.invalid_reason) is expected, verdict

    settlement = tb.facilitator.settle(payment, requirements)
    assert not settlement.success and settlement.transaction == ""
    assert reason_class(settlement.error_reason) is expected
    nonce = bytes.fromhex(payment.payload["authorization"]["nonce"][2:])
    assert tb.chain.authorization_state(payer.address, nonce) is False
    assert tb.chain.balance_of(server.pay_to) == 0
    assert tb.chain.total_supply() == supply
    assert not tb.chain.transfers(since_block=block + 1)


def test_malformed_scheme_payload_is_invalid_payload(tb):
    payer, _, requirements = _setup(tb)
    payment = craft_payment(payer.key, payer.address, requirements, tb.now)
    broken = dict(
        payment.payload, authorization=dict(payment.payload["authorization"], nonce="0x" + "00" * 31)
    )
    verdict = tb.facilitator.verify(payment.model_copy(update={"payload": broken}), requirements)
    assert reason_class(verdict.invalid_reason) is ReasonClass.malformed_payload
    assert "nonce" in verdict.invalid_message


def test_reused_nonce_is_refused_after_settlement(tb):
    payer, server, requirements = _setup(tb)
    payment = craft_payment(payer.key, payer.address, requirements, tb.now)
    assert tb.facilitator.verify(payment, requirements).is_valid
    assert tb.facilitator.settle(payment, requirements).success
    verdict = tb.facilitator.verify(payment, requirements)
    assert reason_class(verdict.invalid_reason) is ReasonClass.nonce_used
    again = tb.facilitator.settle(payment, requirements)
    assert reason_class(again.error_reason) in (ReasonClass.duplicate, ReasonClass.nonce_used)
    assert tb.chain.balance_of(server.pay_to) == PRICE


def test_a_valid_payment_passes_every_check(tb):
    payer, _, requirements = _setup(tb)
    payment = craft_payment(payer.key, payer.address, requirements, tb.now)
    verdict = tb.facilitator.verify(payment, requirements)
    assert verdict.is_valid and verdict.payer == payer.address and verdict.invalid_reason is None


def test_the_check_table_is_in_the_reference_order():
    order = [reason_class(reason.value) for _, reason, _ in CHECKS]
    assert order == [
        ReasonClass.scheme,
        ReasonClass.network,
        ReasonClass.network_config,
        ReasonClass.eip712_domain,
        ReasonClass.recipient,
        ReasonClass.amount,
        ReasonClass.expired,
        ReasonClass.not_yet_valid,
        ReasonClass.signature,
    ]
