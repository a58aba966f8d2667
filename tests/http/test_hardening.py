"""Regression tests for the defects an outside fuzz and load test found, one test (or more) each.

Numbers refer to the hardening issue's list. Services are reached in process through httpx's ASGI
transport unless the defect lives in the served process or the socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

import httpx
import pytest
import rlp
from eth_account import Account
from eth_utils import to_checksum_address

from tests.fuzz.world import PRICE, AsgiWorld
from tests.http.conftest import run_cli, start_cli, stop_cli, token_balance
from x402sim.actors import Facilitator, HttpResponse
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
from x402sim.http.chain_rpc import MAX_LOG_RANGE
from x402sim.http.guard import Admission
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_SIGNATURE,
    PaymentRequired,
    ReasonClass,
    decode_header,
    reason_class,
)


@pytest.fixture
def world():
    w = AsgiWorld(seed=31)
    yield w
    w.close()


def _payment_header(payment: dict) -> str:
    return base64.b64encode(json.dumps(payment).encode()).decode()


def _facilitator_body(
    world: AsgiWorld, payment: dict | None = None, requirements: dict | None = None
) -> dict:
    challenge = world.target.server_challenge
    return {
        "x402Version": 2,
        "paymentPayload": payment or world.target.payment(challenge),
        "paymentRequirements": requirements or challenge.accepts[0].to_wire(),
    }


def _post(world: AsgiWorld, service: str, path: str, content: bytes | str) -> httpx.Response:
    return world.run(world.clients[service].post(path, content=content))


# 1. deep nesting -------------------------------------------------------------------------------------


def test_the_recursion_limit_is_high_so_only_our_depth_guard_protects():
    import x402sim.evm  # noqa: F401 - py-evm's dependencies raise the limit on import

    assert sys.getrecursionlimit() >= 100_000


@pytest.mark.parametrize("depth", [101, 30_000])
def test_deep_nesting_is_refused_by_every_parser(world, depth):
    nested = "[" * depth + "]" * depth
    answer = _post(world, "facilitator", "/verify", nested)
    assert answer.status_code == 400 and "nested deeper than 100" in answer.json()["error"]
    answer = _post(world, "chain", "/", nested)
    assert answer.json()["error"]["code"] == -32700 and "nested deeper" in answer.json()["error"]["message"]
    within_8k = min(depth, 2000)  # a header past 8 KiB is refused for its size first
    header = base64.b64encode(("[" * within_8k + "]" * within_8k).encode()).decode()
    answer = world.run(world.clients["server"].get("/weather", headers={PAYMENT_SIGNATURE: header}))
    assert answer.status_code == 400 and "nested deeper than 100" in answer.json()["error"]


def test_a_served_process_survives_deep_nesting_on_every_port():
    proc, info = start_cli("serve", "--port", "0", "--accounts", "1")
    try:
        nested = "[" * 100_000 + "]" * 100_000
        with httpx.Client(timeout=30) as http:
            assert http.post(info["rpc_url"], content=nested).json()["error"]["code"] == -32700
            assert http.post(info["facilitator_url"] + "/verify", content=nested).status_code == 400
            assert http.post(info["facilitator_url"] + "/settle", content=nested).status_code == 400
            assert http.get(info["server_url"] + "/weather").status_code == 402
        assert proc.poll() is None
    finally:
        assert stop_cli(proc) == 0


# 2. numbers past Python's int-string limit ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/verify", "/settle"])
def test_numbers_with_thousands_of_digits_get_400(world, path):
    body = json.dumps(_facilitator_body(world)).replace('"x402Version": 2', '"x402Version": ' + "9" * 4301, 1)
    answer = _post(world, "facilitator", path, body)
    assert answer.status_code == 400 and "more than 4300 digits" in answer.json()["error"]


# 3. lone surrogates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["resource.description", "accepted.extra.name", "accepted.extra.extraKey"])
def test_lone_surrogates_in_a_payment_header_get_a_400_naming_the_field(world, field):
    payment = world.target.payment(world.target.server_challenge)
    text = json.dumps(payment)
    first, _, rest = field.partition(".")
    obj = json.loads(text)
    here = obj[first]
    *middle, last = rest.split(".")
    for step in middle:
        here = here[step]
    here[last] = "\ud800"
    answer = world.run(
        world.clients["server"].get("/weather", headers={PAYMENT_SIGNATURE: _payment_header(obj)})
    )
    assert answer.status_code == 400 and f"{field}: lone surrogate" in answer.json()["error"]
    assert world.chain.balance_of(world.payee) == 0


# 4. address spelling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spell", [str.lower, lambda a: "0x" + a[2:].upper()])
def test_an_asset_in_any_case_verifies_and_settles_on_chain(world, spell):
    body = _facilitator_body(world)
    body["paymentRequirements"]["asset"] = spell(body["paymentRequirements"]["asset"])
    assert _post(world, "facilitator", "/verify", json.dumps(body)).json()["isValid"] is True
    settled = _post(world, "facilitator", "/settle", json.dumps(body)).json()
    assert settled["success"] is True
    (transfer,) = world.chain.transfers()[-1:]
    assert "0x" + transfer.tx_hash.hex() == settled["transaction"] and transfer.to == world.payee


@pytest.mark.parametrize("bad", ["0xZZ", "0x1234", "0x" + "g" * 40])
def test_a_malformed_asset_is_a_malformed_input_answer(world, bad):
    body = _facilitator_body(world)
    body["paymentRequirements"]["asset"] = bad
    for path, key in (("/verify", "invalidReason"), ("/settle", "errorReason")):
        answer = _post(world, "facilitator", path, json.dumps(body))
        assert answer.status_code == 200
        assert reason_class(answer.json()[key]) is ReasonClass.malformed_requirements
    signed_for_it = _facilitator_body(world)
    signed_for_it["paymentPayload"]["accepted"]["asset"] = bad
    for path, key in (("/verify", "invalidReason"), ("/settle", "errorReason")):
        answer = _post(world, "facilitator", path, json.dumps(signed_for_it))
        assert reason_class(answer.json()[key]) is ReasonClass.malformed_payload
    assert world.chain.balance_of(world.payee) == 0


def test_a_routes_file_with_a_lower_case_asset_sells_for_the_token(tmp_path):
    from x402sim.http.routes_file import load_routes
    from x402sim.http.serve import resource_server

    chain = LocalChain(seed=3)
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'network = "{chain.network}"\nasset = "{chain.usdc.lower()}"\nasset_name = "USD Coin"\n'
        f'asset_version = "2"\npay_to = "{"0x" + "ab" * 20}"\n'
        '[[routes]]\nmethod = "GET"\npath = "/x"\nprice = 5\n'
    )
    role, client = resource_server(load_routes(routes), "http://127.0.0.1:1")
    asyncio.run(client.aclose())
    assert role.asset == chain.usdc and role.pay_to == to_checksum_address("0x" + "ab" * 20)
    assert role.requirements(role.routes["GET /x"]).asset == chain.usdc


def test_a_server_refuses_a_malformed_address_at_construction():
    with pytest.raises(ValueError, match="asset: not a 20-byte hex address"):
        ResourceServer.with_prices(
            {"GET /x": 1},
            network="eip155:1",
            asset="0x1234",
            asset_name="U",
            asset_version="2",
            pay_to="0x" + "11" * 20,
        )


# 5. unrecoverable transaction signatures ----------------------------------------------------------------


def test_a_raw_transaction_that_recovers_to_no_sender_is_invalid_input(world):
    tx = {
        "type": 2,
        "chainId": world.chain.chain_id,
        "nonce": 0,
        "gas": 21_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 0,
        "to": world.payee,
        "value": 1,
        "data": b"",
    }
    raw = bytes(Account.sign_transaction(tx, world.chain.new_key()).raw_transaction)
    fields = rlp.decode(raw[1:])
    fields[-2] = b""  # r = 0: no point on the curve
    bad = "0x02" + rlp.encode(fields).hex()
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [bad]}
    error = _post(world, "chain", "/", json.dumps(call)).json()["error"]
    assert error["code"] == -32000 and error["message"].startswith("invalid sender")


# 6. heavy requests ---------------------------------------------------------------------------------------


def test_a_long_batch_does_not_hold_the_loop(world):
    """A 1,000-call batch and an unpaid request go in together: the 402 is answered first."""
    for _ in range(50):
        world.chain.mine()
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_feeHistory", "params": ["0x400", "latest", [50]]}
        for i in range(1000)
    ]
    finished: list[str] = []

    async def timed(name: str, coroutine):
        answer = await coroutine
        finished.append(name)
        return answer

    async def race():
        return await asyncio.gather(
            timed("batch", world.clients["chain"].post("/", json=calls)),
            timed("402", world.clients["server"].get("/weather")),
        )

    batch, challenge = world.run(race())
    assert finished == ["402", "batch"]
    assert challenge.status_code == 402 and len(batch.json()) == 1000


def test_rpc_limits_are_answered_with_errors_naming_them(world):
    for _ in range(MAX_LOG_RANGE + 1):
        world.chain.mine()
    logs = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [{"fromBlock": "0x0", "toBlock": "latest"}],
    }
    error = _post(world, "chain", "/", json.dumps(logs)).json()["error"]
    assert error["code"] == -32005 and f"at most {MAX_LOG_RANGE}" in error["message"]
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(1001)]
    answer = _post(world, "chain", "/", json.dumps(batch)).json()
    assert answer["error"]["code"] == -32600 and "at most 1000" in answer["error"]["message"]


def test_a_response_past_the_size_limit_refuses_the_rest_of_the_batch(world, monkeypatch):
    from x402sim.http.chain_rpc import service

    batch = [{"jsonrpc": "2.0", "id": i, "method": "x402sim_info"} for i in range(5)]
    one = len(json.dumps(_post(world, "chain", "/", json.dumps(batch[0])).json(), separators=(",", ":")))
    monkeypatch.setattr(service, "MAX_RESPONSE_BYTES", one + 1)  # two answers pass it
    answers = _post(world, "chain", "/", json.dumps(batch)).json()
    assert "result" in answers[0] and "result" in answers[1]
    assert [a["error"]["code"] for a in answers[2:]] == [-32003] * 3


# 7. future nonces ----------------------------------------------------------------------------------------


def _transfer_tx(chain: LocalChain, key: bytes, nonce: int) -> bytes:
    tx = {
        "type": 2,
        "chainId": chain.chain_id,
        "nonce": nonce,
        "gas": 21_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 0,
        "to": chain.bank,
        "value": 1,
        "data": b"",
    }
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def test_future_nonces_wait_and_are_promoted_when_the_gap_fills():
    chain = LocalChain(seed=4)
    key = chain.new_key()
    sender = address_of_key(key)
    chain.fund(sender, eth=ETHER)
    later = [chain.send_raw_transaction(_transfer_tx(chain, key, n)) for n in (2, 1)]
    assert (chain.pending_count, chain.queued_count, chain.pending_nonce(sender)) == (0, 2, 0)
    assert chain.mine().tx_hashes == ()
    chain.send_raw_transaction(_transfer_tx(chain, key, 0))
    assert (chain.pending_count, chain.queued_count, chain.pending_nonce(sender)) == (3, 0, 3)
    chain.mine()
    assert chain.nonce(sender) == 3 and all(chain.receipt(h).success for h in later)


def test_a_queued_transaction_is_dropped_after_its_lifetime():
    chain = LocalChain(seed=4, future_lifetime=60)
    key = chain.new_key()
    chain.fund(address_of_key(key), eth=ETHER)
    stale = chain.send_raw_transaction(_transfer_tx(chain, key, 1))
    chain.advance(61)
    chain.mine()
    assert chain.queued_count == 0 and chain.pending_transaction(stale) is None
    chain.send_raw_transaction(_transfer_tx(chain, key, 0))
    chain.mine()
    assert chain.nonce(address_of_key(key)) == 1 and chain.receipt(stale) is None


def test_concurrent_settlements_sent_out_of_order_all_land_over_json_rpc(world):
    key = world.chain.new_key()
    world.chain.fund(address_of_key(key), eth=ETHER)

    def send(nonce: int) -> dict:
        call = {
            "jsonrpc": "2.0",
            "id": nonce,
            "method": "eth_sendRawTransaction",
            "params": ["0x" + _transfer_tx(world.chain, key, nonce).hex()],
        }
        return _post(world, "chain", "/", json.dumps(call)).json()

    hashes = [send(n)["result"] for n in (2, 1, 0)]
    count = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "eth_getTransactionCount",
        "params": [address_of_key(key), "latest"],
    }
    assert _post(world, "chain", "/", json.dumps(count)).json()["result"] == "0x3"
    for tx_hash in hashes:
        receipt = {"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [tx_hash]}
        assert _post(world, "chain", "/", json.dumps(receipt)).json()["result"]["status"] == "0x1"


# 8. the paying client signs only for its networks ---------------------------------------------------------


def test_a_paying_client_refuses_to_sign_for_another_network(world):
    hostile = ResourceServer.with_prices(
        {"GET /x": 1},
        network="eip155:1",
        asset=world.chain.usdc,
        asset_name="USD Coin",
        asset_version="2",
        pay_to=world.payee,
    )
    challenge = hostile.challenge(hostile.routes["GET /x"], 2, "payment required")

    def hostile_transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(402, headers=dict(challenge.headers), content=challenge.body)

    with PayingClient(world.target.payer_key, networks=(world.chain.network,)) as client:
        client._http = httpx.Client(transport=httpx.MockTransport(hostile_transport))
        result = client.get("http://127.0.0.1:1/x")
    assert result.status == 402 and "eip155:1 is not one of eip155:31337" in result.refused
    assert result.payment is None and not client.payments
    with pytest.raises(ValueError, match="name the CAIP-2 networks"):
        PayingClient(world.target.payer_key, networks=None)
    unnamed = run_cli("pay", "http://127.0.0.1:1/x", "--key", "0x" + "11" * 32)
    assert unnamed.returncode == 2 and "say which network to pay on" in unnamed.stderr


# 9. overload ---------------------------------------------------------------------------------------------


def test_an_overloaded_server_refuses_with_503_before_verify_and_charges_nothing():
    chain = LocalChain(seed=9, start_time=int(time.time()))
    keys = [chain.new_key() for _ in range(4)]
    payers = [address_of_key(k) for k in keys[:2]]
    chain.fund_many([(payers[0], 10**6, 0), (payers[1], 10**6, 0), (address_of_key(keys[2]), 0, ETHER)])
    facilitator = facilitator_app(Facilitator(chain, keys[2]))
    server = ResourceServer.with_prices({"GET /slow": PRICE}, chain=chain, pay_to=address_of_key(keys[3]))
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request):
        entered.set()
        await release.wait()
        return HttpResponse.of_json(200, {"done": True})

    app = resource_server_app(
        server,
        FacilitatorClient("http://f", transport=httpx.ASGITransport(app=facilitator)),
        handlers={"GET /slow": slow},
        admission=Admission(limit=1, queue=0, wait=0, retry_after=3),
    )

    async def scene():
        first = AsyncPayingClient(keys[0], networks=(chain.network,))
        second = AsyncPayingClient(keys[1], networks=(chain.network,))
        for client in (first, second):
            client._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        held = asyncio.create_task(first.get("http://server/slow"))
        await entered.wait()  # the first paid request holds the only slot, verified, in its handler
        # If admission let it in, it would wait on `release` too: bound the wait so that fails, not hangs.
        refused = await asyncio.wait_for(second.get("http://server/slow"), timeout=30)
        release.set()
        return await held, refused, second

    done, refused, second = asyncio.run(scene())
    assert done.status == 200 and refused.status == 503
    assert refused.response.header("Retry-After") == "3" and server.stats["overloaded"] == 1
    nonce = bytes.fromhex(second.payments[0].nonce[2:])
    assert not chain.authorization_state(payers[1], nonce) and chain.balance_of(payers[1]) == 10**6
    assert chain.balance_of(payers[0]) == 10**6 - PRICE


def test_admission_hands_slots_to_waiters_in_order_and_refuses_past_its_queue():
    async def scene():
        gate = Admission(limit=1, queue=1, wait=30)
        assert await gate.enter()  # the one slot
        waiter = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)  # let the waiter queue (one loop turn, not a timed wait)
        assert gate.waiting == 1
        assert not await gate.enter()  # the queue is full: refused at once
        gate.leave()  # the slot passes to the waiter
        assert await waiter and gate.working == 1 and gate.waiting == 0
        impatient = Admission(limit=1, queue=1, wait=0.01)
        assert await impatient.enter()
        assert not await impatient.enter()  # waited its 10 ms, refused
        return gate.stats(), impatient.stats()

    assert asyncio.run(scene()) == (
        {"working": 1, "waiting": 0, "refused": 1},
        {"working": 1, "waiting": 0, "refused": 1},
    )


# 10. many funded accounts ---------------------------------------------------------------------------------


def test_funding_more_accounts_than_one_block_holds():
    from x402sim import Testbed

    tb = Testbed(seed=2)
    accounts = tb.accounts(601, usdc=7)
    assert all(tb.chain.balance_of(a.address) == 7 for a in accounts)
    payer, payee = accounts[600], accounts[0]
    shop = tb.server({"GET /x": 5}, pay_to=payee.address)
    assert tb.client(payer).get(shop, "/x").status == 200
    assert tb.chain.balance_of(payee.address) == 12


def test_funding_spans_blocks_when_the_gas_limit_is_small():
    chain = LocalChain(seed=6, block_gas_limit=6_000_000)
    keys = [chain.new_key() for _ in range(80)]
    last = chain.fund_many([(address_of_key(k), 5, 7) for k in keys])
    assert last.number > 2 and chain.pending_count == 0
    assert all(
        chain.balance_of(address_of_key(k)) == 5 and chain.eth_balance(address_of_key(k)) == 7 for k in keys
    )


# 11. one clock for the chain and its facilitator ------------------------------------------------------------


def test_after_increase_time_verify_judges_by_the_chain_clock():
    from x402sim.http.serve import ChainSetup, serve_all

    running = serve_all(ChainSetup(accounts=2), ports={"chain": 0, "facilitator": 0, "server": 0})
    info = running.info
    try:
        httpx.post(
            info["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "evm_increaseTime", "params": [3600]}
        )
        # A client signing with the wall clock: its authorization is already expired on this chain.
        with PayingClient(info["accounts"][0]["private_key"], networks=(info["network"],)) as client:
            stale = client.get(info["server_url"] + "/weather")
        assert stale.status == 402 and stale.settlement is None
        assert reason_class(
            decode_header(stale.response.header(PAYMENT_REQUIRED), PaymentRequired).error
        ) is (ReasonClass.expired)
        # x402sim pay signs with the chain's clock and is paid.
        paid = run_cli("pay", info["server_url"] + "/weather", "--rpc-url", info["rpc_url"])
        assert paid.returncode == 0, paid.stderr
        other = run_cli(
            "pay", info["server_url"] + "/weather", "--rpc-url", info["rpc_url"], "--network", "eip155:1"
        )
        assert other.returncode == 2 and "eip155:1 is not the network of --rpc-url" in other.stderr
        assert token_balance(info, info["payee"]) == 1_000
    finally:
        running.stop()


# 12. smaller ones -----------------------------------------------------------------------------------------


def test_a_500_says_connection_close(world):
    def broken(request):
        raise RuntimeError("handler bug")

    app = resource_server_app(world.server, FacilitatorClient("http://f"), handlers={"GET /free": broken})

    async def call():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
            return await http.get("/free")

    answer = asyncio.run(call())
    assert answer.status_code == 500 and answer.headers["connection"] == "close"
    assert "internal error" in answer.json()["error"] and "handler bug" not in answer.text


def test_a_paid_request_that_times_out_is_recorded_with_an_unknown_outcome(world):
    challenge = world.run(world.clients["server"].get("/weather"))

    def never(request: httpx.Request) -> httpx.Response:
        if PAYMENT_SIGNATURE.lower() in request.headers:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(402, headers=challenge.headers)

    async def go():
        client = AsyncPayingClient(world.target.payer_key, networks=(world.chain.network,))
        client._http = httpx.AsyncClient(transport=httpx.MockTransport(never))
        with pytest.raises(httpx.ReadTimeout):
            await client.get("http://server/weather")
        return client

    client = asyncio.run(go())
    (record,) = client.payments
    assert record.outcome == "unknown" and record.status is None and len(record.nonce) == 66


def test_a_client_that_hangs_up_mid_body_gets_no_traceback_logged(world, caplog):
    messages = iter(
        [{"type": "http.request", "body": b'{"x402', "more_body": True}, {"type": "http.disconnect"}]
    )
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/verify",
        "headers": [],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("f", 80),
        "client": ("c", 1),
        "root_path": "",
    }
    asyncio.run(world.apps["facilitator"](scope, receive, send))
    assert sent[0]["status"] == 400 and "disconnected" in sent[1]["body"].decode()
    assert not [r for r in caplog.records if r.exc_info]


def test_the_facilitator_client_resends_what_never_left_and_only_that():
    calls = {"/verify": 0, "/settle": 0}
    answers = {
        "/verify": {"isValid": True, "payer": "0x" + "11" * 20},
        "/settle": {"success": True, "transaction": "0x" + "22" * 32, "network": "eip155:31337"},
    }

    def flaky(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] += 1
        if calls[request.url.path] == 1:
            if request.url.path == "/verify":
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=answers[request.url.path])

    client = FacilitatorClient("http://f", transport=httpx.MockTransport(flaky))
    world = AsgiWorld(seed=40)
    try:
        payment = world.target.payment(world.target.server_challenge)
        from x402sim.protocol import PaymentPayload

        payload = PaymentPayload.from_wire(payment)
        requirements = world.target.server_challenge.accepts[0]
        assert asyncio.run(client.verify(payload, requirements)).is_valid
        assert asyncio.run(client.settle(payload, requirements)).success
        assert calls == {"/verify": 2, "/settle": 2}

        def lost(request: httpx.Request) -> httpx.Response:
            calls[request.url.path] += 1
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )

        from x402sim.actors import Unreachable

        once = FacilitatorClient("http://f", transport=httpx.MockTransport(lost))
        with pytest.raises(Unreachable, match="Server disconnected"):
            asyncio.run(once.settle(payload, requirements))
        assert calls["/settle"] == 3  # a settle that may have been read is never sent twice
    finally:
        world.close()
