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

Overload: a request that carries a payment goes through ``admission`` (by default
``MAX_IN_FLIGHT`` at work and ``MAX_WAITING`` waiting up to ``MAX_WAIT_SECONDS`` each). One that
cannot be admitted is answered 503 with ``Retry-After`` before any verify or settle, so nothing is
charged; one that is admitted is verified, served and settled within seconds, far inside a client's
usual timeout. The facilitator client's connection pool is sized to the admission limit, so admitted
calls never queue for a connection. Unpaid requests (the 402 challenge) are cheap and not limited.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..actors.messages import Handle, HttpRequest, HttpResponse, arun
from ..actors.server import ResourceServer, default_handler
from ..protocol import PAYMENT_SIGNATURE, X_PAYMENT
from .bodies import BodyError, read_body
from .client import FacilitatorClient
from .guard import Admission, service_app

MAX_BODY_BYTES = 1024 * 1024
MAX_IN_FLIGHT = 32  # paid requests between admission and answer
MAX_WAITING = 256  # paid requests waiting for a slot
MAX_WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1
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
):
    """The resource server's ASGI app; ``facilitator`` should allow at least ``admission.limit``
    connections (``FacilitatorClient(max_connections=...)``)."""
    handlers = dict(handlers or {})
    gate = admission or Admission(MAX_IN_FLIGHT, MAX_WAITING, MAX_WAIT_SECONDS, RETRY_AFTER_SECONDS)
    origin_http = httpx.AsyncClient(timeout=origin_timeout, transport=origin_transport) if origin else None

    async def application(request: HttpRequest) -> HttpResponse:
        handler = handlers.get(request.route_key)
        if handler is not None:
            answer = handler(request)
            return await answer if inspect.isawaitable(answer) else answer
        if origin_http is not None:
            return await _forward(request)
        if request.route_key in server.routes:
            return default_handler(request)
        return _json_error(404, f"no route {request.route_key}")

    async def _forward(request: HttpRequest) -> HttpResponse:
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        try:
            answer = await origin_http.request(
                request.method, origin.rstrip("/") + request.path, headers=headers, content=request.body
            )
        except httpx.HTTPError as exc:
            return _json_error(502, f"origin {origin} unreachable: {exc}")
        kept = tuple((k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP)
        return HttpResponse(answer.status_code, kept, answer.content)

    async def perform(effect):
        if isinstance(effect, Handle):
            return await application(effect.request)
        return await facilitator.perform(effect)

    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request, max_body)
        except BodyError as exc:
            return _as_starlette(_json_error(exc.status, exc.problem))
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        exchange = HttpRequest(request.method, path, tuple(request.headers.items()), body)
        if not server.carries_payment(exchange):
            return _as_starlette(await arun(server.handle(exchange), perform))
        answer = await gate.admit(
            lambda: arun(server.handle(exchange), perform), lambda: server.overloaded(gate.retry_after)
        )
        return _as_starlette(answer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await facilitator.aclose()
        if origin_http is not None:
            await origin_http.aclose()

    return service_app(
        "resource server", [Route("/{path:path}", endpoint, methods=METHODS)], lifespan=lifespan
    )


def demo_weather(request: HttpRequest) -> HttpResponse:
    """The demo server's paid resource."""
    return HttpResponse.of_json(200, {"city": "Lisbon", "temperature_c": 21, "sky": "clear", "paid": True})


__all__ = ["demo_weather", "resource_server_app"]
