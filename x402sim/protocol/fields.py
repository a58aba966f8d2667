"""Annotated pydantic types for the scalar fields of x402 messages.

Job: one place that states what a well-formed amount, timestamp, address, nonce, signature or network looks
like, with the error text a user sees when it is not.

Rules:
- Integers that can exceed 2**53 (amounts, unix times) travel as decimal strings and are ``int`` in Python.
  From JSON only a string of ASCII digits is accepted (no sign, point, exponent, spaces or JSON numbers); from
  Python an ``int`` (never ``bool``) or such a string. Range: the EVM ``uint256``, [0, 2**256).
- Hex strings are kept exactly as given (an echoed message must round-trip verbatim); checks are syntactic.
- "From JSON" means pydantic's JSON mode or Python mode with :data:`WIRE_CONTEXT` (how ``models.py``
  validates parsed wire data), so a dict parsed from JSON gets exactly the rules of the JSON text.
- Every failure is a ``PydanticCustomError`` whose message names the problem; ``errors.py`` adds the path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from .networks import V1_NETWORKS, caip2_problem

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "UINT256_LIMIT",
    "WIRE_CONTEXT",
    "Address",
    "AtomicAmount",
    "Bytes32Hex",
    "Caip2Network",
    "HexBytes",
    "UnixTime",
    "V1Network",
    "WireInt",
    "from_wire_mode",
]

UINT256_LIMIT = 2**256
MAX_SIGNATURE_BYTES = 4096
_MAX_DIGITS = len(str(UINT256_LIMIT - 1))  # 78

#: Validation context marking data as parsed from the wire (JSON rules apply).
WIRE_CONTEXT: Mapping[str, bool] = MappingProxyType({"x402sim.wire": True})

_DIGITS = re.compile(r"[0-9]+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"0x([0-9a-fA-F]*)")


def _fail(kind: str, problem: str) -> PydanticCustomError:
    return PydanticCustomError(kind, problem)


def from_wire_mode(info: ValidationInfo) -> bool:
    """True when the value being validated came from JSON (directly or through :data:`WIRE_CONTEXT`)."""
    return info.mode == "json" or bool(info.context and info.context.get("x402sim.wire"))


def _uint256(value: Any, info: ValidationInfo) -> int:
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise _fail("uint_string", "expected a string of decimal digits (no sign, point or exponent)")
        if len(value) > _MAX_DIGITS or int(value) >= UINT256_LIMIT:
            raise _fail("uint_range", "out of range: must be below 2**256")
        return int(value)
    if type(value) is int and not from_wire_mode(info):
        if not 0 <= value < UINT256_LIMIT:
            raise _fail("uint_range", "out of range: must be in [0, 2**256)")
        return value
    raise _fail("uint_type", 'expected a decimal string such as "10000"')


def _wire_int(value: Any) -> int:
    # JSON numbers only: pydantic's lax int would take "5", 5.0 and true.
    if type(value) is not int:
        raise _fail("int_type", "expected a JSON integer")
    if value < 0:
        raise _fail("int_range", "must not be negative")
    return value


def _address(value: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _fail("address", "not a 20-byte hex address")
    return value


def _hex_string(value: object) -> tuple[str, str]:
    """``value`` as a 0x-prefixed hex string, and its digits."""
    match = _HEX.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _fail("hex", "not a 0x-prefixed hex string")
    return match.string, match.group(1)


def _bytes32(value: Any) -> str:
    text, digits = _hex_string(value)
    if len(digits) != 64:
        found = f"{len(digits) // 2} bytes" if len(digits) % 2 == 0 else f"{len(digits)} hex digits"
        raise _fail("bytes32", f"expected 32 bytes (64 hex digits), found {found}")
    return text


def _hex_bytes(value: Any) -> str:
    text, digits = _hex_string(value)
    if len(digits) % 2:
        raise _fail("hex", "odd number of hex digits")
    if not 1 <= len(digits) // 2 <= MAX_SIGNATURE_BYTES:
        raise _fail("hex", f"expected 1 to {MAX_SIGNATURE_BYTES} bytes, found {len(digits) // 2}")
    return text


def _caip2(value: Any) -> str:
    problem = caip2_problem(value)
    if problem is not None:
        raise _fail("caip2", problem)
    assert isinstance(value, str)  # caip2_problem refuses anything else
    return value


def _v1_network(value: Any) -> str:
    if not isinstance(value, str) or value not in V1_NETWORKS:
        raise _fail("v1_network", f"unknown v1 network (known: {', '.join(V1_NETWORKS)})")
    return value


_STRING_SCHEMA = WithJsonSchema({"type": "string"})

#: Token amount in atomic units; ``int`` in Python, decimal string on the wire.
AtomicAmount = Annotated[
    int,
    PlainValidator(_uint256),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+$"}),
]
#: Unix time in seconds (EVM ``uint256``); ``int`` in Python, decimal string on the wire.
UnixTime = Annotated[
    int,
    PlainValidator(_uint256),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+$"}),
]
#: Non-negative integer that is a JSON number on the wire (``maxTimeoutSeconds``).
WireInt = Annotated[int, PlainValidator(_wire_int), WithJsonSchema({"type": "integer", "minimum": 0})]
#: ``0x`` + 40 hex digits, any case, kept as given.
Address = Annotated[str, PlainValidator(_address), _STRING_SCHEMA]
#: ``0x`` + exactly 64 hex digits (an EIP-3009 nonce).
Bytes32Hex = Annotated[str, PlainValidator(_bytes32), _STRING_SCHEMA]
#: ``0x`` + an even number of hex digits, 1 to 4096 bytes (a signature).
HexBytes = Annotated[str, PlainValidator(_hex_bytes), _STRING_SCHEMA]
#: A CAIP-2 network (v2); ``eip155`` references are canonical decimal chain ids.
Caip2Network = Annotated[str, PlainValidator(_caip2), _STRING_SCHEMA]
#: A v1 network name such as ``base-sepolia``.
V1Network = Annotated[str, PlainValidator(_v1_network), _STRING_SCHEMA]
