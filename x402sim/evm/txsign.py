"""Sign EIP-1559 (type 2) transactions with libsecp256k1 directly: the facilitator's fast path.

eth-account's ``Account.sign_transaction`` validates and normalises a dict through several layers
on every call, which costs more than a payment's verification once that reads state directly. Here
the transaction is RLP-encoded (``rlpcodec``) and signed with coincurve. The test suite proves with Hypothesis
that the bytes are identical to eth-account's.

Rules: pure functions of their arguments, no I/O; the access list is always empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from coincurve import PrivateKey

from . import rlpcodec
from .eip712 import address_of_key, canonical
from .hashing import keccak

EIP1559_TYPE = b"\x02"
GWEI = 10**9


@dataclass(frozen=True)
class SignedTransaction:
    raw: bytes  # what eth_sendRawTransaction takes: 0x02 || rlp([..., yParity, r, s])
    hash: bytes


def sign_eip1559(
    key: bytes,
    *,
    chain_id: int,
    nonce: int,
    gas: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    to: str | None,
    value: int = 0,
    data: bytes = b"",
) -> SignedTransaction:
    """Sign a type-2 transaction with ``key``; ``to=None`` creates a contract."""
    fields: list[rlpcodec.Item] = [
        chain_id,
        nonce,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas,
        b"" if to is None else canonical(to),
        value,
        data,
        [],  # access list
    ]
    body = b"".join([rlpcodec.encode(field) for field in fields])  # the signed list starts the same
    digest = keccak(EIP1559_TYPE + rlpcodec.list_header(len(body)) + body)
    signature = _private_key(key).sign_recoverable(digest, hasher=None)  # r || s || recovery id, low s
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    tail = rlpcodec.encode(signature[64]) + rlpcodec.encode(r) + rlpcodec.encode(s)
    raw = EIP1559_TYPE + rlpcodec.list_header(len(body) + len(tail)) + body + tail
    return SignedTransaction(raw, keccak(raw))


@lru_cache(maxsize=64)
def _private_key(key: bytes) -> PrivateKey:
    return PrivateKey(key)


class Transacts:
    """``transact`` for a chain with ``chain_id``, ``pending_nonce``, ``base_fee`` and
    ``send_raw_transaction`` (``LocalChain``, the ledger, ``RpcChain``)."""

    chain_id: int

    if TYPE_CHECKING:  # provided by the chain classes; declared here for the type checker only

        @property
        def base_fee(self) -> int: ...

        def pending_nonce(self, address: str) -> int: ...

        def send_raw_transaction(self, raw: bytes) -> bytes: ...

    def transact(
        self, key: bytes, to: str | None, data: bytes, *, value: int = 0, gas: int = 500_000
    ) -> bytes:
        """Sign a transaction with ``key`` at its next pending nonce, offering twice the base fee and
        no tip, and send it; returns its hash."""
        signed = sign_eip1559(
            key,
            chain_id=self.chain_id,
            nonce=self.pending_nonce(address_of_key(key)),
            gas=gas,
            max_fee_per_gas=2 * self.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=to,
            value=value,
            data=data,
        )
        return self.send_raw_transaction(signed.raw)


@dataclass(frozen=True)
class DecodedTransaction:
    """The fields of a signed transaction that a relayer checks, with its recovered sender."""

    sender: str
    chain_id: int | None
    nonce: int
    gas: int
    max_fee_per_gas: int
    to: str | None
    value: int
    data: bytes


def decode_signed(raw: bytes) -> DecodedTransaction:
    """Decode a signed typed (EIP-2718) transaction and recover its sender, with eth-account;
    ``ValueError`` when it is not one or its signature does not recover."""
    from eth_account import Account
    from eth_account.typed_transactions import TypedTransaction
    from eth_utils import to_checksum_address
    from hexbytes import HexBytes

    if not raw or raw[0] > 0x7F:
        raise ValueError("not a typed (EIP-2718) transaction")
    try:
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        sender = Account.recover_transaction(raw)
    except Exception as exc:
        raise ValueError(f"not a signed transaction: {exc}") from None
    to = fields.get("to") or b""
    return DecodedTransaction(
        sender=to_checksum_address(sender),
        chain_id=fields.get("chainId"),
        nonce=int(fields["nonce"]),
        gas=int(fields["gas"]),
        max_fee_per_gas=int(fields.get("maxFeePerGas", fields.get("gasPrice", 0))),
        to=to_checksum_address(to) if to else None,
        value=int(fields.get("value", 0)),
        data=bytes(fields.get("data", b"")),
    )
