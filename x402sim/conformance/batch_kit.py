"""What the ``batch-settlement`` cases share: offers, channel payments signed as a channel client
signs them, the server payloads (claim, settle, completed refund), and the channel facts read on chain.

The harness plays whichever side the target does not: the client and the facilitator for a server
target, the resource server for a facilitator target, the resource server and the facilitator for a
client target. Whatever it signs, it signs with the library's own channel code (``evm.channels``,
``mechanisms.batch_client``), so a case and the reference mechanism agree on the wire by
construction, and a case judges the target on what the batch-settlement contract holds afterwards:
channel balances, ``totalClaimed``, the refund nonce, receivers' claimed and settled totals, and the
contract's events.

Channels here use the shortest withdraw delay the contract allows (``WITHDRAW_DELAY``); nothing in
the cases moves the chain's clock, so cases sharing one harness stay independent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    EVENT_TOPICS,
    MIN_WITHDRAW_DELAY,
    ChannelConfig,
    ChannelState,
    VoucherClaim,
    channel_id,
    initiate_withdraw_call,
    read_channel,
    read_receiver,
    sign_claim_batch,
    sign_refund,
)
from ..mechanisms.batch_client import (
    channel_config,
    deposit_payload,
    refund_payload,
    signed_voucher,
    voucher_payload,
)
from ..mechanisms.batch_wire import ClaimPayload, RefundPayload, SettlePayload, Voucher, channel_snapshot
from ..mechanisms.offer import Offer
from ..protocol import PaymentRequirements
from .forge import payment_v2
from .harness import Account, Harness

BATCH = "batch-settlement"
WITHDRAW_DELAY = MIN_WITHDRAW_DELAY
PRICE = 1_000
BATCH_SPEC = (
    "batch-settlement EVM scheme spec (specs/schemes/batch-settlement/scheme_batch_settlement_evm.md)"
)
EVENT_NAMES = {topic: name for name, topic in EVENT_TOPICS.items()}


def batch_offer(
    harness: Harness,
    *,
    pay_to: str,
    receiver_authorizer: str,
    amount: int = PRICE,
    withdraw_delay: int = WITHDRAW_DELAY,
    min_deposit: int | None = None,
    method: str | None = None,
    max_timeout: int = 60,
) -> dict:
    """A ``batch-settlement`` offer on the harness's chain and asset (wire form). ``method``:
    ``assetTransferMethod`` (None: absent, that is EIP-3009)."""
    extra: dict[str, Any] = {
        "name": harness.asset_name,
        "version": harness.asset_version,
        "receiverAuthorizer": receiver_authorizer,
        "withdrawDelay": withdraw_delay,
    }
    if min_deposit is not None:
        extra["minDeposit"] = str(min_deposit)
    if method is not None:
        extra["assetTransferMethod"] = method
    return {
        "scheme": BATCH,
        "network": harness.network,
        "amount": str(amount),
        "asset": harness.asset,
        "payTo": pay_to,
        "maxTimeoutSeconds": max_timeout,
        "extra": extra,
    }


def offer_of(wire: dict) -> Offer:
    """The typed ``Offer`` of a wire offer (raises ``ValueError`` when it is malformed)."""
    return Offer.of(PaymentRequirements.model_validate(wire))


@dataclass
class ChannelPayer:
    """A payer's channel toward the receiver of ``offer`` (salt 0, the payer its own authorizer, as
    the SDK clients open it), and the payments it signs. ``offer`` is the wire offer each payment
    echoes as ``accepted``."""

    account: Account
    offer: dict
    chain_id: int
    rng: random.Random = field(default_factory=random.Random)
    config: ChannelConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = channel_config(offer_of(self.offer), self.account.address)

    @property
    def channel(self) -> bytes:
        return channel_id(self.config, self.chain_id)

    @property
    def channel_hex(self) -> str:
        return "0x" + self.channel.hex()

    def deposit(self, amount: int, max_claimable: int, now: int) -> dict:
        """A payment that deposits ``amount`` (by the offer's transfer method) and carries the voucher
        ``max_claimable``."""
        entropy = self.rng.getrandbits(256).to_bytes(32, "big")
        payload = deposit_payload(
            self.account.key, self.config, offer_of(self.offer), amount, max_claimable, now, entropy
        )
        return payment_v2(self.offer, payload.to_wire())

    def voucher(self, max_claimable: int, key: bytes | None = None) -> dict:
        """A payment with the cumulative voucher ``max_claimable`` (signed by ``key``: default the
        payer's)."""
        payload = voucher_payload(key or self.account.key, self.config, self.chain_id, max_claimable)
        return payment_v2(self.offer, payload.to_wire())

    def signed(self, max_claimable: int, key: bytes | None = None) -> Voucher:
        """The voucher ``max_claimable`` on this channel (signed by ``key``: default the payer's)."""
        return signed_voucher(key or self.account.key, self.chain_id, self.channel, max_claimable)

    def claim(self, max_claimable: int, total_claimed: int | None = None) -> VoucherClaim:
        """The claim row of the payer's voucher ``max_claimable`` (claiming all of it by default)."""
        voucher = self.signed(max_claimable)
        claimed = max_claimable if total_claimed is None else total_claimed
        return VoucherClaim(self.config, max_claimable, voucher.signature, claimed)

    def refund(self, charged: int, amount: int | None = None) -> dict:
        """The client's refund request: its zero-charge voucher ``charged`` and ``amount`` (None: all)."""
        payload = refund_payload(self.account.key, self.config, self.chain_id, charged, amount)
        return payment_v2(self.offer, payload.to_wire())

    def completed_refund(
        self,
        charged: int,
        amount: int,
        nonce: int,
        authorizer_key: bytes | None,
        claims: tuple[VoucherClaim, ...] = (),
    ) -> dict:
        """A refund the server completed for ``/settle``: refund ``nonce``, the claims to record first,
        and the receiver authorizer's signatures (``authorizer_key``; None: unsigned, for a
        facilitator that is the receiver authorizer)."""
        voucher = self.signed(charged)
        payload = RefundPayload(
            self.config,
            voucher,
            amount,
            nonce,
            claims,
            sign_refund(authorizer_key, self.chain_id, self.channel, nonce, amount)
            if authorizer_key
            else None,
            sign_claim_batch(authorizer_key, self.chain_id, claims) if claims and authorizer_key else None,
        )
        return payment_v2(self.offer, payload.to_wire())

    def initiate_withdraw(self, harness: Harness, amount: int) -> str:
        """The payer starts its timed withdrawal of ``amount`` on chain (the harness gives it the
        ether); the transaction hash."""
        harness.fund(self.account.address, eth=10**16)
        return (
            "0x"
            + harness.chain.transact(
                self.account.key, BATCH_SETTLEMENT_ADDRESS, initiate_withdraw_call(self.config, amount)
            ).hex()
        )


def claim_payment(
    offer: dict, claims: tuple[VoucherClaim, ...], authorizer_key: bytes | None, chain_id: int
) -> dict:
    """A server's ``claim`` for ``/settle`` (signed by the receiver authorizer ``authorizer_key``;
    None: unsigned, for a facilitator that is the receiver authorizer)."""
    signature = sign_claim_batch(authorizer_key, chain_id, claims) if authorizer_key else None
    return payment_v2(offer, ClaimPayload(claims, signature).to_wire())


def settle_payment(offer: dict) -> dict:
    """A server's ``settle`` (sweep) of the offer's receiver's claimed funds in its asset."""
    return payment_v2(offer, SettlePayload(offer["payTo"], offer["asset"]).to_wire())


def channel_state(harness: Harness, channel: bytes) -> ChannelState:
    """The channel as the contract holds it now."""
    return read_channel(harness.chain, channel)


def channel_fact(harness: Harness, channel: bytes) -> dict:
    """The channel's on-chain state in wire form, for a case's facts."""
    return channel_snapshot(channel_state(harness, channel))


def receiver_totals(harness: Harness, receiver: str) -> tuple[int, int]:
    """(claimed, settled) of ``receiver`` in the harness's asset."""
    return read_receiver(harness.chain, receiver, harness.asset)


@dataclass(frozen=True)
class BatchEvent:
    name: str  # Deposited, Claimed, Settled, Refunded, WithdrawInitiated, ... (``EVENT_TOPICS``)
    tx_hash: str
    topics: tuple[str, ...]
    data: str


def batch_events(harness: Harness, since_block: int, name: str | None = None) -> list[BatchEvent]:
    """The batch-settlement contract's events in blocks after ``since_block`` (only ``name``'s when
    given)."""
    if harness.block_number() <= since_block:
        return []
    logs = harness.chain.rpc(
        "eth_getLogs",
        {"fromBlock": hex(since_block + 1), "toBlock": "latest", "address": BATCH_SETTLEMENT_ADDRESS},
    )
    found = []
    for log in logs:
        topic = bytes.fromhex(log["topics"][0][2:]) if log["topics"] else b""
        event = BatchEvent(
            EVENT_NAMES.get(topic, "?"), log["transactionHash"], tuple(log["topics"]), log["data"]
        )
        if name is None or event.name == name:
            found.append(event)
    return found


def receipt_has_event(harness: Harness, tx_hash: Any, name: str) -> bool:
    """Whether the mined transaction ``tx_hash`` (hex) emitted the batch contract's event ``name``."""
    if not isinstance(tx_hash, str) or not tx_hash.startswith("0x"):
        return False
    receipt = harness.receipt(tx_hash)
    if receipt is None or not receipt.success:
        return False
    topic = EVENT_TOPICS[name]
    return any(
        log.address.lower() == BATCH_SETTLEMENT_ADDRESS.lower() and log.topics and log.topics[0] == topic
        for log in receipt.logs
    )
