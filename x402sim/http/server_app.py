"""The resource-server role behind HTTP, and the paywall proxy.

``resource_server_app`` serves a ``ResourceServer``'s priced routes: an unpaid request gets the 402
challenge, a paid one is verified and settled through a facilitator reached by URL, and the answer
carries the settlement header. The application behind it is either Python handlers or, in
**paywall proxy mode** (``origin=URL``), any HTTP origin: a request is forwarded to the origin only
after its payment is verified, and the origin's response is released only after settlement (the
edge pattern of pay-per-crawl). Unpriced paths are passed to the origin free in proxy mode, and
answer 404 otherwise unless a handler exists.

Rules: endpoints are async; a facilitator that cannot be reached answers 502 (from the role); an
origin that cannot be reached answers 502 and nothing is settled; bodies over ``max_body`` get 413.
The role is given the path as the client sent it (ASGI's ``raw_path``, escapes and all): it decides
which route that spelling names, and handlers are found by the route it names. The origin is sent the
client's spelling.

Pay per crawl (off unless the role has a ``crawl`` policy, ``x402sim.trust.crawl.CrawlPolicy``): the
role admits each request by its RFC 9421 signature before anything else, at the wall-clock second the
request arrived. A ``DirectoryFetcher`` first loads the key directories that requests name in
``Signature-Agent`` (loopback only unless told otherwise, cached, bounded: the draft's SSRF advice), so
the sans-IO verifier finds the keys. A 402 then also carries ``crawler-price: USD <price>`` and a paid
answer ``crawler-charged: USD <price>`` (Cloudflare's headers, informational: the payment is x402).

Signed answers (off unless a ``response_signer`` is given): answers carrying ``PAYMENT-REQUIRED`` or
``PAYMENT-RESPONSE`` are signed as the x402 ``http-message-signatures`` extension describes
(``x402sim.trust.signatures.ResponseSigner``), and the server's key is published at
``/.well-known/http-message-signatures-directory``.

Channels (a server with ``batch-settlement`` routes and ``channel_work_every`` seconds): the role's
``channel_work`` (claims, settlements, idle refunds) runs on the app's event loop every that many
seconds, at the wall-clock second it starts, its ``Settle`` effects sent to the facilitator; what it
did or failed is written to stderr. The requests' channel writes run on the same loop, one at a time.

Overload: a request that carries a payment goes through ``admission`` (by default
``MAX_IN_FLIGHT`` at work and ``MAX_WAITING`` waiting up to ``MAX_WAIT_SECONDS`` each). One that
cannot be admitted is answered 503 with ``Retry-After`` before any verify or settle, so nothing is
charged; one that is admitted is verified, served and settled within seconds, far inside a client's
usual timeout. The facilitator client's connection pool is sized to the admission limit, so admitted
calls never queue for a connection. Unpaid requests (the 402 challenge) are cheap and not limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..actors.driver import BaseDriver, arun
from ..actors.messages import AmbiguousPath, Handle, HttpRequest, HttpResponse, Settle, Verify
from ..actors.server import ResourceServer, default_handler
from ..money import format_usd
from ..protocol import PAYMENT_REQUIRED, PAYMENT_SIGNATURE, X_PAYMENT, ProtocolError, read_settlement
from ..trust.signatures import (
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    KeyDirectory,
    ResponseSigner,
    agent_identifier,
    jwks,
    signature_agents,
)
from .bodies import BodyError, read_body
from .client import FacilitatorClient
from .guard import Admission, service_app
from .runner import ServiceError, check_loopback_url

MAX_BODY_BYTES = 1024 * 1024
MAX_IN_FLIGHT = 32  # paid requests between admission and answer
MAX_WAITING = 256  # paid requests waiting for a slot
MAX_WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1
# Printable ASCII stays as sent; any other byte of a raw path is percent-escaped for the role to judge.
_RAW_PATH_SAFE = bytes(range(0x21, 0x7F)).decode()
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Not forwarded either way: connection-level headers, and the payment itself (the origin is paid
# through the facilitator, it never needs the client's signature).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
    PAYMENT_SIGNATURE.lower(),
    X_PAYMENT.lower(),
}

Handler = Callable[[HttpRequest], HttpResponse]


def _as_starlette(response: HttpResponse) -> Response:
    headers = [
        (k, v) for k, v in response.headers if k.lower() not in ("content-length", "transfer-encoding")
    ]
    result = Response(response.body, status_code=response.status)
    for k, v in headers:
        result.headers.append(k, v)
    return result


def _json_error(status: int, message: str) -> HttpResponse:
    return HttpResponse.of_json(status, {"error": message})


class DirectoryFetcher:
    """Loads the key directories requests name in ``Signature-Agent`` into ``directory``.

    Only ``directory``-type members are resolved: ``GET <origin>/.well-known/http-message-signatures-
    directory``, answered 200 with a JWKS of at most ``max_bytes``, no redirects followed, within
    ``timeout`` seconds. Origins off this machine are skipped unless ``allow_remote``. A directory is
    fetched again after ``ttl`` seconds (after ``retry_after`` when the fetch failed); a failed fetch
    keeps the keys already known (an outage must not revoke them). Concurrent requests naming the same
    origin share one fetch; at most ``max_origins`` origins are remembered."""

    def __init__(
        self,
        directory: KeyDirectory,
        *,
        allow_remote: bool = False,
        ttl: float = 300.0,
        retry_after: float = 30.0,
        timeout: float = 5.0,
        max_bytes: int = 64 * 1024,
        max_origins: int = 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.allow_remote = allow_remote
        self.ttl, self.retry_after, self.max_bytes, self.max_origins = (
            ttl,
            retry_after,
            max_bytes,
            max_origins,
        )
        self.clock = clock
        self.failures: dict[str, str] = {}  # origin -> why its last fetch failed
        self._fetched: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def prepare(self, headers) -> None:
        """Make sure the directories ``headers`` name are loaded (or known to fail)."""
        for _, url, kind in signature_agents(headers)[:4]:
            origin = agent_identifier(url) if kind == "directory" else None
            if origin is None:
                continue
            try:
                check_loopback_url(origin, "Signature-Agent", allow_remote=self.allow_remote)
            except ServiceError as exc:
                self.failures[origin] = str(exc)
                continue
            await self._refresh(origin)

    def _fresh(self, origin: str) -> bool:
        entry = self._fetched.get(origin)
        if entry is None:
            return False
        at, ok = entry
        return self.clock() - at < (self.ttl if ok else self.retry_after)

    async def _refresh(self, origin: str) -> None:
        if self._fresh(origin):
            return
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if self._fresh(origin):
                return
            problem = await self._fetch(origin)
            self._fetched[origin] = (self.clock(), problem is None)
            self._fetched.move_to_end(origin)
            if problem is None:
                self.failures.pop(origin, None)
            else:
                self.failures[origin] = problem
            while len(self._fetched) > self.max_origins:
                gone, _ = self._fetched.popitem(last=False)
                self._locks.pop(gone, None)

    async def _fetch(self, origin: str) -> str | None:
        """Load ``origin``'s directory; None when done, else what went wrong."""
        url = origin + DIRECTORY_PATH
        try:
            async with self._http.stream("GET", url, headers={"Accept": DIRECTORY_MEDIA_TYPE}) as answer:
                if answer.status_code != 200:
                    return f"{url} answered HTTP {answer.status_code}"
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        return f"{url} is larger than {self.max_bytes} bytes"
        except httpx.HTTPError as exc:
            return f"{url}: {exc.__class__.__name__}: {exc}"
        try:
            self.directory.load_jwks(json.loads(body), source=origin)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"{url}: not a key directory: {exc}"
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


