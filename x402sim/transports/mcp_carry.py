"""x402 over MCP, sans-IO: a tool call as the request the roles read, their answer as a tool result.

The roles speak in ``HttpRequest`` / ``HttpResponse``; MCP carries the same payment in a tool call's
``_meta`` and the same challenge in a tool result (x402 ``specs/transports-v2/mcp.md``). This module
is the whole translation, both ways, with no MCP SDK and no I/O, so the paid tool server, the paying
MCP client, the simulator and the conformance harness share one reading of the transport.

Rules:

* A tool is a route: tool ``name`` is the route ``POST /<name>`` of a ``ResourceServer`` whose
  ``base_url`` is ``TOOL_BASE_URL``, so its 402s name the resource ``mcp://tool/<name>`` as the SDKs
  do. The arguments travel as the request's JSON body; ``_meta["x402/payment"]`` travels as the
  ``PAYMENT-SIGNATURE`` header (base64 of its JSON), which is where the server role reads a payment.
  Tool names are MCP's (1-128 of ``[A-Za-z0-9_.-]``); any other name is refused before a request is
  made, so no spelling of a path can reach another route.
* The server's answer becomes a ``CallToolResult`` (as a JSON object):
  - a challenge (``PAYMENT-REQUIRED``: 402, or 412 for a missing Permit2 allowance) is
    ``isError: true`` with the ``PaymentRequired`` as ``structuredContent`` and, identical, as JSON
    in ``content[0].text``. A failed settlement's ``PAYMENT-RESPONSE`` rides along in ``_meta`` under
    ``x402/payment-response`` and, as the Python SDK writes it, inside ``structuredContent``;
  - a 2xx is the tool's own result (the handler's JSON body: ``content``, ``structuredContent``),
    with the settlement in ``_meta["x402/payment-response"]``;
  - a 400 (a payment that cannot be read) raises ``McpProtocolError``: the driver answers the call
    with a JSON-RPC error (``INVALID_PARAMS``), as MCP treats malformed parameters;
  - any other status (the tool failed, the facilitator was unreachable, overload, a reused
    payment identifier) is ``isError: true`` with the error as text and nothing settled.
* Back on the client side, ``response_of_result`` reads a result into the ``HttpResponse`` the client
  role expects: a payment-required result (``structuredContent``, else ``content[0].text``, holding
  ``x402Version`` and ``accepts``) is a 402 with its ``PAYMENT-REQUIRED`` header; a successful result is
  a 200 whose body is the result without ``_meta``; ``_meta["x402/payment-response"]`` becomes
  ``PAYMENT-RESPONSE``. ``call_of_request`` reads the client role's request back into the tool call
  it stands for.
* A tool's handler answers the ``Handle`` effect with ``tool_answer(...)`` (a 200 carrying the
  result) or ``tool_failure(...)`` (a 500: nothing is settled for a tool error).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..actors.messages import HttpRequest, HttpResponse
from ..protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    ProtocolError,
    decode_json_header,
)

__all__ = [
    "INVALID_PARAMS",
    "MCP_PAYMENT",
    "MCP_PAYMENT_RESPONSE",
    "TOOL_BASE_URL",
    "McpProtocolError",
    "ToolCall",
    "call_of_request",
    "payment_required_of_result",
    "response_of_result",
    "result_of_response",
    "tool_answer",
    "tool_failure",
    "tool_request",
    "tool_route_key",
    "valid_tool_name",
]

MCP_PAYMENT = "x402/payment"
MCP_PAYMENT_RESPONSE = "x402/payment-response"
TOOL_BASE_URL = "mcp://tool"
INVALID_PARAMS = -32602  # JSON-RPC: invalid method parameters

_TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_CHALLENGES = (402, 412)


class McpProtocolError(ValueError):
    """A tool call the server cannot read as x402 (a malformed ``_meta["x402/payment"]``): answered
    with a JSON-RPC error of ``code``, never with a tool result."""

    def __init__(self, message: str, code: int = INVALID_PARAMS) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ToolCall:
    """One ``tools/call``: the tool, its arguments and the ``_meta`` it carries (None: none)."""

    name: str
    arguments: dict[str, Any]
    meta: dict[str, Any] | None = None

    @property
    def payment(self) -> Any:
        """What ``_meta["x402/payment"]`` holds (None: no payment)."""
        return None if self.meta is None else self.meta.get(MCP_PAYMENT)


def valid_tool_name(name: object) -> bool:
    return isinstance(name, str) and _TOOL_NAME.fullmatch(name) is not None


def tool_route_key(name: str) -> str:
    """The route a tool is sold as: ``POST /<name>``."""
    if not valid_tool_name(name):
        raise ValueError(f"MCP tool name {name!r}: expected 1-128 of A-Z a-z 0-9 _ . -")
    return f"POST /{name}"


def _header_of(value: Any) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode("ascii")


def tool_request(call: ToolCall) -> HttpRequest:
    """The request the server role reads for ``call`` (raises ``McpProtocolError`` for a tool name
    MCP does not allow, ``ValueError`` never)."""
    if not valid_tool_name(call.name):
        raise McpProtocolError(f"tool name {call.name!r} is not an MCP tool name")
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    payment = call.payment
    if payment is not None:
        headers += ((PAYMENT_SIGNATURE, _header_of(payment)),)
    body = json.dumps(call.arguments, separators=(",", ":")).encode()
    return HttpRequest("POST", f"/{call.name}", headers, body)


def call_of_request(request: HttpRequest) -> ToolCall:
    """The tool call the client role's ``request`` stands for (the inverse of ``tool_request``)."""
    name = request.path.split("?", 1)[0].lstrip("/")
    arguments = json.loads(request.body) if request.body else {}
    if not isinstance(arguments, dict):
        raise ValueError(f"tool {name!r}: arguments must be a JSON object")
    header = request.header(PAYMENT_SIGNATURE)
    meta = None if header is None else {MCP_PAYMENT: decode_json_header(header, where=PAYMENT_SIGNATURE)}
    return ToolCall(name, arguments, meta)


