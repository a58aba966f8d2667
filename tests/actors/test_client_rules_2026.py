"""The reference client under the 2026 rules: validAfter 0, reserved paymentFlow and
assetTransferMethod in offers; judged by what the chain says after the facilitator settles."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim import Testbed
from x402sim.actors import BaseDriver, Facilitator, HttpRequest, HttpResponse, PaymentRefused, Send, run
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import (
    AsyncPayingClient,
    FacilitatorClient,
    PayingClient,
    facilitator_app,
    resource_server_app,
)
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    PaymentPayload,
    decode_header,
    encode_header,
    parse_payment_required,
)

PRICE = 10_000


class OfferingShop(BaseDriver):
    """A shop that answers 402 with the given offers and settles a paid retry with the testbed's
    facilitator against the offer the payment names; it counts the payments it was sent."""

    world = "test shop"

    def __init__(self, tb, required) -> None:
        self.tb, self.required, self.payments = tb, required, 0

    def send(self, effect: Send) -> HttpResponse:
        header = effect.request.header(PAYMENT_SIGNATURE)
        if header is None:
            return HttpResponse(402, ((PAYMENT_REQUIRED, encode_header(self.required)),), b"{}")
        self.payments += 1
        payment = decode_header(header, PaymentPayload)
        answer = self.tb.facilitator.settle(payment, payment.accepted)
        return HttpResponse(200 if answer.success else 402, ((PAYMENT_RESPONSE, encode_header(answer)),))


def _required(tb, offers):
    """A v2 402 of the testbed's token with one offer per (payTo, extra additions)."""
    shop = tb.server({"GET /r": PRICE})
    answer = tb.perform(shop, Send(HttpRequest("GET", "/r")))
    required = parse_payment_required(answer.headers, answer.body)
    base = required.accepts[0]
    accepts = [
        base.model_copy(update={"pay_to": pay_to, "extra": {**base.extra, **added}})
        for pay_to, added in offers
    ]
    return required.model_copy(update={"accepts": accepts})


def _fetch(tb, payer, required):
    shop = OfferingShop(tb, required)
    client = tb.client(payer).role
    result = run(client.fetch(HttpRequest("GET", "/r"), tb.now), shop)
    assert len(client.payments) == shop.payments  # every payment signed was sent, and only those
    return result, shop


def _received(tb, address) -> int:
    return sum(t.value for t in tb.chain.transfers() if t.to == address)


def test_the_client_signs_valid_after_zero_and_a_payer_clock_ahead_still_settles(tb):
    alice, shop_wallet = tb.account(usdc=1_000_000), tb.account()
    required = _required(tb, [(shop_wallet.address, {})])
    client = tb.client(alice).role
    payment = client.create_payment(required, tb.now + 3_600)  # the payer's clock runs an hour ahead
    auth = payment.payload["authorization"]
    assert int(auth["validAfter"]) == 0
    assert int(auth["validBefore"]) == tb.now + 3_600 + required.accepts[0].max_timeout_seconds
    answer = tb.facilitator.settle(payment, payment.accepted)
    assert answer.success
    assert tb.chain.authorization_state(alice.address, bytes.fromhex(auth["nonce"][2:])) is True
    assert tb.chain.balance_of(shop_wallet.address) == PRICE


