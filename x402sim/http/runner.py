"""Run ASGI apps on real loopback sockets, all on one event loop in one background thread.

Rules:

* Every app of one ``Services`` shares a single asyncio loop, so handlers that touch the embedded
  chain never run concurrently (the chain is not thread-safe). Apps must use async endpoints.
* Sockets are bound in the calling thread before anything starts, so "port in use" is reported at
  once as ``ServiceError`` naming the host and port. Port 0 picks a free port.
* Binding anything but loopback needs ``allow_public=True``; ``start`` returns only when every
  server accepts connections, and ``stop`` returns when they have shut down.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn

from ..errors import UnavailableError
from .guard import Asgi

LOOPBACK = "127.0.0.1"
BACKLOG = 2048  # connections waiting for accept (uvicorn's default): hundreds of agents connect at once


class ServiceError(UnavailableError):
    """A service could not start: the message names what and where."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_url(url: str, what: str, *, allow_remote: bool = False) -> str:
    """``url`` if it names a loopback host (or ``allow_remote``); else ServiceError naming it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(f"{what} {url!r}: expected an http:// or https:// URL")
    if not allow_remote and not is_loopback(parts.hostname):
        raise ServiceError(
            f"{what} {url}: {parts.hostname} is not a loopback address; x402sim talks to this machine only "
            "unless --allow-remote is given"
        )
    return url


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only for sockets that say so,
    # and with Nagle on every small response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ServiceError(f"cannot listen on {host}:{port}: {why}") from exc
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Entry:
    name: str
    app: Asgi
    sock: socket.socket
    server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Services:
    """A set of named ASGI apps served together: ``add`` them, ``start``, read ``urls``, ``stop``."""

    def __init__(
        self, host: str = LOOPBACK, *, allow_public: bool = False, log_level: str = "warning"
    ) -> None:
        if not is_loopback(host) and not allow_public:
            raise ServiceError(f"refusing to bind {host}: only loopback unless explicitly allowed")
        self.host = host
        self.log_level = log_level
        self._entries: list[_Entry] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def add(self, name: str, app: Asgi, port: int = 0) -> str:
        """Bind ``port`` now (0 = any free port) and return the URL ``app`` will be served at."""
        entry = _Entry(name, app, bind(self.host, port))
        self._entries.append(entry)
        return entry.url

    @property
    def urls(self) -> dict[str, str]:
        return {e.name: e.url for e in self._entries}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "services are not started"
        return self._loop

    def start(self) -> dict[str, str]:
        self._thread = threading.Thread(target=self._run, name="x402sim-services", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise ServiceError(f"services failed to start: {self._error}") from self._error
        return self.urls

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() or ignored after stop
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        servers: list[uvicorn.Server] = []
        for entry in self._entries:
            config = uvicorn.Config(entry.app, log_level=self.log_level, lifespan="auto", access_log=False)
            # No signal handlers to turn off: uvicorn installs them only in the main thread, and the
            # owner of the process handles signals.
            entry.server = uvicorn.Server(config)
            servers.append(entry.server)
        tasks = [
            asyncio.create_task(s.serve(sockets=[e.sock]))
            for s, e in zip(servers, self._entries, strict=True)
        ]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.005)  # uvicorn exposes startup only as a flag
        errors = [exc for t in tasks if t.done() and (exc := t.exception()) is not None]
        if errors:
            raise errors[0]
        self._ready.set()
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        for entry in self._entries:
            if entry.server is not None:
                entry.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for entry in self._entries:
            entry.sock.close()

    def __enter__(self) -> Services:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
