"""Payment channels of x402's ``batch-settlement`` scheme: identities, signed messages, calls, reads.

A channel is an escrow in the batch-settlement contract, named by the EIP-712 hash of its immutable
``ChannelConfig`` under the contract's domain ("x402 Batch Settlement", version "1", the chain id
and the contract's address). The payer deposits (through a deposit collector: EIP-3009
``receiveWithAuthorization`` or a Permit2 witness transfer bound to the channel), then signs one
cumulative ``Voucher`` per request; the receiver side claims the latest voucher (accounting only),
settles claimed funds to the receiver in one transfer, and may refund unclaimed escrow (a
``Refund`` carries the channel's refund nonce). The payer's escape hatch is a timed withdrawal.

Here: the digests computed directly (the tests compare them with eth-account's typed-data path and
with the contract's own views), signing, the contract's calldata, the collectors' data, the event
topics, and the reads of a channel's state through any chain with ``call(to, data)``. Rules: pure
functions, except that the reads call the chain they are given; addresses go in as hex strings of
any case and come out checksummed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi import decode, encode
from eth_utils import to_checksum_address

from ..errors import ChainError
from .contracts import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
)
from .eip712 import (
    RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    Domain,
    address_word,
    canonical,
    sign_digest,
    uint_word,
)
from .hashing import keccak
from .permit2 import permit2_domain_separator
from .token import CHANNEL_ERRORS, selector

__all__ = [
    "BATCH_SETTLEMENT_ADDRESS",
    "CHANNEL_ERRORS",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "ERC3009_DEPOSIT_COLLECTOR_ADDRESS",
    "EVENT_TOPICS",
    "MAX_WITHDRAW_DELAY",
    "MIN_WITHDRAW_DELAY",
    "PERMIT2_DEPOSIT_COLLECTOR_ADDRESS",
    "UINT128_MAX",
    "ChannelConfig",
    "ChannelState",
    "VoucherClaim",
    "batch_domain_separator",
    "channel_id",
    "claim_batch_digest",
    "claim_call",
    "claim_with_signature_call",
    "deposit_call",
    "deposit_witness_digest",
    "erc3009_collector_data",
    "erc3009_deposit_nonce",
    "finalize_withdraw_call",
    "initiate_withdraw_call",
    "multicall_call",
    "permit2_collector_data",
    "read_channel",
    "read_receiver",
    "receive_authorization_digest",
    "refund_call",
    "refund_digest",
    "refund_with_signature_call",
    "settle_call",
    "sign_claim_batch",
    "sign_refund",
    "sign_voucher",
    "voucher_digest",
]

DOMAIN_NAME = "x402 Batch Settlement"
DOMAIN_VERSION = "1"
MIN_WITHDRAW_DELAY = 15 * 60  # seconds
MAX_WITHDRAW_DELAY = 30 * 24 * 3600
UINT128_MAX = 2**128 - 1
UINT40_MAX = 2**40 - 1

_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_CHANNEL_CONFIG_TYPE = (
    "ChannelConfig(address payer,address payerAuthorizer,address receiver,"
    "address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
)
CHANNEL_CONFIG_TYPEHASH = keccak(_CHANNEL_CONFIG_TYPE.encode())
VOUCHER_TYPEHASH = keccak(b"Voucher(bytes32 channelId,uint128 maxClaimableAmount)")
REFUND_TYPEHASH = keccak(b"Refund(bytes32 channelId,uint256 nonce,uint128 amount)")
_CLAIM_ENTRY_TYPE = "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
CLAIM_ENTRY_TYPEHASH = keccak(_CLAIM_ENTRY_TYPE.encode())
CLAIM_BATCH_TYPEHASH = keccak(("ClaimBatch(ClaimEntry[] claims)" + _CLAIM_ENTRY_TYPE).encode())
# Permit2's witness transfer as the Permit2 deposit collector asks for it (the witness type string
# is the tail the collector hands Permit2; referenced structs sorted by name, as EIP-712 wants).
DEPOSIT_WITNESS_TYPE_STRING = (
    "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)"
)
_DEPOSIT_PERMIT_TYPEHASH = keccak(
    (
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,"
        "uint256 deadline," + DEPOSIT_WITNESS_TYPE_STRING
    ).encode()
)
DEPOSIT_WITNESS_TYPEHASH = keccak(b"DepositWitness(bytes32 channelId)")
_TOKEN_PERMISSIONS_TYPEHASH = keccak(b"TokenPermissions(address token,uint256 amount)")

CONFIG_ABI = "(address,address,address,address,address,uint40,bytes32)"
VOUCHER_CLAIM_ABI = f"(({CONFIG_ABI},uint128),bytes,uint128)"


EVENT_TOPICS = {
    name: keccak(signature.encode())
    for name, signature in {
        "ChannelCreated": f"ChannelCreated(bytes32,{CONFIG_ABI})",
        "ChannelClosed": f"ChannelClosed(bytes32,{CONFIG_ABI})",
        "Deposited": "Deposited(bytes32,address,uint128,uint128)",
        "Claimed": "Claimed(bytes32,address,uint128,uint128)",
        "Settled": "Settled(address,address,address,uint128)",
        "Refunded": "Refunded(bytes32,address,uint128)",
        "WithdrawInitiated": "WithdrawInitiated(bytes32,uint128,uint40)",
        "WithdrawFinalized": "WithdrawFinalized(bytes32,address,uint128)",
    }.items()
}


def _uint(name: str, value: int, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be a uint{bits}, got {value!r}")


def _bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {value!r}")


@dataclass(frozen=True)
class ChannelConfig:
    """A channel's immutable configuration; its hash is the channel's id. ``payer_authorizer`` is
    the EOA that signs vouchers (the zero address: the payer itself, which may be a contract
    wallet); ``receiver_authorizer`` signs claims and refunds. Addresses are kept checksummed."""

    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay: int
    salt: bytes = b"\x00" * 32

    def __post_init__(self) -> None:
        for name in ("payer", "payer_authorizer", "receiver", "receiver_authorizer", "token"):
            object.__setattr__(self, name, to_checksum_address(canonical(getattr(self, name))))
        _uint("withdraw_delay", self.withdraw_delay, 40)
        _bytes32("salt", self.salt)

    def as_abi(self) -> tuple[Any, ...]:
        """The config as the contract's ``ChannelConfig`` tuple argument."""
        return (
            self.payer,
            self.payer_authorizer,
            self.receiver,
            self.receiver_authorizer,
            self.token,
            self.withdraw_delay,
            self.salt,
        )

    def to_wire(self) -> dict[str, Any]:
        """The payload's ``channelConfig`` object (camelCase, ``salt`` as 0x-hex)."""
        return {
            "payer": self.payer,
            "payerAuthorizer": self.payer_authorizer,
            "receiver": self.receiver,
            "receiverAuthorizer": self.receiver_authorizer,
            "token": self.token,
            "withdrawDelay": self.withdraw_delay,
            "salt": "0x" + self.salt.hex(),
        }

    @classmethod
    def from_wire(cls, wire: Any) -> ChannelConfig:
        """Read a payload's ``channelConfig`` (``ValueError`` naming the first bad field)."""
        if not isinstance(wire, dict):
            raise ValueError("channelConfig must be an object")
        fields = {}
        for key, name in (
            ("payer", "payer"),
            ("payerAuthorizer", "payer_authorizer"),
            ("receiver", "receiver"),
            ("receiverAuthorizer", "receiver_authorizer"),
            ("token", "token"),
        ):
            value = wire.get(key)
            if not isinstance(value, str):
                raise ValueError(f"channelConfig.{key} must be an address string")
            try:
                fields[name] = to_checksum_address(canonical(value))
            except ValueError as exc:
                raise ValueError(f"channelConfig.{key} is not an address: {value!r}") from exc
        delay = wire.get("withdrawDelay")
        if isinstance(delay, str) and delay.isdigit():
            delay = int(delay)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= UINT40_MAX:
            raise ValueError("channelConfig.withdrawDelay must be a uint40")
        salt = wire.get("salt")
        if not isinstance(salt, str) or not salt.startswith("0x") or len(salt) != 66:
            raise ValueError("channelConfig.salt must be a 0x-prefixed 32-byte hex string")
        try:
            salt_bytes = bytes.fromhex(salt[2:])
        except ValueError as exc:
            raise ValueError("channelConfig.salt is not hex") from exc
        return cls(**fields, withdraw_delay=delay, salt=salt_bytes)


