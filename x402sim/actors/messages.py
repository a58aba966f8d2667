"""HTTP messages and the effects through which roles ask the outside world for things.

The roles never call each other. A role's operation is a generator ("steps"): it *yields* an
effect (``Send`` a request, ``Verify`` or ``Settle`` at a facilitator, ``Handle`` a request with the
application, ``Approve`` a payment the governor holds for a human, ``GiveFeedback`` on chain after
delivery) and is resumed with the answer.
Whoever drives the generator decides how the answer
is obtained: a direct call in the in-process testbed, a delay in the SimPy world, an HTTP round
trip behind real sockets. A driver may also throw ``Unreachable`` into the generator to say the
other side did not answer; roles turn that into a value (for the server, a 502).

This is the whole contract between roles and worlds; ``driver`` holds the interface a world
implements to answer these effects, and the runners that step a role through it.

``canonical_path`` is how a request path names a route, whatever its spelling (see there); a spelling
that another server could read as a different path is refused with ``AmbiguousPath``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_to_bytes

from ..protocol import AnyPaymentPayload, AnyRequirements

if TYPE_CHECKING:
    from ..governance import Decision

Headers = tuple[tuple[str, str], ...]


def _get(headers: Headers, name: str) -> str | None:
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class AmbiguousPath(ValueError):
    """A request path that servers could read as different paths: it names no route."""


@lru_cache(maxsize=4096)  # a pure function of a string; a world names few paths, many times
def canonical_path(path: str) -> str:
    """The path a request names, for matching routes: the query dropped; each ``/``-separated segment
    percent-decoded once and cut at its first ``;`` (parameters); ``.`` and ``..`` segments resolved
    (RFC 3986, never above the root); empty segments, hence a trailing ``/``, dropped.

    Raises ``AmbiguousPath`` for a spelling that decoders disagree on: a broken escape, a segment
    that is not UTF-8 once decoded, that decodes to a ``/``, a ``\\`` or a control character, or that
    still holds an escape once decoded (double encoding, ``%252F``)."""
    segments: list[str] = []
    for part in path.split("?", 1)[0].split("/"):
        if _BROKEN_ESCAPE.search(part):
            raise AmbiguousPath(f"malformed percent-escape in path segment {part!r}")
        try:
            text = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise AmbiguousPath(f"path segment {part!r} is not UTF-8 once decoded") from None
        if "/" in text or "\\" in text:
            raise AmbiguousPath(f"path segment {part!r} holds a path separator")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise AmbiguousPath(f"path segment {part!r} holds a control character")
        if _ESCAPE.search(text):
            raise AmbiguousPath(f"path segment {part!r} is percent-encoded twice")
        name = text.split(";", 1)[0]
        if name == "..":
            if segments:
                segments.pop()
        elif name not in ("", "."):
            segments.append(name)
    return "/" + "/".join(segments)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return _get(self.headers, name)

    def with_header(self, name: str, value: str) -> HttpRequest:
        wanted = name.lower()
        kept = [(k, v) for k, v in self.headers if k.lower() != wanted]
        return HttpRequest(self.method, self.path, (*kept, (name, value)), self.body)

    @property
    def route_key(self) -> str:
        """``"METHOD /path"`` without the query string, as sent: how routes are named. (A server
        matches routes by ``canonical_key``.)"""
        return f"{self.method.upper()} {self.path.split('?', 1)[0]}"

    @property
    def canonical_key(self) -> str:
        """``"METHOD /path"`` with the path's ``canonical_path``; raises ``AmbiguousPath``."""
        return f"{self.method.upper()} {canonical_path(self.path)}"


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps(data, separators=...), built once


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return _get(self.headers, name)

    def json(self) -> Any:
        return json.loads(self.body)

    @classmethod
    def of_json(cls, status: int, data: Any, headers: Headers = ()) -> HttpResponse:
        body = _COMPACT.encode(data).encode()
        return cls(status, (("Content-Type", "application/json"), *headers), body)


# -- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Client -> server: send this request, resume with the ``HttpResponse``."""

    request: HttpRequest


@dataclass(frozen=True)
class Verify:
    """Server -> facilitator ``/verify``; resume with a ``VerifyResponse``."""

    payload: AnyPaymentPayload
    requirements: AnyRequirements


@dataclass(frozen=True)
class Settle:
    """Server -> facilitator ``/settle``; resume with a ``SettleResponse``."""

    payload: AnyPaymentPayload
    requirements: AnyRequirements


@dataclass(frozen=True)
class Handle:
    """Server -> its application: produce the response for a paid (or free) request."""

    request: HttpRequest


@dataclass(frozen=True)
class Approve:
    """Client -> a human (or a simulated approver): may this payment go ahead? ``decision`` is the
    governor's ``needs-approval`` decision; resume with an ``Approval``."""

    decision: Decision


@dataclass(frozen=True)
class Approval:
    """The answer to ``Approve``: ``granted`` or not, by whom, and the unix time the answer came
    (None: no time passed), which the client then signs with."""

    granted: bool
    by: str = "approver"
    now: int | None = None


@dataclass(frozen=True)
class GiveFeedback:
    """Client -> the ERC-8004 reputation registry: post this feedback on the agent that served it
    (``giveFeedback``'s arguments; the file behind ``feedback_uri`` carries the proof of payment).
    The driver sends the transaction from the client's wallet; resume with its hash, or None when
    it posts nothing."""

    agent_id: int
    value: int
    value_decimals: int
    tag1: str
    tag2: str
    endpoint: str
    feedback_uri: str
    feedback_hash: bytes

    def arguments(self) -> tuple[int, int, int, str, str, str, str, bytes]:
        """``giveFeedback``'s arguments, in order (as ``evm.erc8004.give_feedback`` takes them)."""
        return (
            self.agent_id,
            self.value,
            self.value_decimals,
            self.tag1,
            self.tag2,
            self.endpoint,
            self.feedback_uri,
            self.feedback_hash,
        )


Effect = Send | Verify | Settle | Handle | Approve | GiveFeedback
R = TypeVar("R")
Steps = Generator[Effect, Any, R]


@dataclass
class Unreachable(Exception):
    """Thrown into a role by a driver when the other side did not answer.

    ``may_have_landed``: the request may have reached the other side and had its effect (the
    connection broke or the answer was lost after sending, a transaction was sent): a caller must
    find out before doing it again. ``cause`` is the transport's own error, if there was one."""

    what: str
    detail: str = ""
    may_have_landed: bool = False
    cause: BaseException | None = None

    def __str__(self) -> str:
        return f"{self.what} unreachable" + (f": {self.detail}" if self.detail else "")


__all__ = [
    "AmbiguousPath",
    "Approval",
    "Approve",
    "Effect",
    "GiveFeedback",
    "Handle",
    "HttpRequest",
    "HttpResponse",
    "Send",
    "Settle",
    "Steps",
    "Unreachable",
    "Verify",
    "canonical_path",
]
