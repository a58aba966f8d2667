"""What the three independent roles share: the wire encoding, strict field readers, the EIP-3009
typed data. Written from the x402 v2 specification, not from x402sim.

Reading rules (one place, so the three roles agree):

* A header value is standard base64 (RFC 4648 alphabet, padding required) of UTF-8 JSON.
* An amount or a unix time is a JSON string of decimal digits only: no sign, no decimal point, no
  exponent and no surrounding whitespace (the specification says "atomic units" and shows bare
  digit strings; it allows no other spelling, so none is tolerated), below 2**256.
* An address is ``0x`` and 40 hex digits (any case); a nonce ``0x`` and 64; a signature ``0x`` and
  130 (65 bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

UINT256 = 2**256
DIGITS = re.compile(r"[0-9]+")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")
SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
NETWORK = re.compile(r"eip155:([1-9][0-9]{0,18})")

TRANSFER_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


class Malformed(ValueError):
    """A message that does not have the shape the specification gives it; the text says where, the
    ``reason`` is the specification's code for it."""

    def __init__(self, message: str, reason: str = "invalid_payload") -> None:
        super().__init__(message)
        self.reason = reason


def encode_header(document: Any) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode("utf-8")).decode("ascii")


def decode_header(value: str) -> Any:
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
        return json.loads(raw.decode("utf-8"))
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise Malformed("not base64 of UTF-8 JSON") from exc


def obj(parent: Any, key: str, where: str) -> dict:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, dict):
        raise Malformed(f"{where}.{key} is not an object")
    return value


def text(parent: dict, key: str, where: str, pattern: re.Pattern | None = None) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise Malformed(f"{where}.{key} is missing or malformed")
    return value


def uint(parent: dict, key: str, where: str) -> int:
    value = int(text(parent, key, where, DIGITS))
    if value >= UINT256:
        raise Malformed(f"{where}.{key} does not fit in 256 bits")
    return value


def integer(parent: dict, key: str, where: str) -> int:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{where}.{key} is not a JSON integer")
    return value


def chain_id(network: str) -> int:
    match = NETWORK.fullmatch(network)
    if match is None:
        raise Malformed(f"network {network!r} is not eip155:<chain id>")
    return int(match.group(1))


def transfer_typed_data(name: str, version: str, chain: int, asset: str, authorization: dict) -> dict:
    """The EIP-712 message a client signs for ``transferWithAuthorization`` (authorization fields as
    integers where the type is a number, hex where it is bytes32)."""
    return {
        "types": TRANSFER_TYPES,
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": name, "version": version, "chainId": chain, "verifyingContract": asset},
        "message": authorization,
    }
