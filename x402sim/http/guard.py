"""What keeps one request from hurting a service: a last-resort error answer and bounded admission.

``service_app`` builds every x402sim ASGI app. A handler that raises despite everything gets one
logged line and a JSON 500 that says ``Connection: close`` (so a client never reuses a connection
the server is about to drop), and the exception goes no further.

``Admission`` bounds the work in flight. At most ``limit`` requests work at once and at most
``queue`` more wait, each for at most ``wait`` seconds; a request beyond that is refused at once,
before it costs anything (for a paid request: before any verify or settle), and the caller answers
503 with ``Retry-After``. A service that takes money must refuse early rather than accept work it
cannot finish within its clients' timeouts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, cast

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("x402sim.http")
T = TypeVar("T")

# An ASGI application: ``await app(scope, receive, send)`` (what uvicorn serves and httpx calls in process).
Asgi = Callable[[Any, Any, Any], Coroutine[Any, Any, None]]


class ServiceApp(Protocol):
    """What ``service_app`` returns: an ASGI app with the Starlette app's ``state``."""

    state: State

    def __call__(self, scope: Any, receive: Any, send: Any) -> Coroutine[Any, Any, None]: ...


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": f"internal error while answering {request.method} {request.url.path}"},
        status_code=500,
        headers={"Connection": "close"},
    )


def service_app(name: str, routes: Sequence, *, lifespan: Callable | None = None) -> ServiceApp:
    """A Starlette app for ``routes`` that never lets an exception reach the server."""
    app = Starlette(routes=list(routes), lifespan=lifespan, exception_handlers={Exception: _internal_error})

    async def guarded(scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        try:
            await app(scope, receive, send)
        except Exception:
            # Starlette has already answered with _internal_error when it could; log once, here.
            log.exception("%s: unexpected failure on %s %s", name, scope.get("method"), scope.get("path"))

    guarded.state = app.state  # type: ignore[attr-defined]
    return cast(ServiceApp, guarded)  # a coroutine function given its ``state`` just above


class Admission:
    """At most ``limit`` requests at work, ``queue`` waiting up to ``wait`` seconds; the rest refused.

    Waiters are served first come, first served; each waits on a future of the running loop, so one
    ``Admission`` works in whatever loop serves it."""

    def __init__(self, limit: int, queue: int, wait: float, retry_after: int = 1) -> None:
        if limit < 1 or queue < 0 or wait < 0 or retry_after < 1:
            raise ValueError("admission: limit and retry_after must be >= 1, queue and wait >= 0")
        self.limit, self.queue, self.wait, self.retry_after = limit, queue, wait, retry_after
        self.working = 0
        self.refused = 0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> bool:
        """Take a slot (True) or be refused (False); a True must be followed by ``leave``."""
        if self.working < self.limit and not self._waiters:
            self.working += 1
            return True
        if len(self._waiters) >= self.queue:
            self.refused += 1
            return False
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.wait)
            return True
        except TimeoutError:
            if turn.done():
                return True  # handed a slot just as the wait ran out
            turn.cancel()
            self.refused += 1
            return False
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a slot, but the request is gone: pass it on
            turn.cancel()
            raise
        finally:
            if turn in self._waiters:
                self._waiters.remove(turn)

    async def admit(self, work: Callable[[], Awaitable[T]], refused: Callable[[], T]) -> T:
        """``await work()`` in a slot, or ``refused()`` at once when no slot can be had."""
        if not await self.enter():
            return refused()
        try:
            return await work()
        finally:
            self.leave()

    def leave(self) -> None:
        """Give the slot to the first waiter still waiting, or free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.working -= 1

    def stats(self) -> dict[str, int]:
        return {"working": self.working, "waiting": self.waiting, "refused": self.refused}
