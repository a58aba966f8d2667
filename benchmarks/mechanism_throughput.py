"""Per-mechanism gas and simulator throughput, against EIP-3009 ``exact`` measured in the same run.

Run: ``.venv/bin/python benchmarks/mechanism_throughput.py`` (``--payments 500`` for a quicker run,
``--repeat 3`` to keep the best wall time of several runs of each).

For each way of paying, the same world is simulated: one facilitator (high concurrency, no service
time), one server with one endpoint (``0.001`` USDC, or an ``upto`` maximum of ``0.002`` with a
charge of 0.001 on average), 100 honest agents with Poisson arrivals at 50 requests/s in all for
N/50 virtual seconds, 2-second blocks, an l1 fee model. The ways:

* ``exact/eip3009``, the baseline: ``transferWithAuthorization``;
* ``exact/permit2``: the payers approved Permit2 before the run; the exact proxy's ``settle``;
* ``upto/permit2``: the same, through the upto proxy, for a charge drawn per request;
* ``exact/permit2 + eip2612``: cold wallets (no ether, no allowance); every payment carries an
  EIP-2612 permit for its amount, so every settlement is ``settleWithPermit``;
* ``exact/permit2 + erc20``: cold wallets; each wallet's first payment is a bundle (ether for its
  gas, its signed approval, the settlement), the rest plain ``settle``.

Printed per way: paid requests, paid requests per wall-second and its ratio to the baseline's,
gas per settlement (from the receipts the run folded: ``summary.mechanisms``) and its ratio, the
approvals' gas and the ether the facilitator sent payers. The ``run`` is timed whole (World
construction and the set-up approvals included). Machines are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import time

from x402sim.sim import load_scenario, run

AGENTS = 100
RATE = 50.0  # paid requests per virtual second, all agents together
BLOCK_TIME = 2
SPONSORING = ["eip2612GasSponsoring", "erc20ApprovalGasSponsoring"]

WAYS: dict[str, tuple[dict, dict]] = {
    # label: (endpoint keys, agent group keys)
    "exact/eip3009": ({}, {}),
    "exact/permit2": ({"transfer_method": "permit2"}, {"approval": "approved"}),
    "upto/permit2": (
        {
            "scheme": "upto",
            "price": "0.002",
            "usage": {"units": {"kind": "uniform", "low": 0, "high": 2000}, "unit_price": "0.000001"},
        },
        {"approval": "approved"},
    ),
    "exact/permit2 + eip2612": ({"transfer_method": "permit2"}, {"approval": "sponsored-eip2612"}),
    "exact/permit2 + erc20": ({"transfer_method": "permit2"}, {"approval": "sponsored-erc20"}),
}


def one_endpoint_world(
    name: str, n: int, endpoint: dict, group: dict, *, agents: int, rate: float, drain: float, **facilitator
) -> dict:
    """A world of about ``n`` paid requests: one facilitator (high concurrency, no service time, and
    ``facilitator``'s keys), one server with one endpoint at 0.001 USDC (and ``endpoint``'s keys),
    ``agents`` honest agents (and ``group``'s keys) arriving at ``rate`` requests/s in all for
    ``n / rate`` virtual seconds, ``BLOCK_TIME``-second blocks, an l1 fee model. Also used by
    ``channels.py``."""
    return {
        "simulation": {"name": f"{name}-{n}", "seed": 1, "duration": n / rate, "warmup": 0, "drain": drain},
        "chain": {"block_time": BLOCK_TIME, "fee": {"model": "l1", "base_fee_gwei": 1.0}},
        "network": {"client_server": 0.01, "server_facilitator": 0.005, "facilitator_chain": 0.005},
        "facilitators": [{"name": "facilitator", "concurrency": 100_000, **facilitator}],
        "servers": [
            {
                "name": "api",
                "facilitators": ["facilitator"],
                "endpoints": [{"path": "/data", "price": "0.001", **endpoint}],
            }
        ],
        "agents": [
            {
                "name": "agents",
                "count": agents,
                "funding": "100",
                "arrivals": {"kind": "poisson", "rate": rate / agents},
                **group,
            }
        ],
    }


def best_run(world: dict, label: str, repeat: int):
    """Run ``world`` ``repeat`` times (its invariants must hold): the last result and the best wall
    time, the ``run`` timed whole (World construction included)."""
    scenario = load_scenario(world)
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run(scenario, keep_rows=False, plots=False)
        wall = time.perf_counter() - start
        best = wall if best is None else min(best, wall)
    assert result.invariants_hold, f"{label}: invariants broken: {result.summary['invariants']}"
    return result, best


def _measure(n: int, label: str, repeat: int) -> dict:
    endpoint, group = WAYS[label]
    world = one_endpoint_world(
        "mechanisms", n, endpoint, group, agents=AGENTS, rate=RATE, drain=20, sponsoring=SPONSORING
    )
    result, best = best_run(world, label, repeat)
    summary = result.summary
    mechanism = label.split(" ")[0]
    figures = summary["mechanisms"]["by_mechanism"][mechanism] if "mechanisms" in summary else None
    # the baseline has no mechanisms section: its gas is the run's
    gas = summary["gas"]["per_settlement"] if figures is None else figures["gas_per_settlement"]
    approvals = summary.get("mechanisms", {}).get("approvals", {})
    sponsoring = summary.get("mechanisms", {}).get("sponsoring", {}).get("facilitator", {})
    return {
        "paid": summary["paid_requests"],
        "wall": best,
        "gas": gas,
        "approval_gas": sum(a["gas_used"] for a in approvals.values()),
        "ether_sent": sponsoring.get("ether_sent_eth", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000, help="paid requests per run (about)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way; the best wall time is kept")
    args = parser.parse_args()
    rows = {label: _measure(args.payments, label, args.repeat) for label in WAYS}
    base = rows["exact/eip3009"]
    base_rate = base["paid"] / base["wall"]
    print(f"mechanisms against exact/eip3009 ({AGENTS} payers, {RATE:g} req/s, {BLOCK_TIME}-s blocks)")
    print(
        f"{'way':<24} {'paid':>6} {'paid/s':>8} {'x base':>6} {'gas/settle':>10} {'x base':>6} "
        f"{'approval gas':>12} {'ether sent':>10}"
    )
    for label, r in rows.items():
        rate = r["paid"] / r["wall"]
        print(
            f"{label:<24} {r['paid']:>6} {rate:>8.1f} {rate / base_rate:>6.2f} {r['gas']:>10,.0f} "
            f"{r['gas'] / base['gas']:>6.2f} {r['approval_gas']:>12,} {r['ether_sent']:>10.6f}"
        )


if __name__ == "__main__":
    main()
