"""AP2 mandates through the reference roles on the testbed chain: what the mandate allows settles,
nothing else moves a token, and the EIP-3009 nonce on chain is the mandate chain's keccak256."""

from __future__ import annotations

import random

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from x402sim.actors.client import Client
from x402sim.actors.messages import HttpRequest, Send
from x402sim.protocol import decode_header, encode_header
from x402sim.protocol.models import PaymentPayload, PaymentRequired
from x402sim.testbed import Testbed
from x402sim.trust.mandates import (
    AGENT_RECURRENCE,
    ALLOWED_PAYEES,
    AMOUNT_RANGE,
    BUDGET,
    AgentMandate,
    MandateChain,
    MandateVerifier,
    attach,
    attached,
    new_key,
    open_payment_mandate,
    public_jwk,
)

USER, AGENT, STRANGER = new_key("user"), new_key("agent"), new_key("stranger")


def mandate(tb: Testbed, payees, *, low=1_000, high=20_000, budget=50_000, user=USER) -> AgentMandate:
    opened = open_payment_mandate(
        user,
        agent_key=public_jwk(AGENT),
        constraints={
            AMOUNT_RANGE: {"min": low, "max": high},
            BUDGET: {"max": budget},
            AGENT_RECURRENCE: {"frequency": "ON_DEMAND", "max_occurrences": 100},
            ALLOWED_PAYEES: list(payees),
        },
        issued_at=tb.now - 10,
        expires_at=tb.now + 86_400,
    )
    return AgentMandate(opened, AGENT, random.Random(1))


def shop(tb: Testbed, price: int, verifier: MandateVerifier | None = None):
    """A server selling under mandates; servers that share ``verifier`` share each mandate's budget
    (a budget is only as wide as the verifier that counts it)."""
    return tb.server({"GET /data": price}, mandates=verifier or MandateVerifier([public_jwk(USER)]))


def moved(tb: Testbed, since: int) -> list:
    tb.mine()
    return tb.chain.transfers(since_block=since + 1)


def test_a_mandated_payment_settles_and_its_nonce_is_the_chain_hash(tb):
    server = shop(tb, 10_000)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, mandate=mandate(tb, [server.role.pay_to]))
    result = client.get(server, "/data")
    assert result.paid, result.body
    chain = attached(result.payment.extensions)
    nonce = result.payment.payload["authorization"]["nonce"]
    assert nonce == chain.nonce()
    assert tb.chain.authorization_state(payer.address, bytes.fromhex(nonce[2:]))
    assert tb.chain.balance_of(server.role.pay_to) == 10_000
    assert server.role.mandates.spent(client.role.mandate.mandate_id) == 10_000


def test_the_402_declares_that_payments_need_a_mandate_and_a_client_without_one_signs_nothing(tb):
    server = shop(tb, 10_000)
    client = tb.client(tb.account(usdc=10**6))
    result = client.get(server, "/data")
    assert result.challenge.extensions["ap2"]["info"]["required"] is True
    assert "AP2 payment mandate" in result.refused and result.payment is None


def test_a_payment_without_a_mandate_is_refused_by_the_server(tb):
    server = shop(tb, 10_000)
    payer = tb.account(usdc=10**6)
    challenge = tb.client(payer).get(server, "/data").challenge
    bare = Client(payer.key, networks=(tb.chain.network,))
    offer = bare.choose(challenge.model_copy(update={"extensions": None}))
    payment = bare.sign_payment(challenge, *offer, tb.now)
    before = tb.chain.block_number
    response = tb.perform(
        server, Send(HttpRequest("GET", "/data", (("PAYMENT-SIGNATURE", encode_header(payment)),)))
    )
    assert response.status == 402
    assert (
        "mandate refused: missing"
        in decode_header(response.header("PAYMENT-REQUIRED"), PaymentRequired).error
    )
    assert moved(tb, before) == []


@pytest.mark.parametrize(
    ("price", "payee_allowed", "code"),
    [
        (30_000, True, "amount_out_of_range"),  # above the range's max
        (500, True, "amount_out_of_range"),  # below its min
        (10_000, False, "payee_not_allowed"),
    ],
)
def test_a_payment_outside_its_mandate_is_refused_and_never_settles(tb, price, payee_allowed, code):
    server = shop(tb, price)
    payer = tb.account(usdc=10**6)
    payees = [server.role.pay_to] if payee_allowed else [tb.account().address]
    client = tb.client(payer, mandate=mandate(tb, payees))
    before = tb.chain.block_number
    result = client.get(server, "/data")
    assert result.status == 402 and not result.paid
    assert result.json() == {} and f"mandate refused: {code}" in decode_error(result)
    nonce = result.payment.payload["authorization"]["nonce"]
    assert not tb.chain.authorization_state(payer.address, bytes.fromhex(nonce[2:]))
    assert moved(tb, before) == []
    assert tb.chain.balance_of(payer.address) == 10**6


