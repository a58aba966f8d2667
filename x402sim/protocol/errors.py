"""The one exception of the protocol package.

Job: give every kind of malformed input (bad base64, bad JSON, a field of the wrong shape) a single typed
error that says *where* the problem is and *what* it is.

Rules:
- Parsing and validation in ``x402sim.protocol`` raise ``ProtocolError`` for bad input and nothing else.
- ``where`` names the place in wire terms: a dotted field path with camelCase wire names and list indices
  (``accepts.0.payTo``), optionally after a label for the carrier
  (``header PAYMENT-SIGNATURE accepted.payTo``).
- A rejected *payment* is not an error: that is a reason code (see ``reasons.py``).
"""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import WireError

__all__ = ["ProtocolError", "from_validation_error", "join_where"]


class ProtocolError(WireError, ValueError):
    """Malformed protocol input: ``str(err) == f"{err.where}: {err.problem}"``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where = where
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def join_where(prefix: str, path: str) -> str:
    """Join a location prefix and a field path.

    A prefix that is itself a field path (no spaces) continues with a dot (``payload`` + ``nonce`` ->
    ``payload.nonce``); a label such as ``header X-PAYMENT`` is followed by a space.
    """
    if not prefix or not path:
        return prefix or path
    return f"{prefix}{' ' if ' ' in prefix else '.'}{path}"


_FRIENDLY = {
    "missing": "required field is missing",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a JSON array",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "json_invalid": "not valid JSON",
    "json_type": "expected JSON text",
}


def from_validation_error(err: ValidationError, where: str = "", *, root: str = "") -> ProtocolError:
    """Turn a pydantic ``ValidationError`` into a ``ProtocolError`` about its first error.

    ``where`` is prefixed to the error's location; ``root`` names the place when both are empty.
    """
    errors = err.errors(include_url=False, include_context=False, include_input=False)
    if not errors:  # pragma: no cover - pydantic never raises an empty ValidationError
        return ProtocolError(where or root or "input", "invalid")
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"])
    problem = _FRIENDLY.get(first["type"], first["msg"])
    return ProtocolError(join_where(where, path) or root or "input", problem)
