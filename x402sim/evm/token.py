"""Calldata and event encoding for the EIP-3009 token and Multicall3, by function signature.

Everything the rest of the package says to a token goes through here, so the ABI of USDC
(FiatToken v2) is written down once: selectors from signatures, argument encoding with eth-abi,
``Error(string)`` revert decoding and ``Transfer`` log decoding. Pure functions, no chain access.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from eth_abi import decode, encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

TRANSFER_TOPIC = keccak(b"Transfer(address,address,uint256)")
AUTHORIZATION_USED_TOPIC = keccak(b"AuthorizationUsed(address,bytes32)")
# Logged by the PYUSD-like token, instead of reverting, for a used or canceled nonce.
AUTHORIZATION_ALREADY_USED_TOPIC = keccak(b"AuthorizationAlreadyUsed(address,bytes32)")
ERROR_STRING_SELECTOR = keccak(b"Error(string)")[:4]

TRANSFER_WITH_AUTHORIZATION = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
)


@cache
def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def encode_call(signature: str, *args: object) -> bytes:
    """Calldata for ``signature`` (e.g. ``"balanceOf(address)"``) with ``args``."""
    types = signature[signature.index("(") + 1 : -1]
    arg_types = [t for t in types.split(",") if t] if types else []
    return selector(signature) + (encode(arg_types, list(args)) if arg_types else b"")


def decode_single(type_: str, data: bytes) -> object:
    return decode([type_], data)[0]


def transfer_with_authorization_call(
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    v: int,
    r: bytes,
    s: bytes,
) -> bytes:
    return encode_call(
        TRANSFER_WITH_AUTHORIZATION,
        to_checksum_address(from_),
        to_checksum_address(to),
        value,
        valid_after,
        valid_before,
        nonce,
        v,
        r,
        s,
    )


def revert_reason(output: bytes) -> str | None:
    """The message of an ``Error(string)`` revert, or None for any other revert data."""
    if output[:4] != ERROR_STRING_SELECTOR:
        return None
    try:
        return str(decode(["string"], output[4:])[0])
    except Exception:  # malformed revert data from a foreign contract is just "no reason"
        return None


@dataclass(frozen=True)
class Transfer:
    """One ERC-20 ``Transfer`` event."""

    token: str
    from_: str
    to: str
    value: int
    block_number: int
    tx_hash: bytes


def decode_transfer(
    address: bytes, topics: list[bytes], data: bytes, block_number: int, tx_hash: bytes
) -> Transfer | None:
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
        return None
    return Transfer(
        token=to_checksum_address(address),
        from_=to_checksum_address(topics[1][-20:]),
        to=to_checksum_address(topics[2][-20:]),
        value=int.from_bytes(data, "big"),
        block_number=block_number,
        tx_hash=tx_hash,
    )