def decode_error(result) -> str:
    return decode_header(result.response.header("PAYMENT-REQUIRED"), PaymentRequired).error


def test_the_budget_holds_across_payments_and_only_settled_ones_count(tb):
    server = shop(tb, 20_000)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, mandate=mandate(tb, [server.role.pay_to], budget=50_000))
    results = [client.get(server, "/data") for _ in range(4)]
    assert [r.paid for r in results] == [True, True, False, False]
    assert "budget_exceeded" in decode_error(results[2])
    tb.mine()
    assert tb.chain.balance_of(server.role.pay_to) == 40_000


def test_a_mandate_from_an_untrusted_user_is_refused(tb):
    server = shop(tb, 10_000)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, mandate=mandate(tb, [server.role.pay_to], user=STRANGER))
    before = tb.chain.block_number
    result = client.get(server, "/data")
    assert not result.paid and "mandate refused: untrusted_issuer" in decode_error(result)
    assert moved(tb, before) == []


class Rebinding(Client):
    """Swaps in the chain of another payment after signing: a broken link between mandate and nonce."""

    other: MandateChain | None = None

    def sign_payment(self, required, req, offer, now):
        payment = super().sign_payment(required, req, offer, now)
        if self.other is None:
            self.other = attached(payment.extensions)
            return payment
        return payment.model_copy(update={"extensions": attach(payment.extensions, self.other)})


def test_a_nonce_not_bound_to_the_mandate_chain_is_refused(tb):
    server = shop(tb, 10_000)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer)
    role = Rebinding(
        payer.key, networks=(tb.chain.network,), mandate=mandate(tb, [server.role.pay_to]), seed=3
    )
    client.role = role
    role.sign_payment(*_first_offer(tb, server, role), tb.now)  # remember a chain bound to another nonce
    before = tb.chain.block_number
    result = client.get(server, "/data")
    assert not result.paid
    assert isinstance(result.payment, PaymentPayload)
    assert "mandate refused:" in decode_error(result) and "nonce" in decode_error(result)
    assert moved(tb, before) == []


class ElsewhereClaiming(Client):
    """Closes its mandate for another resource and claims that resource in the payment too."""

    def sign_payment(self, required, req, offer, now):
        elsewhere = required.model_copy(
            update={"resource": required.resource.model_copy(update={"url": "http://elsewhere.test/cheap"})}
        )
        return super().sign_payment(elsewhere, req, offer, now)


def test_the_server_binds_the_mandate_to_its_own_resource_not_the_one_the_payment_claims(tb):
    server = shop(tb, 10_000)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer)
    client.role = ElsewhereClaiming(
        payer.key, networks=(tb.chain.network,), mandate=mandate(tb, [server.role.pay_to]), seed=4
    )
    before = tb.chain.block_number
    result = client.get(server, "/data")
    assert result.payment.resource.url == "http://elsewhere.test/cheap"
    assert not result.paid and "mandate refused: resource_mismatch" in decode_error(result)
    assert moved(tb, before) == []


def _first_offer(tb, server, role):
    challenge = tb.client(tb.account()).get(server, "/data").challenge
    req, offer = role.choose(challenge)
    return challenge, req, offer


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(prices=st.lists(st.integers(500, 25_000), min_size=1, max_size=6))
def test_what_settles_on_chain_is_exactly_what_the_mandate_allows(prices):
    tb = Testbed(seed=5)
    low, high, budget = 1_000, 20_000, 45_000
    payer = tb.account(usdc=10**6)
    verifier = MandateVerifier([public_jwk(USER)])  # one facilitator-like verifier for all the shops
    servers = [shop(tb, p, verifier) for p in prices]
    allowed = [s.role.pay_to for s in servers]
    client = tb.client(payer, mandate=mandate(tb, allowed, low=low, high=high, budget=budget))
    expected, spent = [], 0
    for server, price in zip(servers, prices, strict=True):
        ok = low <= price <= high and spent + price <= budget
        spent += price if ok else 0
        expected.append(ok)
        assert client.get(server, "/data").paid is ok
    tb.mine()
    assert sum(t.value for t in tb.chain.transfers() if t.from_ == payer.address) == spent
    assert tb.chain.balance_of(payer.address) == 10**6 - spent
