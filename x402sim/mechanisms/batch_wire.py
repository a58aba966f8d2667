"""The wire objects of the ``batch-settlement`` scheme, read strictly and written canonically.

A ``batch-settlement`` payment's ``payload`` is one of three client payloads (``deposit``: open or
top up a channel, with a voucher; ``voucher``: the next cumulative voucher; ``refund``: a
zero-charge voucher asking for unclaimed escrow back) or, from a resource server to its
facilitator's ``/settle``, one of three server payloads (``claim``: voucher claims to record;
``settle``: sweep a receiver's claimed funds; ``refund`` completed with the refund nonce and the
claims). Amounts travel as decimal strings, hashes and signatures as 0x-hex.

``parse_payload`` gives the typed payload or raises ``PayloadError`` whose ``kind`` names the
payload type whose shape is wrong (the SDKs' ``invalid_batch_settlement_evm_<kind>_payload``), and
``"type"`` for an unknown type. Every ``to_wire`` gives what ``parse_payload`` reads back equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from ..evm.channels import ChannelConfig, ChannelState, VoucherClaim
from ..evm.eip712 import canonical

DEPOSIT, VOUCHER, REFUND, CLAIM, SETTLE = "deposit", "voucher", "refund", "claim", "settle"
CLIENT_TYPES = (DEPOSIT, VOUCHER, REFUND)  # what /verify judges
SETTLE_TYPES = (DEPOSIT, CLAIM, SETTLE, REFUND)  # what /settle executes
_UINT128 = 2**128


class PayloadError(ValueError):
    """A payload whose shape is wrong; ``kind`` is its type (``"type"``: the type itself is unknown)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _uint(value: Any, what: str, kind: str, bound: int = 2**256) -> int:
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
        raise PayloadError(kind, f"{what} must be an unsigned integer (a decimal string), got {value!r}")
    return value


def _hex(value: Any, what: str, kind: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PayloadError(kind, f"{what} must be a 0x-prefixed hex string")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise PayloadError(kind, f"{what} is not hex") from exc
    if size is not None and len(raw) != size:
        raise PayloadError(kind, f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _address(value: Any, what: str, kind: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(kind, f"{what} must be an address string")
    try:
        return to_checksum_address(canonical(value))
    except ValueError as exc:
        raise PayloadError(kind, f"{what} is not an address: {value!r}") from exc


def _object(value: Any, what: str, kind: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(kind, f"{what} must be an object")
    return value


def _config(value: Any, kind: str) -> ChannelConfig:
    try:
        return ChannelConfig.from_wire(value)
    except ValueError as exc:
        raise PayloadError(kind, str(exc)) from exc


def _hex_str(raw: bytes) -> str:
    return "0x" + raw.hex()


@dataclass(frozen=True)
class Voucher:
    """A payer's signed cumulative ceiling for one channel."""

    channel_id: bytes
    max_claimable: int
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "channelId": _hex_str(self.channel_id),
            "maxClaimableAmount": str(self.max_claimable),
            "signature": _hex_str(self.signature),
        }

    @classmethod
    def from_wire(cls, wire: Any, kind: str) -> Voucher:
        wire = _object(wire, "voucher", kind)
        return cls(
            _hex(wire.get("channelId"), "voucher.channelId", kind, 32),
            _uint(wire.get("maxClaimableAmount"), "voucher.maxClaimableAmount", kind, _UINT128),
            _hex(wire.get("signature"), "voucher.signature", kind),
        )


@dataclass(frozen=True)
class Erc3009Deposit:
    """A ``receiveWithAuthorization`` to the EIP-3009 collector; its nonce is derived from the
    channel id and ``salt``."""

    valid_after: int
    valid_before: int
    salt: int
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "erc3009Authorization": {
                "validAfter": str(self.valid_after),
                "validBefore": str(self.valid_before),
                "salt": "0x" + self.salt.to_bytes(32, "big").hex(),
                "signature": _hex_str(self.signature),
            }
        }


@dataclass(frozen=True)
class Permit2Deposit:
    """A Permit2 witness transfer to the Permit2 collector, its witness the channel id."""

    payer: str
    token: str
    amount: int
    spender: str
    nonce: int
    deadline: int
    channel_id: bytes
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "permit2Authorization": {
                "from": self.payer,
                "permitted": {"token": self.token, "amount": str(self.amount)},
                "spender": self.spender,
                "nonce": str(self.nonce),
                "deadline": str(self.deadline),
                "witness": {"channelId": _hex_str(self.channel_id)},
                "signature": _hex_str(self.signature),
            }
        }


def _authorization(wire: Any) -> Erc3009Deposit | Permit2Deposit:
    kind = DEPOSIT
    wire = _object(wire, "deposit.authorization", kind)
    erc3009, permit2 = wire.get("erc3009Authorization"), wire.get("permit2Authorization")
    if (erc3009 is None) == (permit2 is None):
        raise PayloadError(
            kind, "deposit.authorization needs exactly one of erc3009Authorization, permit2Authorization"
        )
    if erc3009 is not None:
        a = _object(erc3009, "erc3009Authorization", kind)
        salt = _hex(a.get("salt"), "erc3009Authorization.salt", kind, 32)
        return Erc3009Deposit(
            _uint(a.get("validAfter"), "erc3009Authorization.validAfter", kind),
            _uint(a.get("validBefore"), "erc3009Authorization.validBefore", kind),
            int.from_bytes(salt, "big"),
            _hex(a.get("signature"), "erc3009Authorization.signature", kind),
        )
    p = _object(permit2, "permit2Authorization", kind)
    permitted = _object(p.get("permitted"), "permit2Authorization.permitted", kind)
    witness = _object(p.get("witness"), "permit2Authorization.witness", kind)
    return Permit2Deposit(
        _address(p.get("from"), "permit2Authorization.from", kind),
        _address(permitted.get("token"), "permit2Authorization.permitted.token", kind),
        _uint(permitted.get("amount"), "permit2Authorization.permitted.amount", kind),
        _address(p.get("spender"), "permit2Authorization.spender", kind),
        _uint(p.get("nonce"), "permit2Authorization.nonce", kind),
        _uint(p.get("deadline"), "permit2Authorization.deadline", kind),
        _hex(witness.get("channelId"), "permit2Authorization.witness.channelId", kind, 32),
        _hex(p.get("signature"), "permit2Authorization.signature", kind),
    )


@dataclass(frozen=True)
class DepositPayload:
    """Open or top up a channel with ``amount``, and pay this request with ``voucher``."""

    config: ChannelConfig
    voucher: Voucher
    amount: int
    authorization: Erc3009Deposit | Permit2Deposit
    type: str = field(default=DEPOSIT, init=False)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": DEPOSIT,
            "channelConfig": self.config.to_wire(),
            "voucher": self.voucher.to_wire(),
            "deposit": {"amount": str(self.amount), "authorization": self.authorization.to_wire()},
        }


