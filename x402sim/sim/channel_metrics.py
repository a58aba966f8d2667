"""What a run with ``batch-settlement`` endpoints counts of its channels: transactions and gas by kind,
escrow locked over time, refunds, withdrawals, the sellers' exposure, and what a withdrawing payer
took.

Theory of operation. Channel transactions are folded as their blocks are mined (``fold``, called by
``metrics.ChainFolder`` for every receipt that touches the batch-settlement contract or a deposit
collector): the contract's events say what each did (``Deposited``, ``Claimed``, ``Settled``,
``Refunded``, ``WithdrawInitiated``, ``WithdrawFinalized``), and a transaction is classed by the
first of them (a refund that claims first is a refund). The payers' escrow not yet claimed on chain
(deposits less claims, refunds and withdrawals) is integrated over virtual time into
``locked_seconds`` (atomic USDC x seconds), from which the summary prices the money agents tie up.
The exposure (value the servers served against vouchers, not yet claimed and not yet settled) is
sampled from the servers' channel books every ``sample_every`` seconds (``sim.channels``).

Everything here is a counter, a bounded series (one sample per interval) or keyed by channel or
agent: nothing grows with payments. Shards of one run add up (``merge``: counters summed, series
summed sample by sample)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    EVENT_TOPICS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
)

CHANNEL_CONTRACTS = frozenset(
    a.lower()
    for a in (BATCH_SETTLEMENT_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS)
)
_BATCH = BATCH_SETTLEMENT_ADDRESS.lower()
_CREATED = EVENT_TOPICS["ChannelCreated"]
_KIND_OF_TOPIC = {
    EVENT_TOPICS["Refunded"]: "refund",
    EVENT_TOPICS["Deposited"]: "deposit",
    EVENT_TOPICS["WithdrawFinalized"]: "withdraw_finalize",
    EVENT_TOPICS["WithdrawInitiated"]: "withdraw_initiate",
    EVENT_TOPICS["Claimed"]: "claim",
    EVENT_TOPICS["Settled"]: "settle",
}
# the order in which a transaction's events class it (a refund carrying its claim is a refund)
KIND_ORDER = ("refund", "deposit", "withdraw_finalize", "withdraw_initiate", "claim", "settle")
# transactions the receivers' side pays for (through its facilitator); the payers' own withdrawals
# are theirs
SELLER_KINDS = ("deposit", "claim", "settle", "refund")


def _word(data: bytes, i: int) -> int:
    return int.from_bytes(data[32 * i : 32 * i + 32], "big")


def is_channel_receipt(receipt: Any) -> bool:
    """Whether ``receipt`` is a call to the batch-settlement contract or a deposit collector."""
    return (receipt.to or "").lower() in CHANNEL_CONTRACTS


@dataclass
class ChannelMetrics:
    """The channel counters of a run (see the module's docstring). Amounts in atomic USDC."""

    sample_every: float = 10.0
    txs: Counter = field(default_factory=Counter)  # kind -> successful transactions
    failed: Counter = field(default_factory=Counter)  # kind (the call's target) -> reverted ones
    gas: Counter = field(default_factory=Counter)  # kind -> gas of successful transactions
    wei: Counter = field(default_factory=Counter)  # kind -> their cost at the scenario's fee model
    amounts: Counter = field(default_factory=Counter)  # event kind -> sum of its amounts
    events: Counter = field(default_factory=Counter)  # event kind -> count
    deposits_by_payer: Counter = field(default_factory=Counter)  # payer address -> deposited
    channel_payer: dict[str, str] = field(default_factory=dict)  # channel id -> payer (from deposits)
    locked: int = 0  # escrow now: deposits less claims, refunds and withdrawals
    locked_seconds: float = 0.0
    _since: float | None = None  # virtual time of the last change of ``locked``
    paid: int = 0  # paid requests of batch-settlement endpoints (rows)
    served: int = 0  # their charges (chargedAmount)
    served_by_server: Counter = field(default_factory=Counter)
    # (t, unclaimed, unsettled) sampled from the servers' books
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    # at the end of the run, read from the servers' books and the chain, per server
    end: dict[str, dict[str, int]] = field(default_factory=dict)

    # -- folding ----------------------------------------------------------------------------------

    def _lock(self, t: float, delta: int) -> None:
        if self._since is not None:
            self.locked_seconds += self.locked * (t - self._since)
        self._since = t
        self.locked += delta

    def fold(self, receipt: Any, wei: int, t: float) -> None:
        """Fold one mined channel transaction (``is_channel_receipt``) at virtual time ``t``."""
        if not receipt.success:
            self.failed[_target(receipt)] += 1
            return
        kinds = []
        for log in receipt.logs:
            if log.address.lower() != _BATCH or not log.topics:
                continue
            if log.topics[0] == _CREATED and len(log.topics) > 1:
                payer = "0x" + log.data[12:32].hex()
                self.channel_payer["0x" + log.topics[1].hex()] = payer.lower()
                continue
            kind = _KIND_OF_TOPIC.get(log.topics[0])
            if kind is None:
                continue
            kinds.append(kind)
            self.events[kind] += 1
            data = log.data
            channel = "0x" + log.topics[1].hex() if len(log.topics) > 1 else ""
            amount = _word(data, 0)
            self.amounts[kind] += amount
            if kind == "deposit":
                payer = self.channel_payer.get(channel) or receipt.sender.lower()
                self._lock(t, amount)
                self.deposits_by_payer[payer] += amount
            elif kind in ("claim", "refund", "withdraw_finalize"):
                self._lock(t, -amount)
        kind = next((k for k in KIND_ORDER if k in kinds), _target(receipt))
        self.txs[kind] += 1
        self.gas[kind] += receipt.gas_used
        self.wei[kind] += wei

    def close(self, t: float) -> None:
        """Integrate the escrow locked up to ``t`` (the end of the run)."""
        self._lock(t, 0)

    # -- merging ----------------------------------------------------------------------------------

    def merge(self, other: ChannelMetrics) -> None:
        for name in (
            "txs",
            "failed",
            "gas",
            "wei",
            "amounts",
            "events",
            "deposits_by_payer",
            "served_by_server",
        ):
            getattr(self, name).update(getattr(other, name))
        self.channel_payer.update(other.channel_payer)
        self.locked += other.locked
        self.locked_seconds += other.locked_seconds
        self.paid += other.paid
        self.served += other.served
        if not self.samples:
            self.samples = list(other.samples)
        else:
            n = min(len(self.samples), len(other.samples))
            self.samples = [
                (a[0], a[1] + b[1], a[2] + b[2])
                for a, b in zip(self.samples[:n], other.samples[:n], strict=True)
            ]
        for server, figures in other.end.items():
            mine = self.end.setdefault(server, {})
            for key, value in figures.items():
                mine[key] = mine.get(key, 0) + value

    # -- figures ----------------------------------------------------------------------------------

    @property
    def seller_gas(self) -> int:
        return sum(self.gas[k] for k in SELLER_KINDS)

    @property
    def seller_wei(self) -> int:
        return sum(self.wei[k] for k in SELLER_KINDS)

    @property
    def seller_txs(self) -> int:
        return sum(self.txs[k] for k in SELLER_KINDS)

    def exposure(self) -> dict[str, Any]:
        """Max and time-weighted mean of the two exposures (the samples are evenly spaced)."""
        n = len(self.samples)
        unclaimed = [s[1] for s in self.samples]
        unsettled = [s[2] for s in self.samples]
        return {
            "max_unclaimed": max(unclaimed, default=0),
            "mean_unclaimed": sum(unclaimed) / n if n else 0.0,
            "max_unsettled": max(unsettled, default=0),
            "mean_unsettled": sum(unsettled) / n if n else 0.0,
        }


def _target(receipt: Any) -> str:
    to = (receipt.to or "").lower()
    return "channel_call" if to == _BATCH else "deposit"


__all__ = ["CHANNEL_CONTRACTS", "KIND_ORDER", "SELLER_KINDS", "ChannelMetrics", "is_channel_receipt"]
