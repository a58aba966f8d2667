"""The summary's ``channels`` and ``channels-vs-exact`` sections (a run with batch-settlement endpoints).

``channels`` (``channels_section``), from ``RunMetrics.channels`` (chain events and the servers'
books; see ``channel_metrics``):

* ``transactions`` and ``gas`` by kind (deposit, claim, settle, refund: the receivers' side sends
  them through its facilitators; withdraw_initiate, withdraw_finalize: the payers' own);
* ``per_paid_request``: the receivers' side's gas, transactions and USD (deposits, claims, settles
  and refunds) amortised over the paid requests of batch-settlement endpoints;
* ``exposure``: value served against vouchers not yet claimed on chain, and not yet settled to the
  receiver: max and time-weighted mean, and ``series`` ([t, unclaimed, unsettled] in USDC, at most
  ``MAX_SERIES`` points: the samples thinned evenly);
* ``deposits``: deposited in all, per payer (mean, max), locked at the end, and what locking them
  cost the payers: USDC x years x ``chain.deposit_rate``;
* ``refunds`` and ``withdrawals`` (count and amount, from the contract's events);
* ``by_server``: what each server served (its paid rows), what is still unclaimed on chain at the
  end (its book against the chain) and so what was claimed, the channels still in its book, and of
  the channels of withdraw-race payers, what was served and what the receiver lost (served less
  claimed on chain); ``withdraw_race_lost_usdc`` adds those losses up.

``channels-vs-exact`` (``versus_section``, when the scenario has exact endpoints too): per
mechanism, paid requests, transactions, gas and USD per paid request, and the channels'
``gas_saving`` against each per-request mechanism (1 - channels' gas per paid request / its)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..money import to_usdc
from .channel_metrics import SELLER_KINDS

if TYPE_CHECKING:
    from .metrics import RunMetrics
    from .scenario import Scenario

MAX_SERIES = 240
YEAR = 365 * 86_400
TX_KINDS = ("deposit", "claim", "settle", "refund", "withdraw_initiate", "withdraw_finalize")


def _per(value: float, n: int, digits: int = 3) -> float | None:
    return round(value / n, digits) if n else None


def thinned(samples: list, limit: int = MAX_SERIES) -> list:
    """At most ``limit`` of ``samples``, evenly spaced, the last one kept."""
    if len(samples) <= limit:
        return list(samples)
    step = len(samples) / limit
    picked = [samples[int(i * step)] for i in range(limit - 1)]
    return [*picked, samples[-1]]


def channels_section(m: RunMetrics, s: Scenario) -> dict:
    cm, eth_usd = m.channels, s.chain.eth_usd
    paid = cm.paid
    exposure = cm.exposure()
    payers = len(cm.deposits_by_payer)
    deposited = cm.amounts["deposit"]
    lost = sum(f.get("race_lost", 0) for f in cm.end.values())
    return {
        "paid_requests": paid,
        "served_usdc": to_usdc(cm.served),
        "transactions": {k: cm.txs[k] for k in TX_KINDS},
        "failed_transactions": sum(cm.failed.values()),
        "gas": {k: cm.gas[k] for k in TX_KINDS},
        "per_paid_request": {
            "gas": _per(cm.seller_gas, paid, 1),
            "transactions": _per(cm.seller_txs, paid, 6),
            "usd": _per(cm.seller_wei / 1e18 * eth_usd, paid, 9),
        },
        "exposure": {
            "max_unclaimed_usdc": to_usdc(exposure["max_unclaimed"]),
            "mean_unclaimed_usdc": round(exposure["mean_unclaimed"] / 1e6, 6),
            "max_unsettled_usdc": to_usdc(exposure["max_unsettled"]),
            "mean_unsettled_usdc": round(exposure["mean_unsettled"] / 1e6, 6),
            "sample_seconds": cm.sample_every,
            "series": [[round(t, 3), to_usdc(u), to_usdc(v)] for t, u, v in thinned(cm.samples)],
        },
        "deposits": {
            "count": cm.events["deposit"],
            "total_usdc": to_usdc(deposited),
            "payers": payers,
            "mean_per_payer_usdc": round(deposited / payers / 1e6, 6) if payers else None,
            "max_per_payer_usdc": to_usdc(max(cm.deposits_by_payer.values(), default=0)),
            "locked_at_end_usdc": to_usdc(cm.locked),
            "locked_usdc_days": round(cm.locked_seconds / 1e6 / 86_400, 6),
            "annual_rate": s.chain.deposit_rate,
            "cost_to_payers_usd": round(cm.locked_seconds / 1e6 / YEAR * s.chain.deposit_rate, 9),
        },
        "refunds": {"count": cm.events["refund"], "amount_usdc": to_usdc(cm.amounts["refund"])},
        "withdrawals": {
            "initiated": cm.events["withdraw_initiate"],
            "finalized": cm.events["withdraw_finalize"],
            "amount_usdc": to_usdc(cm.amounts["withdraw_finalize"]),
        },
        "claimed_usdc": to_usdc(cm.amounts["claim"]),
        "settled_usdc": to_usdc(cm.amounts["settle"]),
        "by_server": {
            name: {
                "channels": f["channels"],
                "served_usdc": to_usdc(cm.served_by_server[name]),
                "claimed_on_chain_usdc": to_usdc(cm.served_by_server[name] - f["unclaimed"]),
                "unclaimed_at_end_usdc": to_usdc(f["unclaimed"]),
                "race_served_usdc": to_usdc(f["race_served"]),
                "race_lost_usdc": to_usdc(f["race_lost"]),
            }
            for name, f in sorted(cm.end.items())
        },
        "withdraw_race_lost_usdc": to_usdc(lost),
    }


def versus_section(m: RunMetrics, s: Scenario) -> dict:
    """Per-request settlement against channels, in the same run (see the module's docstring)."""
    mech, cm, eth_usd = m.mechanisms, m.channels, s.chain.eth_usd
    labels: list[str] = []
    for server in s.servers:
        for e in server.endpoints:
            label = f"{e.scheme}/{e.method_of_transfer}"
            if not e.channels and label not in labels:
                labels.append(label)
    out: dict = {}
    for label in labels:
        paid, txs = mech.paid[label], mech.settlements[label] + mech.failed[label]
        out[label] = {
            "paid_requests": paid,
            "transactions": txs,
            "gas_used": mech.gas[label],
            "gas_per_paid_request": _per(mech.gas[label], paid, 1),
            "transactions_per_paid_request": _per(txs, paid, 6),
            "usd_per_paid_request": _per(mech.wei[label] / 1e18 * eth_usd, paid, 9),
        }
    txs = cm.seller_txs + sum(cm.failed.values())
    channel: dict[str, Any] = {
        "paid_requests": cm.paid,
        "transactions": txs,
        "gas_used": cm.seller_gas,
        "gas_per_paid_request": _per(cm.seller_gas, cm.paid, 1),
        "transactions_per_paid_request": _per(txs, cm.paid, 6),
        "usd_per_paid_request": _per(cm.seller_wei / 1e18 * eth_usd, cm.paid, 9),
    }
    out["batch-settlement"] = channel
    saving = {}
    for label in labels:
        exact = out[label]["gas_per_paid_request"]
        ours = channel["gas_per_paid_request"]
        saving[label] = round(1 - ours / exact, 6) if exact and ours is not None else None
    channel["gas_saving"] = saving
    return out


__all__ = ["MAX_SERIES", "SELLER_KINDS", "channels_section", "thinned", "versus_section"]