def test_authorization_is_preferred_over_a_cheaper_upfront_offer(tb):
    alice, upfront, authorization = tb.account(usdc=1_000_000), tb.account(), tb.account()
    required = _required(
        tb,
        [
            (upfront.address, {"paymentFlow": "upfront"}),
            (authorization.address, {"paymentFlow": "authorization"}),
        ],
    )
    cheap = required.accepts[0].model_copy(update={"amount": PRICE // 2})
    required = required.model_copy(update={"accepts": [cheap, required.accepts[1]]})
    result, shop = _fetch(tb, alice, required)
    assert result.paid and shop.payments == 1
    assert _received(tb, authorization.address) == PRICE
    assert _received(tb, upfront.address) == 0


@pytest.mark.parametrize("absent", [{}, {"paymentFlow": None, "assetTransferMethod": None}])
def test_an_absent_or_null_flow_counts_as_authorization(tb, absent):
    alice, escrow, plain = tb.account(usdc=1_000_000), tb.account(), tb.account()
    required = _required(tb, [(escrow.address, {"paymentFlow": "escrow"}), (plain.address, absent)])
    result, _ = _fetch(tb, alice, required)
    assert result.paid
    assert (_received(tb, plain.address), _received(tb, escrow.address)) == (PRICE, 0)


@pytest.mark.parametrize("flow", ["upfront", "escrow"])
def test_a_recognised_non_authorization_flow_is_paid_when_it_is_all_there_is(tb, flow):
    alice, shop_wallet = tb.account(usdc=1_000_000), tb.account()
    result, _ = _fetch(tb, alice, _required(tb, [(shop_wallet.address, {"paymentFlow": flow})]))
    assert result.paid and _received(tb, shop_wallet.address) == PRICE


_UNRECOGNISED_FLOWS = st.one_of(
    st.text(max_size=12).filter(lambda s: s not in ("authorization", "upfront", "escrow")),
    st.integers(),
    st.booleans(),
    st.lists(st.just("authorization"), min_size=1, max_size=2),
    st.dictionaries(st.just("flow"), st.just("upfront"), min_size=1),
)


@pytest.fixture(scope="module")
def flow_world():
    """A testbed, a funded payer and a one-offer 402 whose flow each example replaces (nothing is
    paid, so the examples share it)."""
    tb = Testbed(seed=5)
    alice, shop_wallet = tb.account(usdc=1_000_000), tb.account()
    return tb, alice, _required(tb, [(shop_wallet.address, {})])


@settings(max_examples=60)
@given(flow=_UNRECOGNISED_FLOWS)
def test_an_unrecognised_flow_is_never_paid_and_the_refusal_names_it(flow_world, flow):
    tb, alice, required = flow_world
    offer = required.accepts[0]
    odd = required.model_copy(
        update={"accepts": [offer.model_copy(update={"extra": {**offer.extra, "paymentFlow": flow}})]}
    )
    before = tb.chain.block_number
    result, shop = _fetch(tb, alice, odd)
    assert result.status == 402 and not result.paid and result.payment is None
    assert f"paymentFlow {flow!r}" in (result.refused or "")
    assert shop.payments == 0
    assert tb.chain.balance_of(alice.address) == 1_000_000
    assert tb.chain.block_number == before and tb.chain.pending_count == 0


def test_an_unrecognised_flow_beside_a_recognised_one_is_skipped(tb):
    alice, odd, good = tb.account(usdc=1_000_000), tb.account(), tb.account()
    required = _required(
        tb, [(odd.address, {"paymentFlow": "stream"}), (good.address, {"paymentFlow": "upfront"})]
    )
    result, _ = _fetch(tb, alice, required)
    assert result.paid
    assert (_received(tb, good.address), _received(tb, odd.address)) == (PRICE, 0)


@pytest.mark.parametrize("method", ["Permit2", "erc7710", "EIP3009", 3009, ["eip3009"]])
def test_an_asset_transfer_method_no_mechanism_speaks_is_never_paid(tb, method):
    alice, shop_wallet = tb.account(usdc=1_000_000), tb.account()
    before = tb.chain.block_number
    required = _required(tb, [(shop_wallet.address, {"assetTransferMethod": method})])
    result, shop = _fetch(tb, alice, required)
    assert not result.paid and shop.payments == 0
    assert f"assetTransferMethod {method!r}" in (result.refused or "")
    assert "eip3009" in (result.refused or "")  # what the client does speak
    with pytest.raises(PaymentRefused, match="assetTransferMethod"):
        tb.client(alice).role.create_payment(required, tb.now)
    assert tb.chain.transfers(since_block=before + 1) == []
    assert tb.chain.balance_of(alice.address) == 1_000_000


def test_an_explicit_eip3009_offer_is_paid_and_preferred_to_a_permit2_one(tb):
    alice, permit2, eip3009 = tb.account(usdc=1_000_000), tb.account(), tb.account()
    required = _required(
        tb,
        [
            (permit2.address, {"assetTransferMethod": "permit2"}),
            (eip3009.address, {"assetTransferMethod": "eip3009"}),
        ],
    )
    result, _ = _fetch(tb, alice, required)
    assert result.paid
    assert (_received(tb, eip3009.address), _received(tb, permit2.address)) == (PRICE, 0)


def test_the_methods_a_client_speaks_come_from_its_mechanisms(tb):
    client = tb.client(tb.account()).role
    assert client.mechanisms.transfer_methods("exact", "eip155:8453") == ("eip3009", "permit2")
    assert client.mechanisms.transfer_methods("upto", "eip155:8453") == ("permit2",)
    assert client.mechanisms.transfer_methods("metered", "eip155:8453") == ()


# -- lost answers are never paid twice (the HTTP paying clients) ---------------------------------


class LosesPaidAnswers(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """In front of a real paid server: a paid request is served in full (so it settles on chain),
    then its answer is lost: the connection closes (``close``), or nothing comes back before the
    client's read timeout (``hang``, waiting on an event nobody sets). Async, or sync for
    ``PayingClient`` (each request then runs the server on an event loop of its own)."""

    def __init__(self, app, mode: str) -> None:
        self.inner, self.mode, self.paid_requests = httpx.ASGITransport(app=app), mode, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if PAYMENT_SIGNATURE.lower() not in request.headers:
            return response
        self.paid_requests += 1  # and the server has settled and answered
        if self.mode == "close":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=request.extensions["timeout"]["read"])
        except TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None
        raise AssertionError("an event nobody sets was set")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = asyncio.run(self.handle_async_request(request))
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _lossy_world(mode: str):
    chain = LocalChain(seed=13, start_time=int(time.time()))
    payer_key, facilitator_key, shop_key = (chain.new_key() for _ in range(3))
    chain.fund_many([(address_of_key(payer_key), 10**6, 0), (address_of_key(facilitator_key), 0, ETHER)])
    app = facilitator_app(Facilitator(chain, facilitator_key))
    facilitator = FacilitatorClient("http://f", transport=httpx.ASGITransport(app=app))
    server = ResourceServer.with_prices({"GET /r": PRICE}, chain=chain, pay_to=address_of_key(shop_key))
    return chain, payer_key, server.pay_to, LosesPaidAnswers(resource_server_app(server, facilitator), mode)


LOSSES = [("close", httpx.RemoteProtocolError), ("hang", httpx.ReadTimeout)]


def _paid_once_and_unknown(chain, payer_key, shop, lossy, client, start) -> None:
    payer = address_of_key(payer_key)
    (record,) = client.payments
    assert (record.outcome, record.status, record.settlement) == ("unknown", None, None)
    assert lossy.paid_requests == 1  # no second PAYMENT-SIGNATURE
    transfers = chain.transfers(since_block=start + 1)
    assert [(t.from_, t.to, t.value) for t in transfers] == [(payer, shop, PRICE)]
    assert chain.authorization_state(payer, bytes.fromhex(record.nonce[2:])) is True
    assert chain.balance_of(payer) == 10**6 - PRICE


@pytest.mark.parametrize(("mode", "error"), LOSSES)
def test_an_async_paid_request_whose_answer_is_lost_is_paid_once(mode, error):
    chain, payer_key, shop, lossy = _lossy_world(mode)
    start = chain.block_number

    async def scene():
        async with AsyncPayingClient(
            payer_key, networks=(chain.network,), timeout=0.5, transport=lossy
        ) as client:
            with pytest.raises(error):
                await client.get("http://server/r")
        return client

    _paid_once_and_unknown(chain, payer_key, shop, lossy, asyncio.run(scene()), start)


@pytest.mark.parametrize(("mode", "error"), LOSSES)
def test_a_sync_paid_request_whose_answer_is_lost_is_paid_once(mode, error):
    chain, payer_key, shop, lossy = _lossy_world(mode)
    start = chain.block_number
    client = PayingClient(payer_key, networks=(chain.network,), timeout=0.5, transport=lossy)
    with client, pytest.raises(error):
        client.get("http://server/r")
    _paid_once_and_unknown(chain, payer_key, shop, lossy, client, start)
