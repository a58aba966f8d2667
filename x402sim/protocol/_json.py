"""Strict JSON for the wire: the one parser and the one serializer of the protocol package.

Rules:
- Only RFC 8259 JSON: ``NaN``, ``Infinity`` and numbers that overflow a float are rejected, so anything parsed
  here can be serialized again.
- Nesting is capped at :data:`MAX_DEPTH` before parsing, so the outcome never depends on the interpreter's
  recursion limit (x402 messages are a few levels deep).
- Strings must be Unicode text: a lone surrogate escape (``"\\ud800"``) is refused, naming its path, because
  such a string can never be encoded as UTF-8 again (it would fail later, far from the input).
- Failures raise :class:`ProtocolError` naming ``where``; nothing else escapes (deep nesting, huge integers,
  lone surrogates and invalid UTF-8 included). Every service parses untrusted JSON here.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from .errors import ProtocolError, join_where

MAX_DEPTH = 100
# An escape pair, a quote or a bracket: enough to track string state and nesting in one linear pass.
_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} overflows a float")
    return value


def loads(data: str | bytes | bytearray, where: str) -> Any:
    """Parse JSON text (``bytes`` must be UTF-8)."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(where, "not UTF-8") from None
    if _too_deep(data):
        raise ProtocolError(where, f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError(where, "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        # Keep the problem short: JSONDecodeError messages carry positions, others may carry input.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
        if "integer string conversion" in detail:
            detail = f"a number has more than {sys.get_int_max_str_digits()} digits"
        raise ProtocolError(where, f"not valid JSON: {detail}") from None
    if "\\u" in data or _SURROGATE.search(data):  # an escape, or a str handed in from Python
        _refuse_surrogates(value, where)
    return value


def _refuse_surrogates(value: Any, where: str, path: str = "") -> None:
    """Raise naming the first key or string (depth-first) that holds a lone surrogate."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise ProtocolError(join_where(where, path) if path else where, "lone surrogate in a string")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _SURROGATE.search(key):
                raise ProtocolError(where, f"lone surrogate in a key at {path or 'the top level'}")
            _refuse_surrogates(item, where, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_surrogates(item, where, f"{path}.{i}" if path else str(i))


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


def loads_object(data: str | bytes | bytearray, where: str) -> dict[str, Any]:
    """Parse JSON text that must be an object."""
    value = loads(data, where)
    if not isinstance(value, dict):
        raise ProtocolError(where, f"expected a JSON object, found {_json_type(value)}")
    return value


_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once, not at every call


def dumps(value: Any, where: str = "value") -> str:
    """Compact JSON text; non-JSON values raise :class:`ProtocolError`."""
    try:
        return _COMPACT.encode(value)
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