def _text(value: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value if isinstance(value, str) else json.dumps(value)}]


def tool_answer(result: Any, structured: Mapping[str, Any] | None = None) -> HttpResponse:
    """A tool's successful answer: ``result`` as text content (a string as it is, anything else as
    JSON), and ``structured`` (or a dict ``result`` itself) as ``structuredContent``."""
    body: dict[str, Any] = {"content": _text(result)}
    if structured is None and isinstance(result, Mapping):
        structured = result
    if structured is not None:
        body["structuredContent"] = dict(structured)
    return HttpResponse.of_json(200, body)


def tool_failure(message: str) -> HttpResponse:
    """A tool's error: the server role passes a status >= 400 through and settles nothing."""
    return HttpResponse.of_json(500, {"isError": True, "content": _text(message)})


def _error_text(response: HttpResponse) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("content"), list):
            return "".join(str(c.get("text", "")) for c in data["content"] if isinstance(c, dict))
        if "error" in data:
            return str(data["error"])
    return response.body.decode("utf-8", "replace") or f"HTTP {response.status}"


def result_of_response(response: HttpResponse) -> dict[str, Any]:
    """The ``CallToolResult`` (a JSON object) for the server role's ``response``; raises
    ``McpProtocolError`` for a 400 (the payment could not be read)."""
    settlement_header = response.header(PAYMENT_RESPONSE)
    settlement = None
    if settlement_header is not None:
        settlement = decode_json_header(settlement_header, where=PAYMENT_RESPONSE)
    required_header = response.header(PAYMENT_REQUIRED)
    if response.status in _CHALLENGES and required_header is not None:
        required = decode_json_header(required_header, where=PAYMENT_REQUIRED)
        if settlement is not None:
            required = {**required, MCP_PAYMENT_RESPONSE: settlement}
        result: dict[str, Any] = {"isError": True, "structuredContent": required, "content": _text(required)}
        if settlement is not None:
            result["_meta"] = {MCP_PAYMENT_RESPONSE: settlement}
        return result
    if response.status == 400:
        raise McpProtocolError(f"invalid {MCP_PAYMENT}: {_error_text(response)}")
    if not 200 <= response.status < 300:
        return {"isError": True, "content": _text(_error_text(response))}
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("content"), list):
        answer = {"content": _text(response.body.decode("utf-8", "replace"))}
    result = {k: v for k, v in answer.items() if k != "_meta"}
    if settlement is not None:
        result["_meta"] = {MCP_PAYMENT_RESPONSE: settlement}
    return result


def payment_required_of_result(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``PaymentRequired`` a payment-required result holds (``structuredContent`` first, else
    ``content[0].text``), None when it holds none."""
    if not result.get("isError"):
        return None
    structured = result.get("structuredContent")
    candidates: list[Any] = [structured]
    content = result.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = content[0].get("text")
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                candidates.append(json.loads(text))
    for candidate in candidates:
        if isinstance(candidate, dict) and "x402Version" in candidate and "accepts" in candidate:
            return candidate
    return None


def response_of_result(result: Mapping[str, Any]) -> HttpResponse:
    """The ``HttpResponse`` the client role reads for a tool ``result`` (a JSON object)."""
    meta = result.get("_meta")
    settlement = meta.get(MCP_PAYMENT_RESPONSE) if isinstance(meta, Mapping) else None
    required = payment_required_of_result(result)
    if required is not None and settlement is None:
        settlement = required.get(MCP_PAYMENT_RESPONSE)
    headers: tuple[tuple[str, str], ...] = ()
    if settlement is not None:
        headers += ((PAYMENT_RESPONSE, _header_of(settlement)),)
    if required is not None:
        challenge = {k: v for k, v in required.items() if k != MCP_PAYMENT_RESPONSE}
        return HttpResponse.of_json(402, {}, ((PAYMENT_REQUIRED, _header_of(challenge)), *headers))
    body = {k: v for k, v in result.items() if k != "_meta"}
    status = 500 if result.get("isError") else 200
    return HttpResponse.of_json(status, body, headers)


def protocol_error(exc: ProtocolError) -> McpProtocolError:
    """A codec error met while carrying a call, as the JSON-RPC error a driver answers with."""
    return McpProtocolError(f"{exc.where}: {exc.problem}")
