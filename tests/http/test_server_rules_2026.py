"""The served resource server's 2026 HTTP rules: facilitator calls bounded as a whole, malformed
facilitator answers, ``EXTENSION-RESPONSES`` kept from the buyer, every spelling of a priced path
priced in paywall proxy mode, and the ``--facilitator-timeout`` / ``FACILITATOR_TIMEOUT_SECONDS``
settings. The facilitator is the reference one on an embedded chain (or a stub in front of it), all
in process; money is judged by the chain's Transfer logs."""

from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import re
import time
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import example, given, settings

from tests.actors.test_server_rules_2026 import SECRET, spellings
from tests.http.conftest import WEATHER_ROUTES, run_cli
from x402sim.actors import Client, Facilitator, HttpResponse, Unreachable
from x402sim.actors.messages import AmbiguousPath, canonical_path
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import AsyncPayingClient, FacilitatorClient, facilitator_app, resource_server_app
from x402sim.http.routes_file import RoutesFileError, parse_routes
from x402sim.http.serve import EnvError, server_env
from x402sim.protocol import (
    EXTENSION_RESPONSES,
    PAYMENT_SIGNATURE,
    encode_header,
    parse_payment_required,
)

PRICE = 2_000
BOUND = 0.5  # the facilitator timeout of the tests that wait for it


class Shop:
    """A chain, the reference facilitator (behind ``stub`` when given: an ASGI app wrapping it) and a
    resource server selling ``GET /paid``, whose handler counts its runs."""

    def __init__(self, *, stub=None, timeout: float = 10.0, handler=None, **app_options) -> None:
        self.chain = LocalChain(seed=22, start_time=int(time.time()))
        self.payer_key, fkey, payee_key = (self.chain.new_key() for _ in range(3))
        self.payer, self.payee = address_of_key(self.payer_key), address_of_key(payee_key)
        self.chain.fund_many([(self.payer, 1_000_000, 0), (address_of_key(fkey), 0, 10 * ETHER)])
        real = facilitator_app(Facilitator(self.chain, fkey))
        facilitator = stub(real) if stub is not None else real
        self.to_facilitator = FacilitatorClient(
            "http://facilitator", timeout=timeout, transport=httpx.ASGITransport(app=facilitator)
        )
        self.server = ResourceServer.with_prices({"GET /paid": PRICE}, chain=self.chain, pay_to=self.payee)
        self.runs = 0

        def paid(request):
            self.runs += 1
            return handler(request) if handler is not None else HttpResponse.of_json(200, SECRET)

        handlers = {} if "origin" in app_options else {"GET /paid": paid}
        self.app = resource_server_app(self.server, self.to_facilitator, handlers=handlers, **app_options)
        self.block = self.chain.block_number

    async def pay(self, path: str = "/paid"):
        async with AsyncPayingClient(
            self.payer_key, networks=(self.chain.network,), transport=httpx.ASGITransport(app=self.app)
        ) as client:
            return await client.get("http://server" + path)

    def transfers(self):
        return [(t.from_, t.to, t.value) for t in self.chain.transfers(since_block=self.block + 1)]


def _on(paths: dict):
    """A stub facilitator: each of ``paths`` answered by its ASGI app, the rest by the real one."""

    def wrap(real):
        async def app(scope, receive, send):
            await paths.get(scope.get("path"), real)(scope, receive, send)

        return app

    return wrap


async def _never(scope, receive, send):
    await asyncio.Event().wait()  # a facilitator that accepted the request and never answers


def _reply(status: int, body: bytes):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


# 4. bounded facilitator calls --------------------------------------------------------------------------


@pytest.mark.parametrize("hangs", ["/verify", "/settle"])
def test_a_facilitator_that_never_answers_gets_a_502_within_the_bound(hangs):
    shop = Shop(stub=_on({hangs: _never}), timeout=BOUND)
    started = time.monotonic()
    result = asyncio.run(shop.pay())
    elapsed = time.monotonic() - started
    assert BOUND <= elapsed < BOUND + 5  # the bound, plus the paying client's own work
    assert (
        result.status == 502
        and f"{hangs} at http://facilitator timed out: no answer within" in result.json()["error"]
    )
    assert SECRET["secret"].encode() not in result.response.body
    assert shop.runs == (1 if hangs == "/settle" else 0)  # a hung /verify: the handler never runs
    assert shop.transfers() == [] and shop.chain.balance_of(shop.payer) == 1_000_000


