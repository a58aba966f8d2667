"""The mechanism registry: how the roles find a mechanism, and what they do with offers of none."""

from __future__ import annotations

import dataclasses

import pytest

from x402sim.actors import Facilitator, PaymentRefused, Send
from x402sim.actors.messages import HttpRequest
from x402sim.mechanisms import (
    BATCH_EIP3009,
    BATCH_PERMIT2,
    EXACT_EIP3009,
    EXACT_PERMIT2,
    UPTO_PERMIT2,
    ExactEip3009,
    Mechanisms,
    default_mechanisms,
    ledger_refusal,
)
from x402sim.protocol import encode_header, parse_payment_required

PRICE = 10_000


class NoLedgerRules(ExactEip3009):
    """A mechanism the ledger backend cannot run (as a new one is until its rules are written)."""

    scheme = "metered"
    ledger_rules = None


def test_the_default_registry_finds_exact_eip3009_by_scheme_network_and_method():
    registry = default_mechanisms()
    assert list(registry) == [EXACT_EIP3009, EXACT_PERMIT2, UPTO_PERMIT2, BATCH_EIP3009, BATCH_PERMIT2]
    assert registry.find("batch-settlement", "eip155:1") is BATCH_EIP3009
    assert registry.find("batch-settlement", "eip155:1", {"assetTransferMethod": "permit2"}) is BATCH_PERMIT2
    assert registry.find("exact", "eip155:8453") is EXACT_EIP3009
    assert registry.find("exact", "base-sepolia") is EXACT_EIP3009  # a v1 name is an EVM network
    assert registry.find("exact", "eip155:1", {"assetTransferMethod": "eip3009"}) is EXACT_EIP3009
    assert registry.find("exact", "eip155:1", {"assetTransferMethod": "permit2"}) is EXACT_PERMIT2
    assert registry.find("upto", "eip155:1") is UPTO_PERMIT2  # upto has one method: Permit2
    assert registry.find("upto", "eip155:1", {"assetTransferMethod": "eip3009"}) is None
    assert registry.find("exact", "eip155:1", {"assetTransferMethod": "erc7710"}) is None
    assert registry.find("exact", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp") is None


def test_a_scheme_nobody_registered_is_judged_by_the_familys_first_mechanism():
    registry = Mechanisms([EXACT_EIP3009, NoLedgerRules()])
    assert registry.judge_with("bogus", "eip155:1") is EXACT_EIP3009
    assert registry.judge_with("metered", "eip155:1").scheme == "metered"
    assert registry.schemes == {"exact", "metered"}


def test_a_mechanism_is_registered_once():
    with pytest.raises(ValueError, match="exact/eip155/eip3009 is registered already"):
        Mechanisms([EXACT_EIP3009, ExactEip3009()])


def test_the_ledger_refuses_a_mechanism_without_rules_naming_it():
    assert ledger_refusal([EXACT_EIP3009]) is None
    assert ledger_refusal([EXACT_EIP3009, NoLedgerRules()]) == (
        'the ledger backend has no rules for mechanism metered/eip155/eip3009: use backend = "evm"'
    )


def test_supported_kinds_come_from_the_facilitators_mechanisms(tb):
    both = Facilitator(tb.chain, tb.chain.new_key(), mechanisms=Mechanisms([EXACT_EIP3009, NoLedgerRules()]))
    kinds = {(k.x402_version, k.scheme) for k in both.supported().kinds}
    assert kinds == {(2, "exact"), (2, "metered")}  # the local chain has no v1 name


def _challenge(tb, shop):
    first = tb.perform(shop, Send(HttpRequest("GET", "/item")))
    return parse_payment_required(first.headers, first.body)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"scheme": "metered"}, "scheme 'metered' is not supported"),
        ({"extra": {"name": "USDC", "version": "2", "assetTransferMethod": "erc7710"}}, "no mechanism pays"),
        ({"scheme": "upto"}, "upto offer lacks extra.facilitatorAddress"),
    ],
)
def test_the_client_pays_only_offers_a_registered_mechanism_pays(tb, change, refusal):
    payer = tb.account(usdc=10 * PRICE)
    shop = tb.server({"GET /item": PRICE})
    challenge = _challenge(tb, shop)
    altered = challenge.model_copy(update={"accepts": [challenge.accepts[0].model_copy(update=change)]})
    with pytest.raises(PaymentRefused, match=refusal):
        tb.client(payer).create_payment(altered)
    assert tb.chain.balance_of(payer.address) == 10 * PRICE


def test_the_facilitator_refuses_a_scheme_nobody_registered_before_the_chain(tb):
    payer = tb.account(usdc=10 * PRICE)
    shop = tb.server({"GET /item": PRICE})
    payment = tb.client(payer).create_payment(_challenge(tb, shop))
    other = dataclasses.replace(shop.role, mechanism=NoLedgerRules())
    answer = tb.facilitator.verify(payment, other.requirements(other.routes["GET /item"]))
    assert answer.invalid_reason == "unsupported_scheme"
    assert tb.chain.balance_of(shop.pay_to) == 0
    paid = HttpRequest("GET", "/item", (("PAYMENT-SIGNATURE", encode_header(payment)),))
    assert tb.perform(shop, Send(paid)).status == 200  # the registered scheme still pays, once
    assert tb.chain.balance_of(shop.pay_to) == PRICE
