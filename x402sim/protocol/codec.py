"""HTTP header codec for x402 messages (no I/O).

Job: turn models into header values and header values back into models, find the x402 headers in a header
collection, and tell v1 from v2 challenges.

Rules:
- A header value is standard RFC 4648 base64 *with* padding (never URL-safe) of compact UTF-8 JSON.
- Decoding checks, in order: size (before any decoding, so an oversized value costs nothing), ASCII,
  base64, UTF-8, JSON, JSON object, then the model. Each step fails with ``ProtocolError`` whose
  ``where`` names the header; no other exception escapes, whatever the input.
- Headers are a mapping (any case; e.g. ``httpx.Headers`` or a plain dict) or a list of ``(name, value)``
  pairs, ``str`` or ``bytes`` (ASGI). Names compare case-insensitively; the first match wins.
- An undecodable payment header raises; whether that means "no payment" is the caller's decision.
- Trusted hops: a header value that x402sim's own roles encoded with ``vouch=True`` (the paying client's
  payment, the server's 402 and its settlement) decodes to the model that was encoded, without parsing
  it again, when the same process reads it back. The value is still made in full, so its size and bytes
  are what the wire carries; the size limit still applies; any other value (a forged, altered or
  foreign one) is decoded and validated in full. A model carrying state that the wire does not (a
  private attribute) is never vouched for. With ``CHECK_TRUSTED_HOPS`` (the test suite sets it, and
  ``x402sim`` does in a process started with ``X402SIM_CHECK_TRUSTED_HOPS=1``) every such read is
  decoded in full as well and must give an equal model. A role that sends a kept message again
  vouches for the value it wrote the first time (``encode_again``) instead of writing it again.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from . import _json
from .errors import ProtocolError
from .models import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    SettleResponse,
    WireModel,
)
from .recent import Recent

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "EXTENSION_RESPONSES",
    "PAYMENT_REQUIRED",
    "PAYMENT_RESPONSE",
    "PAYMENT_SIGNATURE",
    "X_PAYMENT",
    "X_PAYMENT_RESPONSE",
    "Headers",
    "decode_header",
    "decode_json_header",
    "detect_version",
    "encode_again",
    "encode_header",
    "get_header",
    "parse_payment_required",
    "payment_header_name",
    "read_payment",
    "read_settlement",
    "response_header_name",
]

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X_PAYMENT = "X-PAYMENT"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
# On a facilitator's /verify and /settle answers: base64 JSON object keyed by extension name. For the
# server only; never forwarded to a buyer.
EXTENSION_RESPONSES = "EXTENSION-RESPONSES"
DEFAULT_MAX_HEADER_BYTES = 8192

Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
M = TypeVar("M", bound=WireModel)


def payment_header_name(version: int) -> str:
    """The request header that carries the payment in protocol ``version``."""
    return _by_version(version, X_PAYMENT, PAYMENT_SIGNATURE)


def response_header_name(version: int) -> str:
    """The response header that carries the settlement result in protocol ``version``."""
    return _by_version(version, X_PAYMENT_RESPONSE, PAYMENT_RESPONSE)


def _by_version(version: int, v1: str, v2: str) -> str:
    if type(version) is int and version in (1, 2):
        return v1 if version == 1 else v2
    raise ProtocolError("x402Version", f"unsupported protocol version {version!r}")


# Header values vouched for (see the rules), the last 4,096: enough for every
# exchange in flight in a simulated economy; one read back later than that is decoded in full.
_vouched: Recent[str, WireModel] = Recent(4096)
_vouched_lock = threading.Lock()
CHECK_TRUSTED_HOPS = False  # True: decode vouched values in full too (the test suite sets it)


def encode_header(model: WireModel, *, vouch: bool = False) -> str:
    """Standard padded base64 of the compact JSON of ``model.to_wire()``. ``vouch``: ``model`` was
    built by x402sim's own role from validated parts (see the rules on trusted hops)."""
    value = _encode(model)
    if vouch:
        _vouch(value, model)
    return value


def encode_again(model: WireModel, value: str) -> str:
    """``value``, which ``encode_header(model, vouch=True)`` gave before, vouched for again: a role
    that keeps a message and sends it again (a server's 402 for a route) writes it once. Under
    ``CHECK_TRUSTED_HOPS`` it is written again and must be the same (a mutable part of ``model``
    changed in place would fail there)."""
    if CHECK_TRUSTED_HOPS and _encode(model) != value:
        raise AssertionError(f"a vouched {type(model).__name__} changed after it was encoded")
    _vouch(value, model)
    return value


def _encode(model: WireModel) -> str:
    return base64.b64encode(model.to_json().encode("utf-8")).decode("ascii")


def _vouch(value: str, model: WireModel) -> None:
    if not any(v is not None for v in (model.__pydantic_private__ or {}).values()):
        with _vouched_lock:
            _vouched.keep(value, model)


def _vouched_model(value: str | bytes, model_type: type[M], max_bytes: int) -> M | None:
    """The model a vouched header ``value`` was encoded from, if it is of ``model_type``."""
    if type(value) is not str or len(value) > max_bytes:
        return None
    model = _vouched.get(value)
    return model if type(model) is model_type else None