@dataclass(frozen=True)
class VoucherPayload:
    """Pay this request with the next cumulative voucher."""

    config: ChannelConfig
    voucher: Voucher
    type: str = field(default=VOUCHER, init=False)

    def to_wire(self) -> dict[str, Any]:
        return {"type": VOUCHER, "channelConfig": self.config.to_wire(), "voucher": self.voucher.to_wire()}


@dataclass(frozen=True)
class RefundPayload:
    """A cooperative refund: the client's zero-charge voucher and the amount asked for (None: all
    that is unclaimed). A server completes it for ``/settle`` (``completed``): the refund nonce, the
    claims to record first, and the receiver authorizer's signatures when the server holds that key."""

    config: ChannelConfig
    voucher: Voucher
    amount: int | None = None
    refund_nonce: int | None = None
    claims: tuple[VoucherClaim, ...] = ()
    refund_signature: bytes | None = None
    claim_signature: bytes | None = None
    type: str = field(default=REFUND, init=False)

    @property
    def completed(self) -> bool:
        return self.refund_nonce is not None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": REFUND,
            "channelConfig": self.config.to_wire(),
            "voucher": self.voucher.to_wire(),
        }
        if self.amount is not None:
            out["amount"] = str(self.amount)
        if self.refund_nonce is not None:
            out["refundNonce"] = str(self.refund_nonce)
            out["claims"] = [c.to_wire() for c in self.claims]
        if self.refund_signature is not None:
            out["refundAuthorizerSignature"] = _hex_str(self.refund_signature)
        if self.claim_signature is not None:
            out["claimAuthorizerSignature"] = _hex_str(self.claim_signature)
        return out


@dataclass(frozen=True)
class ClaimPayload:
    """Record these vouchers' claims on chain (no tokens move)."""

    claims: tuple[VoucherClaim, ...]
    claim_signature: bytes | None = None
    type: str = field(default=CLAIM, init=False)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": CLAIM, "claims": [c.to_wire() for c in self.claims]}
        if self.claim_signature is not None:
            out["claimAuthorizerSignature"] = _hex_str(self.claim_signature)
        return out


