"""Strict JSON for the wire: the one parser and the one serializer of the protocol package.

Rules:
- Only RFC 8259 JSON: ``NaN``, ``Infinity`` and numbers that overflow a float are rejected, so anything parsed
  here can be serialized again.
- Nesting is capped at :data:`MAX_DEPTH` before parsing, so the outcome never depends on the interpreter's
  recursion limit (x402 messages are a few levels deep).
- Failures raise :class:`ProtocolError` naming ``where``; nothing else escapes (deep nesting, huge integers
  and invalid UTF-8 included).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ProtocolError

MAX_DEPTH = 100
# An escape pair, a quote or a bracket: enough to track string state and nesting in one linear pass.
_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} overflows a float")
    return value


def loads(data: str | bytes, where: str) -> Any:
    """Parse JSON text (``bytes`` must be UTF-8)."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(where, "not UTF-8") from None
    if _too_deep(data):
        raise ProtocolError(where, f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError(where, "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        # Keep the problem short: JSONDecodeError messages carry positions, others may carry input.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
        raise ProtocolError(where, f"not valid JSON: {detail}") from None


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth, in_string = 0, False
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def loads_object(data: str | bytes, where: str) -> dict[str, Any]:
    """Parse JSON text that must be an object."""
    value = loads(data, where)
    if not isinstance(value, dict):
        raise ProtocolError(where, f"expected a JSON object, found {_json_type(value)}")
    return value


def dumps(value: Any, where: str = "value") -> str:
    """Compact JSON text; non-JSON values raise :class:`ProtocolError`."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise ProtocolError(where, "nested too deeply to serialize as JSON") from None
    except (TypeError, ValueError) as exc:
        raise ProtocolError(where, f"not JSON-serializable: {str(exc)[:80]}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"
