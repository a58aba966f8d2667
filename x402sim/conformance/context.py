"""What a case works with: the harness, the target's URL, a recording HTTP client, and verdict helpers.

Rules: a case talks to the target only through ``send`` (so every exchange is evidence), reads the
chain only through ``harness`` (JSON-RPC), and records each fact it decides on with ``fact``. It
ends by returning (passed), ``fail``/``check`` (failed) or ``skip`` (does not apply).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from .catalog import Case, CaseFailed, CaseSkipped
from .evidence import Recorder
from .harness import Harness
from .results import Evidence

ROUTE_KINDS = ("main", "second", "failing")


@dataclass
class Endpoint:
    """A paid route of a server target. ``transfer_method`` and ``extensions`` are what its
    test.config.json entry declares (``eip3009`` and none when absent, as in the official e2e harness);
    ``failing`` marks the route whose handler fails after payment (FAILING_PATH)."""

    path: str
    method: str = "GET"
    transfer_method: str = "eip3009"
    extensions: tuple[str, ...] = ()
    failing: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class CaseContext:
    case: Case
    harness: Harness
    target: Any
    base_url: str
    http: httpx.AsyncClient
    rng: random.Random
    evidence: Evidence = field(default_factory=Evidence)
    trust: frozenset[str] = frozenset()  # the trust features the target advertises (see ``trust``)
    transport: str = "http"  # what carries ``send`` to the target (``catalog.TRANSPORTS``)
    mcp: Any = None  # over MCP: the client session with the target (the MCP cases use it directly)
    a2a: Any = None  # over A2A: the ``a2a_kit.A2aLink`` to the target agent (the A2A cases use it)

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.http, self.evidence)

    # -- verdicts ---------------------------------------------------------------------------------

    def check(self, condition: object, message: str) -> None:
        if not condition:
            raise CaseFailed(message)

    def require_answer(self, response: httpx.Response | None, label: str) -> httpx.Response:
        """``response``, or the case fails when there is none: the request labelled ``label`` got no
        answer, and the message names the transport's error as recorded for it (a timeout, a
        refused or a dropped connection)."""
        if response is None:
            errors = [e.error for e in self.evidence.exchanges if e.label == label and e.error]
            self.fail(f"{label}: no answer ({errors[-1] if errors else 'the transport failed'})")
        return response

    def fail(self, message: str) -> NoReturn:
        raise CaseFailed(message)

    def skip(self, reason: str) -> NoReturn:
        raise CaseSkipped(reason)

    def fact(self, name: str, value: Any) -> Any:
        """Record an on-chain (or other) fact the verdict rests on, and return it."""
        self.evidence.chain[name] = value
        return value

    def note(self, text: str) -> None:
        self.evidence.notes.append(text)

    # -- HTTP -------------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base_url + path_or_url

    async def send(self, label: str, method: str, path_or_url: str, **kwargs) -> httpx.Response | None:
        return await self.recorder.send(label, method, self.url(path_or_url), **kwargs)
