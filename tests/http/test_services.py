"""The facilitator and resource-server services on real loopback sockets, judged on chain."""

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.http.conftest import PRICE, closed_port_url
from x402sim.actors import HttpResponse
from x402sim.http import AsyncPayingClient, PayingClient, Services
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PaymentRequired,
    ReasonClass,
    SettleResponse,
    decode_header,
    reason_class,
)


def _nonce(result) -> bytes:
    return bytes.fromhex(result.payment.payload["authorization"]["nonce"][2:])


def test_paid_request_over_http_settles_on_chain(world):
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.get(world.server_url + "/weather")
    assert result.status == 200 and result.json()["paid"] is True
    header = decode_header(result.response.header(PAYMENT_RESPONSE), SettleResponse)
    assert header.success and header.payer == world.payer
    assert world.chain.balance_of(world.payee) == PRICE
    assert world.chain.balance_of(world.payer) == 1_000_000 - PRICE
    assert world.chain.authorization_state(world.payer, _nonce(result))
    (transfer,) = [t for t in world.chain.transfers() if t.to == world.payee]
    assert "0x" + transfer.tx_hash.hex() == header.transaction


def test_async_paying_client(world):
    async def go():
        async with AsyncPayingClient(world.payer_key, networks=(world.chain.network,)) as client:
            return [await client.get(world.server_url + "/weather") for _ in range(2)]

    results = asyncio.run(go())
    assert [r.status for r in results] == [200, 200]
    assert world.chain.balance_of(world.payee) == 2 * PRICE


def test_unpaid_request_gets_the_v2_challenge(world):
    answer = httpx.get(world.server_url + "/weather")
    assert answer.status_code == 402
    required = decode_header(answer.headers[PAYMENT_REQUIRED], PaymentRequired)
    assert required.accepts[0].amount == PRICE and required.accepts[0].pay_to == world.payee
    assert required.resource.url == world.server_url + "/weather"
    assert httpx.get(world.server_url + "/nothing-here").status_code == 404


