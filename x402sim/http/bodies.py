"""Reading request bodies for every service: a size limit, strict JSON, and clients that hang up.

Nothing past the limit is kept, JSON goes through the protocol's strict parser (depth, number and
surrogate limits), and a client that disconnects mid-body is a ``BodyError`` like any other bad
body, not a traceback in the log.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from ..errors import WireError
from ..protocol import ProtocolError, parse_json


class BodyError(WireError):
    """A request body that cannot be used; ``status`` is the HTTP answer it deserves."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


async def read_body(request: Request, limit: int, *, too_large_status: int = 413) -> bytes:
    """The body; ``BodyError`` when it is (or says it will be) larger than ``limit`` bytes, or the
    client went away before sending all of it."""
    declared = request.headers.get("content-length", "")
    too_large = BodyError(too_large_status, f"request body exceeds the limit of {limit} bytes")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        raise BodyError(400, "client disconnected before sending the whole body") from None
    return bytes(body)


async def read_json_body(request: Request, limit: int) -> Any:
    """The parsed JSON body; ``BodyError`` (400) naming what is wrong with it."""
    body = await read_body(request, limit, too_large_status=400)
    try:
        return parse_json(body, "request body")
    except ProtocolError as exc:
        raise BodyError(400, str(exc)) from None
