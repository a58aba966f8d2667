"""The resource server the harness plays against a client target: honest or hostile, case by case.

Rules: one ASGI app serves every client case; a case installs its ``handler`` (an async function
from ``Seen`` to ``Answer``) before running the client and the runner resets it after. Every request
is recorded with its payment header decoded, so a case judges by what the client really signed.

A handler may lose its answer on purpose: ``HANG_UP`` closes the connection without writing a byte
(the client sees the server disconnect), and ``hold`` keeps a request unanswered until the case ends
(``reset``) or a bound passes. ASGI has no message for "close without answering"; uvicorn does it
when an app returns something other than None, so that is how a hang-up is made (its log line for
it is filtered out: it is the harness's doing, not an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .asgi import read_body, send_raw, serve_lifespan
from .evidence import decode_lenient

PAYMENT_HEADERS = ("payment-signature", "x-payment")


@dataclass
class Seen:
    """A request the client sent to the harness's server."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # wall-clock time of arrival (the clients' clock)
    answer: Answer | None = None  # what the harness's server answered

    @property
    def payment_header(self) -> str | None:
        """The name (lower case) of the payment header the request carries, None when none."""
        return next((h for h in PAYMENT_HEADERS if h in self.headers), None)

    @property
    def payment(self) -> Any | None:
        """The decoded ``PAYMENT-SIGNATURE`` (or v1 ``X-PAYMENT``), None when there is none."""
        name = self.payment_header
        return None if name is None else decode_lenient(self.headers[name])


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None  # JSON-able, or bytes

    def encoded(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        body = (
            self.body
            if isinstance(self.body, bytes)
            else json.dumps(self.body if self.body is not None else {}).encode()
        )
        headers = [(k.lower().encode(), v.encode()) for k, v in self.headers]
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        return headers, body


Handler = Callable[[Seen], Awaitable[Answer]]

HANG_UP = Answer(0, body=b"")  # close the connection without answering (see the module's rules)
_HUNG_UP = "x402sim-hostile-hang-up"  # what the app returns to make uvicorn close the connection


class _QuietHangUps(logging.Filter):
    """Drops uvicorn's complaint about the value the app returns to hang up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and _HUNG_UP in record.args)


_QUIET = _QuietHangUps()


async def _not_configured(seen: Seen) -> Answer:
    return Answer(404, body={"error": "no case is running"})


class HostileServer:
    def __init__(self) -> None:
        self.handler: Handler = _not_configured
        self.seen: list[Seen] = []
        self.url = ""
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._held_lock = threading.Lock()  # holds start on the services' loop, end from the runner's
        logging.getLogger("uvicorn.error").addFilter(_QUIET)  # a filter added twice is kept once

        async def app(scope, receive, send) -> str | None:  # a plain function: uvicorn takes it for ASGI 3
            return await self._serve(scope, receive, send)

        self.app = app

    def reset(self) -> None:
        self.handler = _not_configured
        self.seen = []
        self.release()

    async def hold(self, bound: float) -> None:
        """Answer nothing until the case ends (``release``, called by ``reset``) or ``bound`` seconds
        pass, whichever comes first."""
        loop, released = asyncio.get_running_loop(), asyncio.Event()
        with self._held_lock:
            self._held.append((loop, released))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), bound)

    def release(self) -> None:
        """End every ``hold`` in progress (safe from any thread)."""
        with self._held_lock:
            held, self._held = self._held, []
        for loop, released in held:
            with contextlib.suppress(RuntimeError):  # the services' loop has already stopped
                loop.call_soon_threadsafe(released.set)

    @property
    def payments(self) -> list[Any]:
        return [s.payment for s in self.seen if s.payment is not None]

    @property
    def paid(self) -> list[Seen]:
        """The requests that carried a payment header, in arrival order."""
        return [s for s in self.seen if s.payment_header is not None]

    async def _serve(self, scope, receive, send) -> str | None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return None
        if scope["type"] != "http":
            return None
        body = await read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], headers, body)
        self.seen.append(seen)
        try:
            answer = await self.handler(seen)
        except Exception as exc:  # a case's handler broke: answer 500 and keep the reason as evidence
            answer = Answer(500, body={"error": f"harness handler failed: {type(exc).__name__}: {exc}"})
        if answer is HANG_UP:
            return _HUNG_UP  # seen.answer stays None: the client got no answer
        seen.answer = answer
        raw_headers, content = answer.encoded()
        await send_raw(send, answer.status, raw_headers, content)
        return None
