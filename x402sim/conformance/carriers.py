"""Which cases run over which transport, and why the others do not.

A case's rule is about what is paid (replay, amounts, payee, settlement, lost answers, the client's
refusals) or about how HTTP carries it (paths, headers, status codes, caching). The first kind runs
over every transport the harness speaks; the second is HTTP's alone, and a run over another
transport reports it skipped with the reason written here.

Rules:

* A case that declares ``transports=`` (``catalog.case``) runs over those and no other (the MCP
  cases: ``("mcp",)``; the A2A cases: ``("a2a",)``).
* Otherwise the first pattern of ``HTTP_ONLY`` that matches its id (a glob, or an id prefix) makes it
  HTTP's alone, for the reason beside it; a case no pattern matches runs over every transport.
* A client target over MCP is served the harness's (often hostile) server as a paid tool server over
  streamable HTTP (``mcp_kit.ClientFront``); its cases run over MCP unless listed here.
* A client target over A2A is served the harness's server as a paid agent on loopback
  (``a2a_kit.A2aFront``); a server target over A2A is reached by ``a2a_kit.A2aBridge`` (a paid
  request: the unpaid message opening a task, the payment on it). The same cases run over A2A as over
  MCP: the patterns below name HTTP's reasons, which hold for every carrier that is not HTTP (an A2A
  message has no headers, paths or status codes either; a malformed payment is judged by
  ``server.a2a.malformed-payload``, the payment-required task by ``server.a2a.payment-required``).
* The facilitator's cases are HTTP's by nature (the facilitator API is HTTP, whatever carries the
  buyer's call), so a facilitator run is always over HTTP; ``--transport mcp`` (or ``a2a``) for a
  facilitator is refused before anything starts.
* Adding a transport is adding it to ``catalog.TRANSPORTS`` and, where a case cannot run over it,
  a pattern here or a ``transports=`` on the case.
"""

from __future__ import annotations

import fnmatch

from .catalog import DEFAULT_TRANSPORT, TRANSPORTS, Case

FACILITATOR_HTTP = "the facilitator API is HTTP whatever carries the buyer's call"
_HEADERS = "about HTTP headers (duplicates, size, encoding), which another transport does not carry"
_PATHS = "about spellings of an HTTP path; the MCP cases judge tool names instead (server.mcp.names-not-free)"
_STATUS = "judges an HTTP status code, which another transport does not have"
_OVER_MCP_402 = "about the PAYMENT-REQUIRED header; over MCP: server.mcp.payment-required"
_MALFORMED = (
    "about a PAYMENT-SIGNATURE header that cannot be decoded; over MCP the payment is JSON in _meta "
    "(server.mcp.malformed-payment)"
)

# id pattern -> why the cases it matches run over HTTP only; first match wins
HTTP_ONLY: dict[str, str] = {
    "facilitator": FACILITATOR_HTTP,
    "server.headers.duplicate-*": _HEADERS,
    "server.headers.oversized*": _HEADERS,
    "server.caching": "about HTTP caching (Cache-Control)",
    "server.routes": _PATHS,
    "server.payment.path-variants-not-free": _PATHS,
    "server.payment.query-not-free": _PATHS,
    "server.handshake.base64-standard": _HEADERS,
    "server.handshake.header-present": _OVER_MCP_402,
    "server.handshake.resource-url": "about the resource URL of an HTTP path",
    "server.handshake.unpriced-path-free": _PATHS,
    "server.handshake.v1-body": "x402 v1 is HTTP only (the MCP transport is x402 v2)",
    "server.payment.bad-json": _MALFORMED,
    "server.payment.undecodable-*": _MALFORMED,
    "server.payment.malformed-*": _MALFORMED,
    "server.settle.response-decodes": _HEADERS,
    "server.settle.redirect-settled": "about an HTTP redirect (3xx), which a tool result cannot be",
    "server.extensions.extension-responses-not-forwarded": _HEADERS,
    "server.extensions.payment-id-conflict": _STATUS + " (409)",
    "server.extensions.payment-id-malformed": _STATUS + " (400)",
    "server.extensions.payment-id-required": _STATUS + " (400)",
    "server.extensions.payment-id-cached": "compares two HTTP answers byte for byte",
    "server.facilitator.malformed-reply-502": _STATUS + " (502)",
    "server.permit2.allowance-412": _STATUS + " (412)",
    "server.trust": "RFC 9421 signs HTTP messages, and the AP2 reference target is an HTTP server",
    "client.pays.v1-header": "x402 v1 is HTTP only (the MCP transport is x402 v2)",
    "client.pays.v2-header": "about the PAYMENT-SIGNATURE header name; over MCP the payment is in _meta",
    "client.pays.same-origin": "about the URL a payment is sent to; an MCP client calls its session's tool",
    "client.pays.nothing-for-free": "about a PAYMENT-REQUIRED header on a 200; a tool result has no headers",
    "client.refuses.malformed-402": "about a PAYMENT-REQUIRED header that cannot be decoded",
    "client.trust": "the ERC-8004 reference client is an HTTP client",
}


def _matches(case_id: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(case_id, pattern) or case_id.startswith(pattern.rstrip(".") + ".")


def transports_of(case: Case) -> tuple[str, ...]:
    """The transports ``case`` runs over."""
    if case.transports is not None:
        return case.transports
    if http_only_reason(case) is not None:
        return (DEFAULT_TRANSPORT,)
    return TRANSPORTS


def http_only_reason(case: Case) -> str | None:
    """Why ``case`` runs over HTTP only (its first matching ``HTTP_ONLY`` pattern), None when it does not."""
    if case.transports is not None:
        return None
    return next((reason for pattern, reason in HTTP_ONLY.items() if _matches(case.id, pattern)), None)


def not_over(case: Case, transport: str) -> str | None:
    """Why ``case`` does not run over ``transport``, None when it does."""
    if transport in transports_of(case):
        return None
    reason = http_only_reason(case)
    if reason is not None:
        return f"HTTP only: {reason}"
    return f"a case of {' and '.join(transports_of(case))} only"


def parse_transport(value: str) -> str:
    """``value`` checked against ``TRANSPORTS``; ``ValueError`` naming the known ones."""
    if value not in TRANSPORTS:
        raise ValueError(f"unknown transport {value!r}; expected one of {', '.join(TRANSPORTS)}")
    return value