def test_facilitator_endpoints(world):
    supported = httpx.get(world.facilitator_url + "/supported").json()
    network, address = world.chain.network, world.facilitator.address
    assert supported["kinds"] == [
        {"x402Version": 2, "scheme": "exact", "network": network},
        {"x402Version": 2, "scheme": "upto", "network": network, "extra": {"facilitatorAddress": address}},
        {
            "x402Version": 2,
            "scheme": "batch-settlement",
            "network": network,
            "extra": {"receiverAuthorizer": address},
        },
    ]
    assert supported["extensions"] == []  # gas sponsoring is offered only when asked for
    assert supported["signers"]["eip155:*"] == [address]
    assert httpx.get(world.facilitator_url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", ""),
        (json.dumps({"x402Version": 2, "paymentPayload": {}}).encode(), "paymentPayload.x402Version"),
        (
            json.dumps({"x402Version": 7, "paymentPayload": {}, "paymentRequirements": {}}).encode(),
            "x402Version",
        ),
        (b"{" + b" " * 70_000 + b"}", "exceeds"),
    ],
)
def test_facilitator_rejects_malformed_bodies_with_400(world, body, needle):
    for path in ("/verify", "/settle"):
        answer = httpx.post(
            world.facilitator_url + path, content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400
        assert needle in answer.json()["error"]


def test_facilitator_answers_unknown_scheme_with_its_reason(world):
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        client.role.policy.max_price = 0  # sign nothing: we only want a well-formed challenge
        challenge = client.get(world.server_url + "/weather").challenge
    payment = PayingClient(world.payer_key, networks=(world.chain.network,)).role.create_payment(
        challenge, world.chain.now
    )
    body = {
        "x402Version": 2,
        "paymentPayload": payment.to_wire() | {"accepted": payment.accepted.to_wire() | {"scheme": "upto"}},
        "paymentRequirements": challenge.accepts[0].to_wire(),
    }
    answer = httpx.post(world.facilitator_url + "/verify", json=body).json()
    assert answer["isValid"] is False and reason_class(answer["invalidReason"]) is ReasonClass.scheme
    solana = dict(
        body,
        paymentPayload=payment.to_wire(),
        paymentRequirements=body["paymentRequirements"] | {"network": "solana:devnet"},
    )
    answer = httpx.post(world.facilitator_url + "/settle", json=solana).json()
    assert answer["success"] is False and reason_class(answer["errorReason"]) is ReasonClass.network


def test_unreachable_facilitator_gives_502_and_nothing_moves(make_world):
    dead_url = closed_port_url()
    world = make_world(facilitator_url=dead_url)
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.get(world.server_url + "/weather")
    assert result.status == 502
    assert "facilitator unreachable" in result.json()["error"] and dead_url in result.json()["error"]
    assert world.chain.balance_of(world.payer) == 1_000_000


def test_facilitator_timeout_gives_502_naming_the_timeout(make_world):
    released = asyncio.Event()

    async def never_answers(request):
        await released.wait()  # held until the test ends: a facilitator that hangs
        return JSONResponse({})

    hanging = Services()
    url = hanging.add("hanging", Starlette(routes=[Route("/verify", never_answers, methods=["POST"])]))
    hanging.start()
    try:
        world = make_world(facilitator_url=url, facilitator_timeout=0.3)
        with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
            result = client.get(world.server_url + "/weather")
        assert result.status == 502 and "timed out" in result.json()["error"]
        assert world.chain.balance_of(world.payer) == 1_000_000
    finally:
        hanging.loop.call_soon_threadsafe(released.set)
        hanging.stop()


def _origin(world_ref, hits):
    async def anything(request):
        hits.append((request.method, request.url.path, dict(request.headers), await request.body()))
        if request.url.path == "/slow":
            world_ref[0].chain.advance(300)  # the origin outlives the payment's validity window
        return JSONResponse({"origin": True, "path": request.url.path, "query": request.url.query})

    return Starlette(routes=[Route("/{p:path}", anything, methods=["GET", "POST"])])


@pytest.fixture
def proxied(make_world):
    hits, ref = [], []
    origin = Services()
    origin_url = origin.add("origin", _origin(ref, hits))
    origin.start()
    world = make_world(origin=origin_url, routes={"GET /article": PRICE, "POST /slow": PRICE})
    ref.append(world)
    yield world, hits, origin_url
    origin.stop()


def test_paywall_proxy_forwards_only_after_payment(proxied):
    world, hits, _ = proxied
    unpaid = httpx.get(world.server_url + "/article?id=7")
    assert unpaid.status_code == 402 and hits == []
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.get(world.server_url + "/article?id=7")
    assert result.status == 200 and result.json() == {"origin": True, "path": "/article", "query": "id=7"}
    assert result.settlement.success and world.chain.balance_of(world.payee) == PRICE
    (method, path, headers, _) = hits[0]
    assert (method, path) == ("GET", "/article")
    assert "payment-signature" not in headers  # the origin never sees the client's signature
    free = httpx.get(world.server_url + "/about")
    assert free.status_code == 200 and free.json()["path"] == "/about"


def test_oversized_request_bodies_get_413_and_reach_no_origin(proxied):
    world, hits, _ = proxied
    answer = httpx.post(world.server_url + "/slow", content=b"x" * (1024 * 1024 + 1))
    assert answer.status_code == 413 and "exceeds" in answer.json()["error"]
    assert hits == [] and not world.facilitator.settlements


def test_paywall_proxy_withholds_the_origin_answer_when_settlement_fails(proxied):
    world, hits, _ = proxied
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.request("POST", world.server_url + "/slow", content=b"payload")
    assert len(hits) == 1 and hits[0][3] == b"payload"
    assert result.status == 402 and b"origin" not in result.body
    assert reason_class(result.settlement.error_reason) is ReasonClass.expired
    assert world.chain.balance_of(world.payee) == 0


def test_paywall_proxy_with_dead_origin_gives_502_and_settles_nothing(make_world):
    world = make_world(origin=closed_port_url(), routes={"GET /article": PRICE})
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.get(world.server_url + "/article")
    assert result.status == 502 and "origin" in result.json()["error"]
    assert world.chain.balance_of(world.payer) == 1_000_000 and not world.facilitator.settlements


def test_python_handlers_and_upfront_mode(make_world):
    world = make_world(
        handlers={"GET /weather": lambda r: HttpResponse.of_json(200, {"sunny": True})}, upfront=True
    )
    with PayingClient(world.payer_key, networks=(world.chain.network,)) as client:
        result = client.get(world.server_url + "/weather")
    assert result.status == 200 and result.json() == {"sunny": True} and result.settlement.success


def test_block_time_mode_settles_when_the_next_block_comes():
    from x402sim.http.serve import ChainSetup, serve_all

    running = serve_all(
        ChainSetup(accounts=1, block_time=0.2), ports={"chain": 0, "facilitator": 0, "server": 0}
    )
    try:
        with PayingClient(
            running.info["accounts"][0]["private_key"], networks=(running.info["network"],)
        ) as client:
            result = client.get(running.info["server_url"] + "/weather")
        assert result.status == 200 and result.settlement.success
        rpc = running.info["rpc_url"]
        receipt = httpx.post(
            rpc,
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_getTransactionReceipt",
                "params": [result.settlement.transaction],
            },
        ).json()["result"]
        assert int(receipt["status"], 16) == 1
    finally:
        running.stop()


def test_a_served_chain_keeps_to_the_wall_clock_under_many_rapid_payments():
    """One block per settlement used to push block time a second ahead per block, until the SDK-style
    authorizations (signed with the wall clock, 60 s window) expired on chain after ~58 payments."""
    from x402sim.http.serve import ChainSetup, serve_all

    running = serve_all(ChainSetup(accounts=1), ports={"chain": 0, "facilitator": 0, "server": 0})
    try:
        with PayingClient(
            running.info["accounts"][0]["private_key"], networks=(running.info["network"],)
        ) as client:
            statuses = [client.get(running.info["server_url"] + "/weather").status for _ in range(80)]
        latest = httpx.post(
            running.info["rpc_url"],
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["latest", False]},
        ).json()["result"]
        assert statuses == [200] * 80
        assert int(latest["timestamp"], 16) <= time.time() + 1
    finally:
        running.stop()
