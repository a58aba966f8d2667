"""Simulator throughput and chain load with batch-settlement channels, against per-request ``exact``.

Run: ``.venv/bin/python benchmarks/channels.py`` (``--payments 300`` for a quicker run, ``--repeat 3``
to keep the best wall time of several runs of each).

The same demand is simulated twice in this process, once per way of paying: one facilitator (high
concurrency, no service time), one server with one endpoint at 0.001 USDC, 20 honest agents with
Poisson arrivals at 2 requests/s in all for N/2 virtual seconds (the same seed, so the same
arrivals), 2-second blocks, an l1 fee model. The ways:

* ``exact/eip3009``, the baseline: one ``transferWithAuthorization`` per paid request;
* ``batch-settlement/eip3009``: each agent deposits 0.05 USDC (50 requests' worth) through the
  EIP-3009 collector and tops up when fewer than 5 requests' worth remain; the server claims every
  60 s and settles every 120 s; agents ask for their escrow back when they stop.

Printed per way: paid requests, paid requests per wall-second and its ratio to the baseline's,
transactions per paid request and gas per paid request (the receivers' side, amortised: deposits,
claims, settles and refunds over paid requests; from the receipts the run folded) with their
ratios. The ``run`` is timed whole (World construction included). Machines are noisy: read the
ratios.
"""

from __future__ import annotations

import argparse

from mechanism_throughput import BLOCK_TIME, best_run, one_endpoint_world

AGENTS = 20
RATE = 2.0  # paid requests per virtual second, all agents together

WAYS: dict[str, tuple[dict, dict]] = {
    # label: (endpoint keys, agent group keys)
    "exact/eip3009": ({}, {}),
    "batch-settlement/eip3009": (
        {"scheme": "batch-settlement", "claim_interval": 60, "settle_interval": 120},
        {"deposit": "0.05", "top_up": {"below_requests": 5}, "refund": "done"},
    ),
}


def measure(n: int, label: str, repeat: int = 1) -> dict:
    """One way's paid requests, best wall time, transactions and gas per paid request."""
    endpoint, group = WAYS[label]
    world = one_endpoint_world(
        "channels", n, endpoint, {"stop": n / RATE, **group}, agents=AGENTS, rate=RATE, drain=150
    )
    result, best = best_run(world, label, repeat)
    summary = result.summary
    paid = summary["paid_requests"]
    if "channels" in summary:
        per = summary["channels"]["per_paid_request"]
        txs, gas = per["transactions"], per["gas"]
    else:
        txs = summary["settled_payments"] / paid if paid else 0.0
        gas = summary["gas"]["per_settlement"]
    return {"paid": paid, "wall": best, "txs": txs, "gas": gas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=600, help="paid requests per run (about)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way; the best wall time is kept")
    args = parser.parse_args()
    rows = {label: measure(args.payments, label, args.repeat) for label in WAYS}
    base = rows["exact/eip3009"]
    base_rate = base["paid"] / base["wall"]
    print(f"channels against exact/eip3009 ({AGENTS} payers, {RATE:g} req/s, {BLOCK_TIME}-s blocks)")
    print(
        f"{'way':<26} {'paid':>6} {'paid/s':>8} {'x base':>6} {'tx/paid':>8} {'x base':>6} "
        f"{'gas/paid':>9} {'x base':>6}"
    )
    for label, r in rows.items():
        rate = r["paid"] / r["wall"]
        print(
            f"{label:<26} {r['paid']:>6} {rate:>8.1f} {rate / base_rate:>6.2f} {r['txs']:>8.4f} "
            f"{r['txs'] / base['txs']:>6.3f} {r['gas']:>9,.0f} {r['gas'] / base['gas']:>6.3f}"
        )


if __name__ == "__main__":
    main()