@dataclass(frozen=True)
class VoucherClaim:
    """One row of a claim: the payer's voucher (its ceiling and signature) and the cumulative
    amount the receiver side claims with it (at most the ceiling)."""

    config: ChannelConfig
    max_claimable: int
    signature: bytes
    total_claimed: int

    def __post_init__(self) -> None:
        _uint("max_claimable", self.max_claimable, 128)
        _uint("total_claimed", self.total_claimed, 128)

    def as_abi(self) -> tuple[Any, ...]:
        return ((self.config.as_abi(), self.max_claimable), self.signature, self.total_claimed)

    def to_wire(self) -> dict[str, Any]:
        """The ``claims[]`` row of a claim or refund settle payload."""
        return {
            "voucher": {"channel": self.config.to_wire(), "maxClaimableAmount": str(self.max_claimable)},
            "signature": "0x" + self.signature.hex(),
            "totalClaimed": str(self.total_claimed),
        }


@dataclass(frozen=True)
class ChannelState:
    """A channel as the contract holds it: escrow ``balance`` (deposits less withdrawals and
    refunds), cumulative ``total_claimed``, the pending withdrawal (amount, and the time it was
    initiated, 0 when none) and the next refund nonce."""

    channel_id: bytes
    balance: int = 0
    total_claimed: int = 0
    withdraw_amount: int = 0
    withdraw_requested_at: int = 0
    refund_nonce: int = 0

    @property
    def available(self) -> int:
        """Escrow not yet claimed: what a refund or withdrawal can still take."""
        return self.balance - self.total_claimed

    def to_wire(self) -> dict[str, Any]:
        """The ``channelState`` snapshot of a facilitator's answer (amounts as decimal strings)."""
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "balance": str(self.balance),
            "totalClaimed": str(self.total_claimed),
            "withdrawRequestedAt": self.withdraw_requested_at,
            "refundNonce": str(self.refund_nonce),
        }