def decode_json_header(
    value: str | bytes, *, max_bytes: int = DEFAULT_MAX_HEADER_BYTES, where: str = "header"
) -> dict[str, Any]:
    """Decode a header value to its JSON object (every check of ``decode_header`` but the model)."""
    return _json.loads_object(_header_text(value, max_bytes, where), where)


def decode_header(
    value: str | bytes,
    model_type: type[M],
    *,
    max_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    where: str = "header",
) -> M:
    """Decode a header value into ``model_type``; raises only ``ProtocolError``."""
    known = _vouched_model(value, model_type, max_bytes)
    if known is not None and not CHECK_TRUSTED_HOPS:
        return known
    decoded = model_type.from_wire(_header_text(value, max_bytes, where), where)
    if known is not None and decoded != known:
        raise AssertionError(f"{where}: a vouched header decodes to another {model_type.__name__}")
    return known if known is not None else decoded


def _header_text(value: str | bytes, max_bytes: int, where: str) -> str:
    """The JSON text inside a header value: size, ASCII, base64 and UTF-8 checks."""
    if not isinstance(value, str | bytes | bytearray):
        raise ProtocolError(where, "expected a string header value")
    # For str, characters <= bytes; a non-ASCII str fails the next check anyway.
    if len(value) > max_bytes:
        raise ProtocolError(where, f"too large: {len(value)} bytes, limit {max_bytes}")
    if not value.isascii():
        raise ProtocolError(where, "not ASCII")
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    raw = raw.strip(b" \t")  # optional whitespace around an HTTP field value is not part of it
    if not raw:
        raise ProtocolError(where, "empty value")
    if len(raw) % 4:
        raise ProtocolError(where, "not padded base64 (length is not a multiple of 4)")
    try:
        text = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(where, "not standard base64 (only A-Z a-z 0-9 + / and = padding)") from None
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(where, "base64 content is not UTF-8") from None


def get_header(headers: Headers | None, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), as ``str``; None when absent."""
    if headers is None:
        return None
    wanted = name.lower()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if _text(key).lower() == wanted:
            return _text(value)
    return None


def _text(value: str | bytes) -> str:
    # HTTP field bytes are latin-1 by definition (RFC 9110); this never fails.
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


def detect_version(headers: Headers | None, body: bytes | str | dict[str, Any] | None) -> int:
    """Version of a 402 answer: a ``PAYMENT-REQUIRED`` header means 2, else the body's ``x402Version``."""
    if get_header(headers, PAYMENT_REQUIRED) is not None:
        return 2
    obj = _body_object(body)
    if obj is None or "x402Version" not in obj:
        raise ProtocolError("response", "no PAYMENT-REQUIRED header and no x402Version in the body")
    version = obj["x402Version"]
    if type(version) is not int or version not in (1, 2):
        raise ProtocolError("body.x402Version", "expected the JSON number 1 or 2")
    return version


def _body_object(body: bytes | str | dict[str, Any] | None) -> dict[str, Any] | None:
    if body is None or (isinstance(body, str | bytes | bytearray) and not body.strip()):
        return None
    if isinstance(body, dict):
        return body
    if isinstance(body, str | bytes | bytearray):
        return _json.loads_object(body, "body")
    raise ProtocolError("body", "expected JSON text or a dict")


def parse_payment_required(
    headers: Headers | None, body: bytes | str | dict[str, Any] | None
) -> PaymentRequired | PaymentRequiredV1:
    """The payment requirements of a 402 answer, v2 from its header or v1 from its body."""
    version = detect_version(headers, body)
    header = get_header(headers, PAYMENT_REQUIRED)
    if header is not None:
        return decode_header(header, PaymentRequired, where=f"header {PAYMENT_REQUIRED}")
    model_type = PaymentRequired if version == 2 else PaymentRequiredV1
    return model_type.from_wire(_body_object(body) or {}, "body")


def read_payment(headers: Headers | None) -> PaymentPayload | PaymentPayloadV1 | None:
    """The payment of a request: v2 from ``PAYMENT-SIGNATURE`` (preferred), v1 from ``X-PAYMENT``.

    None when neither header is present.
    """
    value = get_header(headers, PAYMENT_SIGNATURE)
    if value is not None:
        return decode_header(value, PaymentPayload, where=f"header {PAYMENT_SIGNATURE}")
    value = get_header(headers, X_PAYMENT)
    if value is not None:
        return decode_header(value, PaymentPayloadV1, where=f"header {X_PAYMENT}")
    return None


def read_settlement(headers: Headers | None) -> SettleResponse | None:
    """The settlement result from ``PAYMENT-RESPONSE`` or ``X-PAYMENT-RESPONSE``; None if neither."""
    for name in (PAYMENT_RESPONSE, X_PAYMENT_RESPONSE):
        value = get_header(headers, name)
        if value is not None:
            return decode_header(value, SettleResponse, where=f"header {name}")
    return None
