"""Evidence: the HTTP exchanges a case made (x402 headers decoded) and the facts that decided it.

Rules:

* Every request a case sends goes through ``Recorder.send``, which records it whatever happens: the
  response, or the transport error when none came. Nothing is retried.
* x402 headers are decoded leniently for reading (base64 then JSON); a value that does not decode is
  kept as ``{"undecodable": text}``, since an undecodable header is itself evidence.
* Bodies are kept as JSON when they parse, else as text, cut at ``MAX_BODY_CHARS``; every exchange
  records its elapsed time.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

import httpx

from ..protocol import PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE
from .results import Evidence, Exchange, Message

X402_HEADERS = tuple(h.lower() for h in (PAYMENT_REQUIRED, PAYMENT_SIGNATURE, PAYMENT_RESPONSE, X_PAYMENT))
X402_HEADERS += (X_PAYMENT_RESPONSE.lower(),)
MAX_BODY_CHARS = 4096
MAX_HEADER_CHARS = 512


def decode_lenient(value: str) -> Any:
    """The JSON inside an x402 header value, or ``{"undecodable": value}``."""
    try:
        text = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=False)
        return json.loads(text.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return {"undecodable": value[:MAX_HEADER_CHARS]}


def body_value(content: bytes | str | None) -> Any:
    if not content:
        return None
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    try:
        return json.loads(text) if len(text) <= MAX_BODY_CHARS * 4 else text[:MAX_BODY_CHARS]
    except ValueError:
        return text[:MAX_BODY_CHARS]


def message_of(headers: httpx.Headers | dict, **fields) -> Message:
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else list(headers.items())
    plain: dict[str, str] = {}
    x402: dict[str, Any] = {}
    for name, value in items:
        lower = name.lower()
        if lower in X402_HEADERS:
            decoded = decode_lenient(value)
            x402[lower] = decoded if lower not in x402 else [x402[lower], decoded]
        plain[lower] = (plain[lower] + ", " if lower in plain else "") + value[:MAX_HEADER_CHARS]
    return Message(headers=plain, x402=x402, **fields)


class Recorder:
    """Sends requests for a case and keeps each exchange in ``evidence``."""

    def __init__(self, http: httpx.AsyncClient, evidence: Evidence) -> None:
        self.http = http
        self.evidence = evidence
        self.signer = None  # signs each request in place before it is recorded (Web Bot Auth targets)

    async def send(
        self,
        label: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        content: bytes | str | None = None,
        json_body: Any = None,
        timeout: float | None = None,
        sign: bool = True,
    ) -> httpx.Response | None:
        """The response, or None when the transport failed (the error is recorded). With a ``signer``
        the request is signed first unless ``sign`` is False (a case sending it unsigned, or signed
        its own way)."""
        if json_body is not None:
            content = json.dumps(json_body)
            headers = [*(_pairs(headers)), ("content-type", "application/json")]
        request = self.http.build_request(
            method, url, headers=_pairs(headers), content=content, timeout=timeout or httpx.USE_CLIENT_DEFAULT
        )
        if sign and self.signer is not None:
            self.signer(request)
        exchange = Exchange(
            label=label,
            request=message_of(
                request.headers, method=method, url=str(request.url), body=body_value(content)
            ),
        )
        self.evidence.exchanges.append(exchange)
        started = time.perf_counter()
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}".strip()
            exchange.elapsed = round(time.perf_counter() - started, 4)
            return None
        exchange.elapsed = round(time.perf_counter() - started, 4)
        exchange.response = message_of(
            response.headers, status=response.status_code, body=body_value(response.content)
        )
        return response


def _pairs(headers) -> list[tuple[str, str]]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)
