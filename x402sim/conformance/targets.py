"""Targets: the implementation under test, driven as a black box.

Kinds:

* ``ServiceCommand``: a server or facilitator started from a shell command with the official e2e
  harness's environment (plus ours). Ready when it prints a line containing ``listening`` (the
  official ``Server listening`` / ``Facilitator listening``) and its port accepts connections, or
  ``GET /health`` answers 200, within ``ready_timeout`` seconds. Stopped with ``POST /close``, then
  SIGTERM, then SIGKILL, each given a few seconds. Its output is kept (the tail goes into error messages).
* ``ServiceUrl``: a server or facilitator already running at a URL; never started or stopped.
* ``AsgiApp``: an ASGI app called in process through httpx's ASGI transport, with no port.
* ``ClientCommand``: a client command run once per case; it makes its request(s) and exits. A stdout
  line holding a JSON object with ``success`` is read as its verdict.

Rules: commands run in their own process group (so a shell script's children are stopped too), with
the caller's environment plus the harness's variables; a command that exits before it is ready, or
is not ready in time, raises ``TargetError`` naming the command and showing its last output lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from ..errors import UnavailableError
from ..http.guard import Asgi
from ..http.runner import LOOPBACK
from .results import Role, TargetInfo, TargetKind

OUTPUT_LINES = 200
STOP_GRACE = 5.0
HEALTH_POLL = 0.2


class TargetError(UnavailableError):
    """The target could not be started, reached or run; the message says which and why."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _Output:
    """A process's merged output, read by a thread: the last lines, and an event per readiness line."""

    def __init__(self, stream, marker: str) -> None:
        self.lines: deque[str] = deque(maxlen=OUTPUT_LINES)
        self.marker = marker.lower()
        self.ready = threading.Event()
        self.verdict: dict | None = None
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            if self.marker and self.marker in line.lower():
                self.ready.set()
            document = _json_object(line)
            if document is not None and "success" in document:
                self.verdict = document
        stream.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def tail(self, n: int = 15) -> str:
        return "\n".join(list(self.lines)[-n:])


def _json_object(line: str) -> dict | None:
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _spawn(cmd: str, env: dict[str, str], cwd: str | None) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            cmd,
            shell=True,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise TargetError(f"cannot start {cmd!r}: {exc}") from exc


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL after ``STOP_GRACE`` seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    _signal_group(proc, signal.SIGKILL)  # children a shell left behind


class InProcessTarget:
    """What every target served from this process answers alike: its ``info`` from its ``role``,
    ``kind`` and ``name``, no httpx transport of its own, always alive, no output to show."""

    role: Role
    kind: TargetKind
    name: str

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind=self.kind, spec=self.name, name=self.name)

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def alive(self) -> bool:
        return True

    def log_tail(self, n: int = 15) -> str:
        return ""


def _accepts(port: int) -> bool:
    """Whether something accepts connections on ``port`` of the loopback address (a server may say
    it listens a moment before it has bound its socket)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=HEALTH_POLL):
            return True
    except OSError:
        return False


@dataclass
class ServiceCommand:
    """A server or facilitator started from ``cmd``."""

    role: Role
    cmd: str
    cwd: str | None = None
    ready_timeout: float = 30.0
    port: int | None = None
    name: str | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)
    output: _Output | None = field(default=None, init=False)
    base_url: str = field(default="", init=False)

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind="command", spec=self.cmd, name=self.name or self.cmd)

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str]) -> str:
        port = self.port or free_port()
        env = {**env, "PORT": str(port)}
        self.base_url = f"http://{LOOPBACK}:{port}"
        self.proc = _spawn(self.cmd, env, self.cwd)
        self.output = _Output(self.proc.stdout, "listening")
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.output.ready.wait(HEALTH_POLL) and _accepts(port):
                    return self.base_url
                if self.proc.poll() is not None:
                    self.output.join(1.0)
                    raise TargetError(
                        f"{self.role} command {self.cmd!r} exited with code {self.proc.returncode} before it "
                        f"was ready; its last output:\n{self.output.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.base_url + "/health").status_code == 200:
                        return self.base_url
        self.stop()
        raise TargetError(
            f"{self.role} command {self.cmd!r} was not ready within {self.ready_timeout:g} s (no 'listening' "
            f"line, no answer at {self.base_url}/health); its last output:\n{self.output.tail()}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=2.0) as http:
                http.post(self.base_url + "/close")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        _end(self.proc)
        if self.output is not None:
            self.output.join(2.0)

    def log_tail(self, n: int = 15) -> str:
        return self.output.tail(n) if self.output else ""


@dataclass
class ServiceUrl:
    """A server or facilitator already running at ``url``."""

    role: Role
    url: str
    name: str | None = None

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind="url", spec=self.url, name=self.name or self.url)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def alive(self) -> bool:
        return True

    def start(self, env: dict[str, str]) -> str:
        try:
            httpx.get(self.base_url + "/", timeout=5.0)
        except httpx.HTTPError as exc:
            raise TargetError(f"{self.role} at {self.url} cannot be reached: {exc}") from exc
        return self.base_url

    def stop(self) -> None:
        pass

    def log_tail(self, n: int = 15) -> str:
        return ""


@dataclass
class AsgiApp:
    """An ASGI app tested in process (no port): the pytest plugin's way in."""

    role: Role
    app: Asgi
    name: str = "asgi app"
    base_url: str = "http://asgi.target"

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind="asgi", spec=repr(self.app)[:200], name=self.name)

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def alive(self) -> bool:
        return True

    def start(self, env: dict[str, str]) -> str:
        return self.base_url

    def stop(self) -> None:
        pass

    def log_tail(self, n: int = 15) -> str:
        return ""


@dataclass
class ClientRun:
    exit_code: int | None  # None: killed at the timeout
    output: str
    verdict: dict | None
    duration: float


@dataclass
class ClientCommand:
    """A client started once per case from ``cmd``."""

    cmd: str
    cwd: str | None = None
    timeout: float = 30.0
    name: str | None = None
    role: Role = "client"

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role="client", kind="command", spec=self.cmd, name=self.name or self.cmd)

    async def run(self, env: dict[str, str], timeout: float | None = None) -> ClientRun:
        return await asyncio.to_thread(self._run, env, timeout or self.timeout)

    def _run(self, env: dict[str, str], timeout: float) -> ClientRun:
        started = time.monotonic()
        proc = _spawn(self.cmd, env, self.cwd)
        output = _Output(proc.stdout, "")
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        _end(proc)
        output.join(2.0)
        return ClientRun(code, output.tail(40), output.verdict, round(time.monotonic() - started, 3))