# -- digests ----------------------------------------------------------------------------------------


def batch_domain_separator(chain_id: int, contract: str = BATCH_SETTLEMENT_ADDRESS) -> bytes:
    """The batch-settlement contract's EIP-712 domain separator on ``chain_id``."""
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + uint_word(chain_id)
        + address_word(contract)
    )


def _typed(chain_id: int, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + batch_domain_separator(chain_id) + struct_hash)


def channel_id(config: ChannelConfig, chain_id: int) -> bytes:
    """The channel's id: the EIP-712 hash of its config under the contract's domain."""
    struct_hash = keccak(
        CHANNEL_CONFIG_TYPEHASH
        + address_word(config.payer)
        + address_word(config.payer_authorizer)
        + address_word(config.receiver)
        + address_word(config.receiver_authorizer)
        + address_word(config.token)
        + uint_word(config.withdraw_delay)
        + config.salt
    )
    return _typed(chain_id, struct_hash)


def voucher_digest(chain_id: int, channel: bytes, max_claimable: int) -> bytes:
    """What a payer signs: ``Voucher(channelId, maxClaimableAmount)``."""
    _bytes32("channel", channel)
    _uint("max_claimable", max_claimable, 128)
    return _typed(chain_id, keccak(VOUCHER_TYPEHASH + channel + uint_word(max_claimable)))


def refund_digest(chain_id: int, channel: bytes, nonce: int, amount: int) -> bytes:
    """What a receiver authorizer signs for a relayed refund: ``Refund(channelId, nonce, amount)``."""
    _bytes32("channel", channel)
    _uint("nonce", nonce, 256)
    _uint("amount", amount, 128)
    return _typed(chain_id, keccak(REFUND_TYPEHASH + channel + uint_word(nonce) + uint_word(amount)))