def _route(server: ResourceServer, request: HttpRequest):
    """The route ``request`` names (None: none, or a path the role refuses)."""
    try:
        return server.route_for(request)
    except AmbiguousPath:
        return None


def _routed_by_raw_path(app):
    """``app`` routing by the path as sent (its escapes kept) rather than the decoded one: a decoded
    control character matches no Starlette route, and such a path must reach the role (a 400)."""

    async def routed(scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("raw_path"):
            scope = {**scope, "path": quote_from_bytes(scope["raw_path"], safe=_RAW_PATH_SAFE)}
        await app(scope, receive, send)

    routed.state = app.state  # type: ignore[attr-defined]
    return routed


def _raw_path(request: Request) -> str:
    """The path and query as the client sent them."""
    raw = request.scope.get("raw_path")
    path = quote_from_bytes(raw, safe=_RAW_PATH_SAFE) if raw else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return path + (f"?{query}" if query else "")


def _crawl_headers(server: ResourceServer, request: HttpRequest, answer: HttpResponse) -> HttpResponse:
    """Pay per crawl's informational headers on an answer of a server with a crawl policy."""
    if server.crawl is None:
        return answer
    route = _route(server, request)
    if route is None:
        return answer
    if answer.status == 402 and answer.header(PAYMENT_REQUIRED) is not None:
        extra = ("crawler-price", format_usd(route.price))
    elif answer.status < 400:
        try:
            settlement = read_settlement(answer.headers)
        except ProtocolError:
            return answer
        if settlement is None or not settlement.success:
            return answer
        extra = ("crawler-charged", format_usd(route.price))
    else:
        return answer
    return HttpResponse(answer.status, (*answer.headers, extra), answer.body)


class ServerDriver(BaseDriver):
    """The served resource server's answers: its facilitator calls go to ``facilitator`` over HTTP,
    its application is ``application`` (the handlers, or the proxied origin)."""

    world = "HTTP resource server"

    def __init__(self, application: Callable, facilitator: FacilitatorClient) -> None:
        self.application, self.facilitator = application, facilitator

    async def handle(self, effect: Handle) -> HttpResponse:
        return await self.application(effect.request)

    async def verify(self, effect: Verify):
        return await self.facilitator.verify(effect.payload, effect.requirements)

    async def settle(self, effect: Settle):
        return await self.facilitator.settle(effect.payload, effect.requirements)


@contextlib.asynccontextmanager
async def channel_rounds(
    server: ResourceServer, every: float | None, one_round: Callable[[], Awaitable[Any]]
) -> AsyncIterator[None]:
    """While inside: when ``every`` is set and ``server`` sells batch-settlement routes, its channel
    work (``one_round()``: claims, settlements, idle refunds) every ``every`` seconds on this loop;
    what a round did or failed goes to stderr, and a failed round does not stop the next."""

    async def rounds() -> None:
        assert every is not None  # started only then
        while True:
            await asyncio.sleep(every)
            try:
                work = await one_round()
            except Exception as exc:  # the loop must outlive one bad round
                print(f"channel work failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            if work.claims or work.settlements or work.refunds or work.errors:
                print(f"channel work: {json.dumps(work.__dict__)}", file=sys.stderr, flush=True)

    worker = asyncio.create_task(rounds()) if every is not None and server.channel_routes() else None
    try:
        yield
    finally:
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


def resource_server_app(
    server: ResourceServer,
    facilitator: FacilitatorClient,
    *,
    handlers: Mapping[str, Handler] | None = None,
    origin: str | None = None,
    origin_timeout: float = 30.0,
    origin_transport: httpx.AsyncBaseTransport | None = None,
    max_body: int = MAX_BODY_BYTES,
    admission: Admission | None = None,
    directories: DirectoryFetcher | None = None,
    clock: Callable[[], float] = time.time,
    response_signer: ResponseSigner | None = None,
    channel_work_every: float | None = None,
):
    """The resource server's ASGI app; ``facilitator`` should allow at least ``admission.limit``
    connections (``FacilitatorClient(max_connections=...)``). ``directories`` loads the key
    directories signed requests name (for a role with a crawl policy); ``clock`` is the time the role
    is given with each request; ``response_signer`` signs the answers that carry an x402 header."""
    handlers = dict(handlers or {})
    gate = admission or Admission(MAX_IN_FLIGHT, MAX_WAITING, MAX_WAIT_SECONDS, RETRY_AFTER_SECONDS)
    origin_http = httpx.AsyncClient(timeout=origin_timeout, transport=origin_transport) if origin else None

    async def application(request: HttpRequest) -> HttpResponse:
        route = _route(server, request)
        handler = handlers.get(route.key if route is not None else request.canonical_key)
        if handler is not None:
            answer = handler(request)
            return await answer if inspect.isawaitable(answer) else answer
        if origin_http is not None:
            return await _forward(request)
        if route is not None:
            return default_handler(request)
        return _json_error(404, f"no route {request.route_key}")

    async def _forward(request: HttpRequest) -> HttpResponse:
        assert origin_http is not None and origin is not None  # called only when there is an origin
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        try:
            answer = await origin_http.request(
                request.method, origin.rstrip("/") + request.path, headers=headers, content=request.body
            )
        except httpx.HTTPError as exc:
            return _json_error(502, f"origin {origin} unreachable: {exc}")
        kept = tuple((k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP)
        return HttpResponse(answer.status_code, kept, answer.content)

    perform = ServerDriver(application, facilitator)

    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request, max_body)
        except BodyError as exc:
            return _as_starlette(_json_error(exc.status, exc.problem))
        exchange = HttpRequest(request.method, _raw_path(request), tuple(request.headers.items()), body)
        if directories is not None and server.crawl is not None:
            await directories.prepare(exchange.headers)
        now = int(clock())
        if not server.carries_payment(exchange):
            answer = await arun(server.handle(exchange, now), perform)
        else:
            answer = await gate.admit(
                lambda: arun(server.handle(exchange, now), perform),
                lambda: server.overloaded(gate.retry_after),
            )
        answer = _crawl_headers(server, exchange, answer)
        if response_signer is not None:
            host = exchange.header("Host") or ""
            signed = response_signer.sign(
                answer.status, answer.headers, exchange.method, host, exchange.path, now
            )
            answer = HttpResponse(answer.status, signed, answer.body)
        return _as_starlette(answer)

    async def directory(request: Request) -> Response:
        assert response_signer is not None  # routed only when there is a signer
        document = json.dumps(jwks([response_signer.key]), separators=(",", ":"))
        return Response(
            document, headers={"Content-Type": DIRECTORY_MEDIA_TYPE, "Cache-Control": "max-age=300"}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with channel_rounds(
            server, channel_work_every, lambda: arun(server.channel_work(int(clock())), perform)
        ):
            yield
        await facilitator.aclose()
        if origin_http is not None:
            await origin_http.aclose()
        if directories is not None:
            await directories.aclose()

    routes = [Route("/{path:path}", endpoint, methods=METHODS)]
    if response_signer is not None:
        routes.insert(0, Route(DIRECTORY_PATH, directory, methods=["GET", "HEAD"]))
    return _routed_by_raw_path(service_app("resource server", routes, lifespan=lifespan))


def demo_weather(request: HttpRequest) -> HttpResponse:
    """The demo server's paid resource."""
    return HttpResponse.of_json(200, {"city": "Lisbon", "temperature_c": 21, "sky": "clear", "paid": True})


__all__ = ["DirectoryFetcher", "demo_weather", "resource_server_app"]