def test_the_bound_covers_the_resend_too():
    class RefusedThenHung(httpx.AsyncBaseTransport):
        calls = 0

        async def handle_async_request(self, request):
            self.calls += 1
            if self.calls == 1:
                raise httpx.ConnectError("refused", request=request)  # never sent: resent
            await asyncio.Event().wait()

    transport = RefusedThenHung()
    client = FacilitatorClient("http://facilitator", timeout=BOUND, transport=transport)

    async def call():
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"no answer within 0\.5 s"):
            await client.supported()
        return time.monotonic() - started

    assert asyncio.run(call()) < BOUND + 2 and transport.calls == 2
    with pytest.raises(ValueError, match="positive number of seconds"):
        FacilitatorClient("http://facilitator", timeout=0)


# 5. malformed facilitator answers ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/verify", "/settle"])
@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"<html>oops</html>"), (200, b'{"ok": true}'), (500, b'{"isValid": true, "success": true}')],
)
def test_a_malformed_facilitator_answer_is_a_502_and_never_serves(path, status, body):
    shop = Shop(stub=_on({path: _reply(status, body)}))
    result = asyncio.run(shop.pay())
    assert result.status == 502 and SECRET["secret"].encode() not in result.response.body
    assert shop.runs == (1 if path == "/settle" else 0)
    assert shop.transfers() == []


# 6. EXTENSION-RESPONSES ---------------------------------------------------------------------------------

SAID = {"bazaar": {"status": "indexed", "note": "for-the-server-only"}}


def _with_extension_responses(value: str):
    """A stub that adds ``EXTENSION-RESPONSES: value`` to every answer of the real facilitator."""

    def wrap(real):
        async def app(scope, receive, send):
            async def add(message):
                if message["type"] == "http.response.start":
                    extra = [(EXTENSION_RESPONSES.lower().encode(), value.encode())]
                    message = {**message, "headers": [*message["headers"], *extra]}
                await send(message)

            await real(scope, receive, send=add)

        return app

    return wrap


def test_extension_responses_are_read_by_the_server_and_never_reach_the_buyer():
    value = base64.b64encode(json.dumps(SAID).encode()).decode()
    shop = Shop(stub=_with_extension_responses(value))
    result = asyncio.run(shop.pay())
    assert result.status == 200 and result.json() == SECRET
    assert shop.transfers() == [(shop.payer, shop.payee, PRICE)]
    for name, content in result.response.headers:
        assert name.lower() != EXTENSION_RESPONSES.lower()
        assert value not in content and "for-the-server-only" not in content
        if name.upper().endswith("RESPONSE"):
            assert "for-the-server-only" not in base64.b64decode(content).decode()

    async def direct():  # what the server's facilitator client read
        payment = result.payment
        offer = shop.server.offers(shop.server.routes["GET /paid"])[0]
        return await shop.to_facilitator.verify(payment, offer)

    assert asyncio.run(direct()).extension_responses == SAID


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"[1]").decode(), ""])
def test_an_unreadable_extension_responses_header_is_ignored(value):
    shop = Shop(stub=_with_extension_responses(value))
    result = asyncio.run(shop.pay())
    assert result.status == 200 and shop.transfers() == [(shop.payer, shop.payee, PRICE)]

    async def direct():
        offer = shop.server.offers(shop.server.routes["GET /paid"])[0]
        return await shop.to_facilitator.verify(result.payment, offer)

    verdict = asyncio.run(direct())
    assert verdict.extension_responses is None and "extensionResponses" not in verdict.to_wire()


# 10. every spelling of a priced path is priced, in proxy mode ---------------------------------------------


def _lenient(path: str) -> str:
    """How a careless origin reads a path: decoded thrice, case folded, backslashes as slashes, controls
    and ``;params`` dropped, dot segments resolved, trailing slash ignored."""
    for _ in range(3):
        path = unquote(path)
    path = re.sub(r"[\x00-\x1f\x7f]", "", path.lower().replace("\\", "/"))
    path = re.sub(r";[^/]*", "", path.split("?", 1)[0])
    return posixpath.normpath("/" + path).replace("//", "/")