def claim_batch_digest(chain_id: int, claims: Sequence[VoucherClaim]) -> bytes:
    """What a receiver authorizer signs for a relayed claim: ``ClaimBatch(ClaimEntry[] claims)``."""
    entries = b"".join(
        keccak(
            CLAIM_ENTRY_TYPEHASH
            + channel_id(c.config, chain_id)
            + uint_word(c.max_claimable)
            + uint_word(c.total_claimed)
        )
        for c in claims
    )
    return _typed(chain_id, keccak(CLAIM_BATCH_TYPEHASH + keccak(entries)))


def sign_voucher(key: bytes, chain_id: int, channel: bytes, max_claimable: int) -> bytes:
    """A payer authorizer's 65-byte signature of a voucher."""
    return sign_digest(key, voucher_digest(chain_id, channel, max_claimable))


def sign_refund(key: bytes, chain_id: int, channel: bytes, nonce: int, amount: int) -> bytes:
    """A receiver authorizer's 65-byte signature of a refund."""
    return sign_digest(key, refund_digest(chain_id, channel, nonce, amount))


def sign_claim_batch(key: bytes, chain_id: int, claims: Sequence[VoucherClaim]) -> bytes:
    """A receiver authorizer's 65-byte signature of a claim batch."""
    return sign_digest(key, claim_batch_digest(chain_id, claims))


# -- deposits ---------------------------------------------------------------------------------------


def erc3009_deposit_nonce(channel: bytes, salt: int) -> bytes:
    """The EIP-3009 nonce of a deposit through the EIP-3009 collector: it binds the channel."""
    _bytes32("channel", channel)
    _uint("salt", salt, 256)
    return keccak(channel + uint_word(salt))


def receive_authorization_digest(
    domain: Domain, payer: str, amount: int, valid_after: int, valid_before: int, nonce: bytes
) -> bytes:
    """What a payer signs for a deposit through the EIP-3009 collector: the token's
    ``ReceiveWithAuthorization`` to the collector (which must be the caller)."""
    struct_hash = keccak(
        RECEIVE_WITH_AUTHORIZATION_TYPEHASH
        + address_word(payer)
        + address_word(ERC3009_DEPOSIT_COLLECTOR_ADDRESS)
        + uint_word(amount)
        + uint_word(valid_after)
        + uint_word(valid_before)
        + nonce
    )
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


def erc3009_collector_data(valid_after: int, valid_before: int, salt: int, signature: bytes) -> bytes:
    """The EIP-3009 collector's ``collectorData``: (validAfter, validBefore, salt, signature)."""
    return encode(["uint256", "uint256", "uint256", "bytes"], [valid_after, valid_before, salt, signature])


def deposit_witness_digest(
    chain_id: int, token: str, amount: int, nonce: int, deadline: int, channel: bytes
) -> bytes:
    """What a payer signs for a deposit through the Permit2 collector: a Permit2 witness transfer
    whose spender is the collector and whose witness is the channel's id."""
    permitted = keccak(_TOKEN_PERMISSIONS_TYPEHASH + address_word(token) + uint_word(amount))
    struct_hash = keccak(
        _DEPOSIT_PERMIT_TYPEHASH
        + permitted
        + address_word(PERMIT2_DEPOSIT_COLLECTOR_ADDRESS)
        + uint_word(nonce)
        + uint_word(deadline)
        + keccak(DEPOSIT_WITNESS_TYPEHASH + channel)
    )
    return keccak(b"\x19\x01" + permit2_domain_separator(chain_id) + struct_hash)


def permit2_collector_data(nonce: int, deadline: int, signature: bytes, eip2612: bytes = b"") -> bytes:
    """The Permit2 collector's ``collectorData``: (nonce, deadline, signature, EIP-2612 segment),
    the segment empty or ``abi.encode(value, deadline, v, r, s)``."""
    return encode(["uint256", "uint256", "bytes", "bytes"], [nonce, deadline, signature, eip2612])


# -- calldata ---------------------------------------------------------------------------------------


