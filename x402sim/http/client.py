"""httpx clients: a facilitator client for servers, and the paying client for agents (sync and async).

Both are drivers of the sans-IO roles: they answer the roles' effects with real HTTP. A facilitator
that cannot be reached, times out, answers 5xx or answers something that is not its protocol raises
``Unreachable`` into the server role (which answers 502). The facilitator client's ``timeout`` bounds
each call as a whole, its one resend included (httpx bounds each phase only, so an answer dripping in
slowly would escape it). The ``EXTENSION-RESPONSES`` header of a ``/verify`` or ``/settle`` answer is
read into the answer's ``extension_responses`` (None when absent or unreadable); it stays with the
server. The paying client never follows a 402
more than once; when a paid request gets no answer (a timeout, a reset), the client role records
the payment with outcome ``unknown`` (see ``payments``) and the httpx error reaches the caller.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from ..actors.client import Client, DrivesClient, FetchResult, SpendPolicy, answer_with_approver
from ..actors.driver import BaseDriver, arun, run
from ..actors.messages import Approval, Approve, HttpRequest, HttpResponse, Send, Unreachable
from ..governance import Governor
from ..protocol import (
    EXTENSION_RESPONSES,
    ProtocolError,
    SettleResponse,
    SupportedResponse,
    VerifyResponse,
    decode_json_header,
)

DEFAULT_TIMEOUT = 30.0


def _facilitator_body(payload, requirements) -> dict:
    return {
        "x402Version": payload.x402_version,
        "paymentPayload": payload.to_wire(),
        "paymentRequirements": requirements.to_wire(),
    }


# Failures that prove the request never reached the facilitator: safe to send again, even /settle.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after the request may have been read: only an idempotent call (verify, supported) is resent.
MAYBE_SENT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# Idle pooled connections are dropped well before a server's keep-alive timeout (uvicorn: 5 s), so a
# request is not written into a connection the server is closing at that moment.
KEEPALIVE_EXPIRY = 2.0


class FacilitatorClient:
    """Async client of a facilitator's HTTP API (``/verify``, ``/settle``, ``/supported``).

    A call that fails before anything was sent is sent once more; so is a ``/verify`` or
    ``/supported`` whose connection broke (they change nothing). A call, resend included, gets its
    answer within ``timeout`` seconds or raises ``Unreachable``. ``max_connections`` bounds the
    pool; a caller that bounds its own calls in flight below it never waits for the pool."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ):
        if not timeout > 0:
            raise ValueError(f"facilitator timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, limits=limits)

    async def _send(self, method: str, path: str, json: dict | None) -> httpx.Response:
        retry = NOT_SENT + (MAYBE_SENT if path != "/settle" else ())
        try:
            return await self._http.request(method, self.url + path, json=json)
        except retry:
            return await self._http.request(method, self.url + path, json=json)

    async def _call(self, method: str, path: str, model, json: dict | None = None):
        """``model`` from the answer to ``method path``, and the answer's headers."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._send(method, path, json)
        except (TimeoutError, httpx.TimeoutException) as exc:
            late = f"{path} at {self.url} timed out: no answer within {self.timeout} s"
            raise Unreachable("facilitator", late) from exc
        except httpx.HTTPError as exc:
            detail = str(exc) or type(exc).__name__
            raise Unreachable("facilitator", f"{self.url}{path}: {detail}") from exc
        if response.status_code != 200:
            raise Unreachable("facilitator", f"{self.url}{path} answered HTTP {response.status_code}")
        try:
            return model.from_wire(response.content, where=f"facilitator {path} answer"), response.headers
        except ProtocolError as exc:
            raise Unreachable("facilitator", f"{path} answered outside the protocol: {exc}") from exc

    async def verify(self, payload, requirements) -> VerifyResponse:
        answer, headers = await self._call(
            "POST", "/verify", VerifyResponse, _facilitator_body(payload, requirements)
        )
        return answer.with_extension_responses(_extension_responses(headers))

    async def settle(self, payload, requirements) -> SettleResponse:
        answer, headers = await self._call(
            "POST", "/settle", SettleResponse, _facilitator_body(payload, requirements)
        )
        return answer.with_extension_responses(_extension_responses(headers))

    async def supported(self) -> SupportedResponse:
        answer, _ = await self._call("GET", "/supported", SupportedResponse)
        return answer

    async def aclose(self) -> None:
        await self._http.aclose()


def _extension_responses(headers: httpx.Headers) -> dict | None:
    """What a facilitator's ``EXTENSION-RESPONSES`` header says; None when absent or unreadable."""
    value = headers.get(EXTENSION_RESPONSES)
    if value is None:
        return None
    try:
        return decode_json_header(value, where=EXTENSION_RESPONSES)
    except ProtocolError:
        return None


def _to_http_request(method: str, url: str, headers, body: bytes) -> HttpRequest:
    """The role's view of a request: path and query, the caller's headers, and the URL's host as
    ``Host`` (what httpx sends; the governor names resources by host and path)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    named = tuple(headers)
    if not any(k.lower() == "host" for k, _ in named):
        named = (("Host", parts.netloc), *named)
    return HttpRequest(method.upper(), path, named, body)


def _from_httpx(response: httpx.Response) -> HttpResponse:
    return HttpResponse(response.status_code, tuple(response.headers.multi_items()), response.content)


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        key = bytes.fromhex(key.removeprefix("0x"))
    if len(key) != 32:
        raise ValueError(f"a private key is 32 bytes, got {len(key)}")
    return key


async def _send_async(http: httpx.AsyncClient, url: str, request: HttpRequest) -> HttpResponse:
    try:
        response = await http.request(
            request.method, url, headers=list(request.headers), content=request.body
        )
    except httpx.HTTPError as exc:
        raise Unreachable("server", str(exc), may_have_landed=_may_have_landed(exc), cause=exc) from exc
    return _from_httpx(response)


def _send(http: httpx.Client, url: str, request: HttpRequest) -> HttpResponse:
    try:
        response = http.request(request.method, url, headers=list(request.headers), content=request.body)
    except httpx.HTTPError as exc:
        raise Unreachable("server", str(exc), may_have_landed=_may_have_landed(exc), cause=exc) from exc
    return _from_httpx(response)


def _may_have_landed(exc: httpx.HTTPError) -> bool:
    return not isinstance(exc, NOT_SENT)


def _original(exc: Unreachable) -> BaseException:
    """The httpx error behind a server that did not answer (what callers of these clients catch)."""
    return exc.cause if exc.cause is not None else exc


class _ClientDriver(BaseDriver):
    """The paying clients' answers: a request goes to ``origin`` over ``http``; an approval is asked
    of the client's governor's approver at the client's clock (there is no human to ask)."""

    world = "HTTP client"

    def __init__(self, paying: PayingBase, origin: str) -> None:
        self.paying, self.origin = paying, origin

    def approve(self, effect: Approve) -> Approval:
        return answer_with_approver(self.paying.role, effect, int(self.paying.clock()))


class _SyncDriver(_ClientDriver):
    paying: PayingClient

    def send(self, effect: Send) -> HttpResponse:
        return _send(self.paying._http, self.origin + effect.request.path, effect.request)


class _AsyncDriver(_ClientDriver):
    paying: AsyncPayingClient

    async def send(self, effect: Send) -> HttpResponse:
        return await _send_async(self.paying._http, self.origin + effect.request.path, effect.request)

    async def approve(self, effect: Approve) -> Approval:  # type: ignore[override]
        return super().approve(effect)


class PayingBase(DrivesClient):
    """Shared set-up: ``networks`` (CAIP-2, required) are the only chains the client signs for; a
    ``governor`` judges each payment first (knowing this client as ``agent``, by default its
    address), and its approver answers the payments that need approval. A ``signer``
    (``x402sim.trust.signatures.AgentSigner``) signs every request sent (RFC 9421: Web Bot Auth or
    Visa TAP), the paid retry afresh. ``directory``, ``require_identity``, ``min_reputation``,
    ``identity`` and ``mandate`` are the ``Client``'s trust settings (ERC-8004 and AP2; see
    ``x402sim.trust``); feedback (``rate``) needs a chain writer, so it is left to the testbed and
    the simulator. ``chain`` (e.g. an ``RpcChain`` of the paid network) is what the client reads its
    Permit2 allowance and EIP-2612 nonce from, to attach a gas-sponsoring extension a 402 declares;
    its reads block, so an ``AsyncPayingClient`` must not be given a chain served on its own loop.
    ``channel_store`` (a ``ChannelStore``, e.g. on a file) keeps the client's batch-settlement
    channels, ``deposit_policy`` sizes its deposits; ``refund(url)`` asks for a channel's escrow back."""

    def __init__(
        self,
        key: bytes | str,
        *,
        networks: tuple[str, ...],
        policy: SpendPolicy | None = None,
        governor: Governor | None = None,
        agent: str | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        signer=None,
        directory=None,
        require_identity: bool = False,
        min_reputation: float | None = None,
        identity=None,
        mandate=None,
        chain=None,
        channel_store=None,
        deposit_policy=None,
    ) -> None:
        self.role = Client(
            _key_bytes(key),
            networks=networks,
            policy=policy or SpendPolicy(),
            seed=seed if seed is not None else int.from_bytes(os.urandom(8), "big"),
            governor=governor,
            agent=agent,
            signer=signer,
            directory=directory,
            require_identity=require_identity,
            min_reputation=min_reputation,
            identity=identity,
            mandate=mandate,
            chain=chain,
            channel_store=channel_store,
            deposit_policy=deposit_policy,
        )
        self.clock = clock


class PayingClient(PayingBase):
    """A curl-like paying agent over httpx: ``get(url)`` pays once on a 402 and returns a ``FetchResult``.
    ``transport`` (an httpx transport, e.g. ``httpx.WSGITransport``) replaces the network."""

    def __init__(
        self,
        key: bytes | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        **kwargs,
    ) -> None:
        super().__init__(key, **kwargs)
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def request(self, method: str, url: str, *, headers=(), content: bytes = b"") -> FetchResult:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        request = _to_http_request(method, url, headers, content)
        try:
            return run(self.role.fetch(request, int(self.clock())), _SyncDriver(self, origin))
        except Unreachable as exc:
            raise _original(exc) from None

    def get(self, url: str, **kwargs) -> FetchResult:
        return self.request("GET", url, **kwargs)

    def refund(self, url: str, amount: int | None = None, *, method: str = "GET", headers=()) -> FetchResult:
        """Ask the server of ``url`` for this client's batch-settlement escrow back (``amount``; None:
        all not yet charged); see ``Client.refund``."""
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        request = _to_http_request(method, url, headers, b"")
        try:
            return run(self.role.refund(request, int(self.clock()), amount), _SyncDriver(self, origin))
        except Unreachable as exc:
            raise _original(exc) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncPayingClient(PayingBase):
    """``PayingClient`` for asyncio; ``transport`` (e.g. ``httpx.ASGITransport(app)``) replaces the
    network, so the served apps can be paid in process."""

    def __init__(
        self,
        key: bytes | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs,
    ) -> None:
        super().__init__(key, **kwargs)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def request(self, method: str, url: str, *, headers=(), content: bytes = b"") -> FetchResult:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        request = _to_http_request(method, url, headers, content)
        try:
            return await arun(self.role.fetch(request, int(self.clock())), _AsyncDriver(self, origin))
        except Unreachable as exc:
            raise _original(exc) from None

    async def get(self, url: str, **kwargs) -> FetchResult:
        return await self.request("GET", url, **kwargs)

    async def refund(
        self, url: str, amount: int | None = None, *, method: str = "GET", headers=()
    ) -> FetchResult:
        """``PayingClient.refund`` for asyncio."""
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        request = _to_http_request(method, url, headers, b"")
        try:
            return await arun(
                self.role.refund(request, int(self.clock()), amount), _AsyncDriver(self, origin)
            )
        except Unreachable as exc:
            raise _original(exc) from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