@dataclass(frozen=True)
class SettlePayload:
    """Transfer ``receiver``'s claimed, unsettled ``token`` to it."""

    receiver: str
    token: str
    type: str = field(default=SETTLE, init=False)

    def to_wire(self) -> dict[str, Any]:
        return {"type": SETTLE, "receiver": self.receiver, "token": self.token}


AnyBatchPayload = DepositPayload | VoucherPayload | RefundPayload | ClaimPayload | SettlePayload


def _claim(wire: Any, kind: str) -> VoucherClaim:
    row = _object(wire, "claims[]", kind)
    voucher = _object(row.get("voucher"), "claims[].voucher", kind)
    try:
        return VoucherClaim(
            _config(voucher.get("channel"), kind),
            _uint(voucher.get("maxClaimableAmount"), "claims[].voucher.maxClaimableAmount", kind, _UINT128),
            _hex(row.get("signature"), "claims[].signature", kind),
            _uint(row.get("totalClaimed"), "claims[].totalClaimed", kind, _UINT128),
        )
    except ValueError as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(kind, str(exc)) from exc


def _claims(wire: Any, kind: str) -> tuple[VoucherClaim, ...]:
    if not isinstance(wire, list):
        raise PayloadError(kind, "claims must be a list")
    return tuple(_claim(row, kind) for row in wire)


def _optional_sig(wire: dict[str, Any], key: str, kind: str) -> bytes | None:
    return None if wire.get(key) is None else _hex(wire[key], key, kind)


def parse_payload(wire: Any) -> AnyBatchPayload:
    """The typed payload of a ``batch-settlement`` payment (``PayloadError`` naming what is wrong)."""
    if not isinstance(wire, dict):
        raise PayloadError("type", "the payload must be an object")
    kind = wire.get("type")
    if kind == DEPOSIT:
        deposit = _object(wire.get("deposit"), "deposit", kind)
        return DepositPayload(
            _config(wire.get("channelConfig"), kind),
            Voucher.from_wire(wire.get("voucher"), kind),
            _uint(deposit.get("amount"), "deposit.amount", kind, _UINT128),
            _authorization(deposit.get("authorization")),
        )
    if kind == VOUCHER:
        return VoucherPayload(
            _config(wire.get("channelConfig"), kind), Voucher.from_wire(wire.get("voucher"), kind)
        )
    if kind == REFUND:
        amount = wire.get("amount")
        nonce = wire.get("refundNonce")
        return RefundPayload(
            _config(wire.get("channelConfig"), kind),
            Voucher.from_wire(wire.get("voucher"), kind),
            None if amount is None else _uint(amount, "amount", kind, _UINT128),
            None if nonce is None else _uint(nonce, "refundNonce", kind),
            _claims(wire.get("claims", []), kind),
            _optional_sig(wire, "refundAuthorizerSignature", kind),
            _optional_sig(wire, "claimAuthorizerSignature", kind),
        )
    if kind == CLAIM:
        return ClaimPayload(
            _claims(wire.get("claims"), kind), _optional_sig(wire, "claimAuthorizerSignature", kind)
        )
    if kind == SETTLE:
        return SettlePayload(
            _address(wire.get("receiver"), "receiver", kind), _address(wire.get("token"), "token", kind)
        )
    raise PayloadError("type", f"unknown batch-settlement payload type {kind!r}")


def channel_snapshot(state: ChannelState, charged: int | None = None) -> dict[str, Any]:
    """The ``channelState`` object of an answer; a server adds its ``chargedCumulativeAmount``."""
    out = state.to_wire()
    if charged is not None:
        out["chargedCumulativeAmount"] = str(charged)
    return out


def read_snapshot(wire: Any) -> tuple[ChannelState, int | None]:
    """A ``channelState`` object read back: the state and the charged cumulative amount, if given
    (``PayloadError`` of kind ``"channelState"``)."""
    kind = "channelState"
    wire = _object(wire, "channelState", kind)
    charged = wire.get("chargedCumulativeAmount")
    state = ChannelState(
        _hex(wire.get("channelId"), "channelState.channelId", kind, 32),
        _uint(wire.get("balance"), "channelState.balance", kind, _UINT128),
        _uint(wire.get("totalClaimed"), "channelState.totalClaimed", kind, _UINT128),
        0,
        _uint(wire.get("withdrawRequestedAt", 0), "channelState.withdrawRequestedAt", kind),
        _uint(wire.get("refundNonce", 0), "channelState.refundNonce", kind),
    )
    return state, None if charged is None else _uint(charged, "chargedCumulativeAmount", kind, _UINT128)
