"""The figures a sweep reads from each run: ``METRICS``, each a function of a run's summary.

Rules: a metric reads summary.json's figures and recomputes nothing; a figure the summary does not
have is None. Two answer the fee question: ``break_even_fee_usd`` = ``gas.usd_per_settlement``,
the flat fee per settlement at which the facilitators' margin is zero (no free tier);
``break_even_price_usd`` = gas the facilitators paid (USD, reverted transactions included) / paid
requests, the price per request at which settlement gas equals what the requests paid. With
batch-settlement endpoints, the ``channel_*`` metrics are the channels' per paid request (amortised)
and ``exact_*`` those of the run's per-request exact endpoints beside them (``channels-vs-exact``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def _get(summary: dict, *path: str) -> Any:
    node: Any = summary
    for part in path:
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _margin(s: dict) -> float | None:
    margins = [f.get("margin_usd") for f in (s.get("facilitators") or {}).values()]
    return round(math.fsum(m for m in margins if m is not None), 6) if margins else None


def _success_rate(s: dict) -> float | None:
    needed = s["requests"] - (s.get("outcomes") or {}).get("free", 0)
    return _ratio(s["paid_requests"], needed)


METRICS: dict[str, Callable[[dict], Any]] = {
    "requests": lambda s: s["requests"],
    "paid_requests": lambda s: s["paid_requests"],
    "settled_payments": lambda s: s["settled_payments"],
    "volume_usdc": lambda s: s["volume_usdc"],
    "success_rate": _success_rate,
    "latency_p50_ms": lambda s: _get(s, "latency_ms", "end_to_end", "p50"),
    "latency_p99_ms": lambda s: _get(s, "latency_ms", "end_to_end", "p99"),
    "gas_per_settlement": lambda s: _get(s, "gas", "per_settlement"),
    "gas_usd_per_settlement": lambda s: _get(s, "gas", "usd_per_settlement"),
    "gas_usd": lambda s: _get(s, "gas", "usd"),
    "margin_usd": _margin,
    "double_settlements": lambda s: _get(s, "security", "double_settlements"),
    "served_without_settlement": lambda s: _get(s, "security", "served_without_settlement"),
    "settled_without_delivery": lambda s: _get(s, "security", "settled_without_delivery"),
    "replays_served": lambda s: _get(s, "security", "replays_served"),
    "invariants_hold": lambda s: all((s.get("invariants") or {}).values()),
    "x402scan_transactions": lambda s: _get(s, "x402scan", "transactions"),
    "x402scan_buyers": lambda s: _get(s, "x402scan", "buyers"),
    "x402scan_sellers": lambda s: _get(s, "x402scan", "sellers"),
    "break_even_fee_usd": lambda s: _get(s, "gas", "usd_per_settlement"),
    "break_even_price_usd": lambda s: _ratio(_get(s, "gas", "usd"), s["paid_requests"]),
    # batch-settlement (None without channels): per paid request, amortised, and the exposure;
    # beside per-request exact endpoints of the same run, exact's own per paid request
    "channel_gas_per_paid_request": lambda s: _get(s, "channels", "per_paid_request", "gas"),
    "channel_usd_per_paid_request": lambda s: _get(s, "channels", "per_paid_request", "usd"),
    "channel_transactions_per_paid_request": lambda s: _get(
        s, "channels", "per_paid_request", "transactions"
    ),
    "channel_max_unclaimed_usdc": lambda s: _get(s, "channels", "exposure", "max_unclaimed_usdc"),
    "exact_gas_per_paid_request": lambda s: _get(
        s, "channels-vs-exact", "exact/eip3009", "gas_per_paid_request"
    ),
    "exact_usd_per_paid_request": lambda s: _get(
        s, "channels-vs-exact", "exact/eip3009", "usd_per_paid_request"
    ),
}
DEFAULT_PLOTS = ("success_rate", "latency_p50_ms", "latency_p99_ms", "gas_usd_per_settlement", "margin_usd")


def headline(summary: dict) -> dict[str, Any]:
    """The metrics of one run (``METRICS``), from its summary."""
    return {name: pick(summary) for name, pick in METRICS.items()}
