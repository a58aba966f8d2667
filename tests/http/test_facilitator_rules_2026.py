"""The facilitator app under the 2026 rules: a settle whose receipt wait times out answers
settlement_pending with the hash it sent, a resend is reconciled against that transaction, and
reserved ``extra`` keys of any JSON value never get a 5xx. In process, over an embedded chain."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from x402sim.actors import Client, Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import facilitator_app
from x402sim.protocol import ReasonClass, parse_payment_required, reason_class

PRICE = 1_000


class App:
    """A facilitator app on a chain that mines only when told, with one signed payment to settle."""

    def __init__(self, settle_timeout: float = 0.2) -> None:
        self.chain = LocalChain(seed=17, start_time=int(time.time()))
        payer_key, fac_key, shop_key = (self.chain.new_key() for _ in range(3))
        self.payer, self.shop = address_of_key(payer_key), address_of_key(shop_key)
        self.chain.fund_many([(self.payer, 10**6, 0), (address_of_key(fac_key), 0, ETHER)])
        self.facilitator = Facilitator(self.chain, fac_key)
        self.app = facilitator_app(self.facilitator, automine=False, settle_timeout=settle_timeout)
        server = ResourceServer.with_prices({"GET /r": PRICE}, chain=self.chain, pay_to=self.shop)
        challenge = server.challenge(server.routes["GET /r"], 2, "payment required")
        required = parse_payment_required(challenge.headers, challenge.body)
        requirements = required.accepts[0]
        payment = Client(payer_key, networks=(self.chain.network,)).create_payment(required, self.chain.now)
        self.body = {
            "x402Version": 2,
            "paymentPayload": payment.to_wire(),
            "paymentRequirements": requirements.to_wire(),
        }
        self.nonce = bytes.fromhex(payment.payload["authorization"]["nonce"][2:])

    def post(self, path: str, body) -> httpx.Response:
        async def call():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://f") as http:
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
                return await http.post(path, content=content, headers={"content-type": "application/json"})

        return asyncio.run(call())

    def head(self):
        """What any write would change: the block, the state root, the transaction pool."""
        return self.chain.block_number, self.chain.latest_state().state_root, self.chain.pending_count

    def transfers(self):
        return [(t.from_, t.to, t.value) for t in self.chain.transfers()]


def test_a_settle_that_times_out_answers_pending_with_its_hash_and_a_resend_reconciles():
    world = App()
    sent = world.chain.pending_nonce(world.facilitator.address)
    first = world.post("/settle", world.body).json()
    assert first["success"] is False and reason_class(first["errorReason"]) is ReasonClass.settlement_pending
    assert len(first["transaction"]) == 66 and world.chain.pending_count == 1
    still = world.post("/settle", world.body).json()  # resent while unmined: the same transaction
    assert reason_class(still["errorReason"]) is ReasonClass.settlement_pending
    assert still["transaction"] == first["transaction"] and world.chain.pending_count == 1
    world.chain.mine()
    landed = world.post("/settle", world.body).json()
    assert landed["success"] is True and landed["transaction"] == first["transaction"]
    assert world.chain.pending_nonce(world.facilitator.address) == sent + 1  # one transaction sent
    assert world.transfers()[-1] == (world.payer, world.shop, PRICE)
    assert [t for t in world.transfers() if t[1] == world.shop] == [(world.payer, world.shop, PRICE)]
    assert world.chain.authorization_state(world.payer, world.nonce) is True


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
GOOD_FLOWS, GOOD_METHODS = (None, "authorization", "upfront", "escrow"), (None, "eip3009")


@pytest.fixture(scope="module")
def world() -> App:
    return App()


@settings(max_examples=50)
@given(
    flow=JSON | st.sampled_from(GOOD_FLOWS),
    method=JSON | st.sampled_from(GOOD_METHODS),
    path=st.sampled_from(["/verify", "/settle"]),
)
def test_reserved_keys_of_any_value_never_get_a_5xx_and_a_refusal_moves_nothing(world, flow, method, path):
    acceptable = flow in GOOD_FLOWS and method in GOOD_METHODS
    assume(not (path == "/settle" and acceptable))  # a good payment settles; refusals are looked at here
    body = json.loads(json.dumps(world.body))
    extra = body["paymentRequirements"]["extra"]
    body["paymentRequirements"]["extra"] = {**extra, "paymentFlow": flow, "assetTransferMethod": method}
    head = world.head()
    answer = world.post(path, body)
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    assert verdict.get("isValid", verdict.get("success")) is acceptable
    if not acceptable:
        reason = verdict.get("invalidReason") or verdict.get("errorReason")
        # "permit2" is spoken: the Permit2 mechanism then finds no Permit2 payload in an EIP-3009 one
        refusals = (ReasonClass.scheme, ReasonClass.malformed_requirements, ReasonClass.malformed_payload)
        assert reason_class(reason) in refusals
    assert (
        world.chain.block_number,
        world.chain.latest_state().state_root,
        world.chain.pending_count,
    ) == head
    assert world.chain.authorization_state(world.payer, world.nonce) is False
