"""EIP-712 hashing, signing and recovery for EIP-3009 authorizations, on a fast path.

The reference path is eth-account's ``sign_typed_data`` / ``recover_message``: general, and slow
(it parses the typed-data JSON on every call). The fast path here hashes the fixed
``TransferWithAuthorization`` struct directly, caches domain separators, and signs and recovers
with libsecp256k1 through coincurve. The test suite proves with Hypothesis that both paths give
byte-identical signatures and the same recovered addresses.

Rules: pure functions of their arguments; no I/O, no clock. Addresses go in as hex strings of any
case and come out checksummed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from coincurve import PrivateKey, PublicKey
from eth_utils import to_canonical_address, to_checksum_address

from ..errors import WireError
from .hashing import keccak

if TYPE_CHECKING:
    from eth_typing import Address

DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak(
    b"ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)
# secp256k1 group order; a signature with s above half of it is malleable and FiatToken rejects it.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


class SignatureError(WireError, ValueError):
    """A signature that cannot be recovered: wrong length, bad v, or not a curve point."""


@dataclass(frozen=True)
class Domain:
    """An EIP-712 domain of an EIP-3009 token."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    @property
    def separator(self) -> bytes:
        return domain_separator(self.name, self.version, self.chain_id, self.verifying_contract.lower())


@dataclass(frozen=True)
class Authorization:
    """The fields of a TransferWithAuthorization, as integers and hex strings."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def struct_hash(self) -> bytes:
        return keccak(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH
            + address_word(self.from_)
            + address_word(self.to)
            + uint_word(self.value)
            + uint_word(self.valid_after)
            + uint_word(self.valid_before)
            + self.nonce
        )


@lru_cache(maxsize=256)
def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + uint_word(chain_id)
        + address_word(verifying_contract)
    )


def typed_data_digest(domain: Domain, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


@lru_cache(maxsize=1 << 14)
def authorization_digest(domain: Domain, auth: Authorization) -> bytes:
    """The digest signed for ``auth`` (memoised: a payment is hashed when signed, verified and settled)."""
    return typed_data_digest(domain, auth.struct_hash())


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """Sign a 32-byte digest; returns 65 bytes r || s || v with v in {27, 28} and low s."""
    raw = _private_key(private_key).sign_recoverable(digest, hasher=None)
    return raw[:64] + bytes([raw[64] + 27])


@lru_cache(maxsize=1 << 17)
def _private_key(key: bytes) -> PrivateKey:
    # Deriving the public key costs more than a signature (28 us against 18), so once per key. Room
    # for every payer of a big world (a shard of the x402scan month holds 36,000 agents, paying in
    # no order): with 16,384 keys, 55 % of its signatures derived their key again.
    return PrivateKey(key)


def recover_digest(digest: bytes, signature: bytes) -> str:
    """Recover the checksummed signer of a digest from a 65-byte signature (v in {0,1,27,28})."""
    if len(signature) != 65:
        raise SignatureError(f"expected a 65-byte signature, got {len(signature)} bytes")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise SignatureError(f"signature v must be 27 or 28, got {signature[64]}")
    signer = recover_signer(digest, v + 27, signature[:32], signature[32:64])
    if signer is None:
        raise SignatureError("signature does not recover a public key")
    return checksum(signer)


@lru_cache(maxsize=1 << 14)
def recover_signer(digest: bytes, v: int, r: bytes, s: bytes) -> bytes | None:
    """The 20-byte signer of ``digest`` (what the ecrecover precompile answers: v is 27 or 28), or
    None when no key is recovered. Memoised per (digest, v, r, s): a pure function, recovered once
    when a payment is verified and then settled."""
    try:
        public = PublicKey.from_signature_and_message(r + s + bytes([v - 27]), digest, hasher=None)
    except Exception:  # coincurve raises plain Exception when no point is recovered
        return None
    return keccak(public.format(compressed=False)[1:])[-20:]


@lru_cache(maxsize=1 << 17)
def checksum(address: str | bytes) -> str:
    """``address`` (hex of any case, or 20 bytes) in EIP-55 form. Cached: checksumming costs a keccak,
    and a run checksums the same agents', payees' and token's addresses over and over."""
    return to_checksum_address(address)


@lru_cache(maxsize=1 << 17)
def canonical(address: str | bytes) -> Address:
    """``address`` as its 20 bytes (cached, as ``checksum`` is)."""
    return to_canonical_address(address)


def address_of_public_key(uncompressed: bytes) -> str:
    return checksum(keccak(uncompressed[1:])[-20:])


def address_of_key(private_key: bytes) -> str:
    return address_of_public_key(PrivateKey(private_key).public_key.format(compressed=False))


def split_signature(signature: bytes) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte signature, v normalised to {27, 28} as FiatToken expects."""
    if len(signature) != 65:
        raise SignatureError(f"expected a 65-byte signature, got {len(signature)} bytes")
    v = signature[64]
    return (v + 27 if v in (0, 1) else v), signature[:32], signature[32:64]


def is_low_s(signature: bytes) -> bool:
    return int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N


DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def domain_typed_data(domain: Domain) -> dict[str, Any]:
    """A token's domain as the ``domain`` of full EIP-712 typed data (its type is ``DOMAIN_TYPE``)."""
    return {
        "name": domain.name,
        "version": domain.version,
        "chainId": domain.chain_id,
        "verifyingContract": to_checksum_address(domain.verifying_contract),
    }


def typed_data(domain: Domain, auth: Authorization) -> dict[str, Any]:
    """The same authorization as full EIP-712 typed data (the reference path's input)."""
    return {
        "types": {
            "EIP712Domain": DOMAIN_TYPE,
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": domain_typed_data(domain),
        "message": {
            "from": to_checksum_address(auth.from_),
            "to": to_checksum_address(auth.to),
            "value": auth.value,
            "validAfter": auth.valid_after,
            "validBefore": auth.valid_before,
            "nonce": auth.nonce,
        },
    }


def address_word(address: str) -> bytes:
    return bytes.fromhex(address[2:]).rjust(32, b"\x00")


def uint_word(value: int) -> bytes:
    return value.to_bytes(32, "big")