def _call(name: str, types: tuple[str, ...], args: list[Any]) -> bytes:
    return selector(f"{name}({','.join(types)})") + encode(list(types), args)


def deposit_call(config: ChannelConfig, amount: int, collector: str, collector_data: bytes) -> bytes:
    _uint("amount", amount, 128)
    return _call(
        "deposit",
        (CONFIG_ABI, "uint128", "address", "bytes"),
        [config.as_abi(), amount, to_checksum_address(collector), collector_data],
    )


def claim_call(claims: Sequence[VoucherClaim]) -> bytes:
    return _call("claim", (f"{VOUCHER_CLAIM_ABI}[]",), [[c.as_abi() for c in claims]])


def claim_with_signature_call(claims: Sequence[VoucherClaim], signature: bytes) -> bytes:
    return _call(
        "claimWithSignature", (f"{VOUCHER_CLAIM_ABI}[]", "bytes"), [[c.as_abi() for c in claims], signature]
    )


def settle_call(receiver: str, token: str) -> bytes:
    return _call(
        "settle", ("address", "address"), [to_checksum_address(receiver), to_checksum_address(token)]
    )


def initiate_withdraw_call(config: ChannelConfig, amount: int) -> bytes:
    _uint("amount", amount, 128)
    return _call("initiateWithdraw", (CONFIG_ABI, "uint128"), [config.as_abi(), amount])


def finalize_withdraw_call(config: ChannelConfig) -> bytes:
    return _call("finalizeWithdraw", (CONFIG_ABI,), [config.as_abi()])


def refund_call(config: ChannelConfig, amount: int) -> bytes:
    _uint("amount", amount, 128)
    return _call("refund", (CONFIG_ABI, "uint128"), [config.as_abi(), amount])


def refund_with_signature_call(config: ChannelConfig, amount: int, nonce: int, signature: bytes) -> bytes:
    _uint("amount", amount, 128)
    return _call(
        "refundWithSignature",
        (CONFIG_ABI, "uint128", "uint256", "bytes"),
        [config.as_abi(), amount, nonce, signature],
    )


def multicall_call(calls: Sequence[bytes]) -> bytes:
    """Several of the contract's calls in one transaction, in order, all or none."""
    return _call("multicall", ("bytes[]",), [list(calls)])


# -- reads ------------------------------------------------------------------------------------------


class _CallResult(Protocol):
    @property
    def success(self) -> bool: ...
    @property
    def output(self) -> bytes: ...
    @property
    def revert_reason(self) -> str | None: ...


class _Calls(Protocol):
    def call(self, to: str, data: bytes, *, timestamp: int | None = None) -> _CallResult: ...


def _read(chain: _Calls, data: bytes, types: list[str], what: str) -> tuple[Any, ...]:
    result = chain.call(BATCH_SETTLEMENT_ADDRESS, data)
    if not result.success or len(result.output) < 32 * len(types):
        raise ChainError(f"reading {what} failed: {result.revert_reason or 'no result'}")
    return tuple(decode(types, result.output[: 32 * len(types)]))


def read_channel(chain: _Calls, channel: bytes) -> ChannelState:
    """The channel's state on ``chain`` (``ChainError`` when a read fails)."""
    _bytes32("channel", channel)
    balance, claimed = _read(
        chain, selector("channels(bytes32)") + channel, ["uint128", "uint128"], "channels"
    )
    amount, initiated = _read(
        chain,
        selector("pendingWithdrawals(bytes32)") + channel,
        ["uint128", "uint40"],
        "pendingWithdrawals",
    )
    (nonce,) = _read(chain, selector("refundNonce(bytes32)") + channel, ["uint256"], "refundNonce")
    return ChannelState(channel, balance, claimed, amount, initiated, nonce)


def read_receiver(chain: _Calls, receiver: str, token: str) -> tuple[int, int]:
    """(total claimed, total settled) for ``receiver`` in ``token``."""
    data = selector("receivers(address,address)") + address_word(receiver) + address_word(token)
    claimed, settled = _read(chain, data, ["uint128", "uint128"], "receivers")
    return int(claimed), int(settled)