async def _raw_get(app, target: str, headers=()) -> tuple[int, bytes]:
    """Send ``GET target`` to ``app`` as a server would hand it over: ``raw_path`` exactly as written."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", b"server"), *((k.lower().encode(), v.encode()) for k, v in headers)],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_no_spelling_of_a_priced_path_reaches_the_origin_unpaid_and_a_paid_one_is_charged_once():
    forwarded: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        forwarded.append(request.url.raw_path.decode())
        if _lenient(request.url.raw_path.decode()) == "/paid":
            return httpx.Response(200, json=SECRET)
        return httpx.Response(200, json={"free": True})

    shop = Shop(origin="http://origin", origin_transport=httpx.MockTransport(origin))
    buyer = Client(shop.payer_key, networks=(shop.chain.network,), seed=7)
    loop = asyncio.new_event_loop()
    secret = SECRET["secret"].encode()

    @given(spelling=spellings())
    @example(spelling="/%0Apaid")  # decoded, a newline matches no Starlette route: the role must see it
    @example(spelling="/x/..//P%61ID;v=1/")
    @settings(max_examples=25, deadline=None)
    def check(spelling: str) -> None:
        try:
            canonical_path(spelling)
            refused = False
        except AmbiguousPath:
            refused = True
        before = len(forwarded)
        status, body = loop.run_until_complete(_raw_get(shop.app, spelling))
        assert status == (400 if refused else 402) and secret not in body
        assert len(forwarded) == before  # priced or refused: the origin is not asked
        challenge = shop.server.challenge(shop.server.routes["GET /paid"], 2, "payment required")
        required = parse_payment_required(challenge.headers, challenge.body)
        header = encode_header(buyer.create_payment(required, int(time.time())))
        block = shop.chain.block_number
        status, body = loop.run_until_complete(_raw_get(shop.app, spelling, ((PAYMENT_SIGNATURE, header),)))
        charged = [(t.from_, t.to, t.value) for t in shop.chain.transfers(since_block=block + 1)]
        if refused:
            assert status == 400 and charged == [] and len(forwarded) == before
        else:
            assert status == 200 and secret in body and charged == [(shop.payer, shop.payee, PRICE)]

    try:
        check()
    finally:
        loop.close()
    status, body = asyncio.run(_raw_get(shop.app, "/free/page"))
    assert (status, json.loads(body)) == (200, {"free": True})
    assert forwarded[-1] == "/free/page"  # an unpriced path is forwarded free


# 11. a paid redirect over HTTP ---------------------------------------------------------------------------


def test_a_paid_redirect_is_settled_once_and_not_followed():
    shop = Shop(handler=lambda request: HttpResponse(302, (("Location", "/copy"),), b""))
    result = asyncio.run(shop.pay())
    assert result.status == 302 and result.response.header("Location") == "/copy"
    assert result.settlement.success and shop.transfers() == [(shop.payer, shop.payee, PRICE)]


# the settings -----------------------------------------------------------------------------------------------

GOOD_ENV = {
    "FACILITATOR_URL": "http://127.0.0.1:4022",
    "EVM_NETWORK": "base-sepolia",
    "EVM_PAYEE_ADDRESS": "0x" + "11" * 20,
}


def test_facilitator_timeout_seconds_is_read_from_the_environment():
    assert server_env(GOOD_ENV).facilitator_timeout == 30.0
    assert server_env(GOOD_ENV | {"FACILITATOR_TIMEOUT_SECONDS": "2.5"}).facilitator_timeout == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(
            EnvError, match=f"FACILITATOR_TIMEOUT_SECONDS='{bad}': expected a positive number"
        ):
            server_env(GOOD_ENV | {"FACILITATOR_TIMEOUT_SECONDS": bad})


def test_the_facilitator_timeout_flag_must_be_positive(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(WEATHER_ROUTES)
    done = run_cli(
        "serve",
        "server",
        "--facilitator-url",
        "http://127.0.0.1:1",
        "--routes",
        str(routes),
        "--facilitator-timeout",
        "0",
    )
    assert (
        done.returncode == 2
        and "--facilitator-timeout 0.0: expected a positive number of seconds" in done.stderr
    )


def test_a_routes_file_may_tell_the_resource_and_offers_last_300_seconds():
    config = parse_routes(
        {
            "routes": [
                {
                    "method": "GET",
                    "path": "/a",
                    "price": 1,
                    "service_name": "S",
                    "tags": ["x"],
                    "icon_url": "i",
                },
                {"method": "GET", "path": "/b", "price": 1},
            ]
        }
    )
    a, b = config.routes["GET /a"], config.routes["GET /b"]
    assert (a.service_name, a.tags, a.icon_url) == ("S", ("x",), "i")
    assert (b.service_name, b.tags, b.icon_url, b.max_timeout_seconds) == (None, (), None, 300)
    for bad, named in (({"tags": "x"}, "tags"), ({"tags": [1]}, "tags"), ({"icon_url": 3}, "icon_url")):
        with pytest.raises(RoutesFileError, match=rf"routes\[0\]: {named}: expected"):
            parse_routes({"routes": [{"method": "GET", "path": "/a", "price": 1, **bad}]})
