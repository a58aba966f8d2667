"""The numbers of a run: its summary, built from its ``RunMetrics`` and a few static facts.

Rules:

* On-chain facts come from the chain's receipts, never from what a role answered: settlements,
  volume, gas, the x402scan figures and the invariants are computed from ``Transfer`` and
  ``AuthorizationUsed`` logs of transactions sent by the run's facilitators. They are folded into
  the metrics as blocks are mined (``metrics.ChainFolder``); nothing here reads the chain.
* ``build_summary(metrics, facts, ...)`` is a function of its arguments: the same metrics (one run,
  or the merge of its shards: ``summary_from_shards``) give the same summary.
* Latency percentiles (``latency_ms``: p50, p90, p99) are estimates from sketches, within 0.5 %
  (relative) of the nearest-rank percentile of the samples (``sketch.LatencyStats``).
* Amounts are reported in USDC and USD as floats rounded to 6 decimals, so a summary is the same
  on every machine; wall-clock and resource figures are kept apart (``wall_seconds``,
  ``resources``).
* With an ``[x402scan]`` table of targets in the scenario, the x402scan section says, per figure,
  the target and the relative deviation from it, and whether every deviation is within tolerance.
  The per-day series is not in the summary (it has a row per virtual day): it is daily.csv and
  ``SimResult.daily`` (``RunMetrics.daily_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import LATENCY_KINDS, RunMetrics, Scan, Tally, failure_class
from .scenario import ATOMIC, Scenario


def usdc(atomic: int) -> float:
    return round(atomic / ATOMIC, 6)


@dataclass
class RunFacts:
    """What a summary needs besides the counters: the run's configuration and names."""

    scenario: Scenario
    seed: int
    payees: dict[str, str]  # label -> address
    servers: list[str] = field(default_factory=list)  # default: the scenario's servers
    facilitators: list[str] = field(default_factory=list)  # default: the scenario's facilitators

    def __post_init__(self) -> None:
        self.servers = self.servers or [v.name for v in self.scenario.servers]
        self.facilitators = self.facilitators or [f.name for f in self.scenario.facilitators]

    @classmethod
    def of(cls, world) -> RunFacts:
        return cls(
            world.scenario, world.seed, dict(world.payees), list(world.servers), list(world.facilitators)
        )


def _scan(scan: Scan) -> dict:
    return {
        "transactions": scan.transactions,
        "volume_usdc": usdc(scan.volume),
        "buyers": len(scan.buyers),
        "sellers": len(scan.sellers),
    }


def _targets(figures: dict, targets) -> dict:
    """Target, value and relative deviation of each figure the scenario gives a target for."""
    out, ok = {}, True
    for key in ("transactions", "volume_usdc", "buyers", "sellers"):
        target = getattr(targets, key)
        if target is None:
            continue
        target = usdc(target) if key == "volume_usdc" else target
        deviation = (figures[key] - target) / target
        within = abs(deviation) <= targets.tolerance
        ok = ok and within
        out[key] = {"target": target, "deviation": round(deviation, 6), "within_tolerance": within}
    return {"targets": out, "tolerance": targets.tolerance, "within_tolerance": ok}


def build_summary(
    metrics: RunMetrics, facts: RunFacts, wall_seconds: float = 0.0, peak_rss_mb: float = 0.0
) -> dict:
    m, s = metrics, facts.scenario
    eth_usd = s.chain.eth_usd
    tally = m.tally

    # -- gas and facilitator economics --------------------------------------------------------------
    per_fac: dict[str, dict] = {}
    for name in facts.facilitators:
        f = m.facilitators[name]
        gas_usd = f.gas_wei / 1e18 * eth_usd
        fees = f.fees.earned
        per_fac[name] = {
            "settlements": f.settlements,
            "failed_transactions": f.failed_transactions,
            "verify_requests": f.verifies,
            "settle_requests": f.settles,
            "gas_used": f.gas_used,
            "fees_earned_usdc": usdc(fees),
            "mean_wait_ms": round(1000 * f.waits.total / f.waits.count, 3) if f.waits.count else 0.0,
            "max_queue": f.max_queue,
            "gas_eth": round(f.gas_wei / 1e18, 12),
            "gas_usd": round(gas_usd, 6),
            "margin_usd": round(fees / ATOMIC - gas_usd, 6),
        }

    n_settled = m.scan.transactions
    settled_gas = sum(g * n for (g, ok), n in m.by_gas.items() if ok)
    usd = m.total_wei / 1e18 * eth_usd
    gas = {
        "total_gas": m.total_gas,
        "eth": round(m.total_wei / 1e18, 12),
        "usd": round(usd, 6),
        "l1_data_usd": round(m.l1_wei / 1e18 * eth_usd, 6),
        "per_settlement": round(settled_gas / n_settled, 1) if n_settled else None,
        "usd_per_settlement": round(usd / n_settled, 9) if n_settled else None,
        "by_gas_used": [
            {"gas_used": g, "settled": ok, "transactions": n} for (g, ok), n in sorted(m.by_gas.items())
        ],
    }

    # -- x402scan --------------------------------------------------------------------------------
    x402scan = _scan(m.scan)
    x402scan["per_facilitator"] = {name: _scan(m.facilitators[name].scan) for name in facts.facilitators}
    targets = getattr(s, "x402scan", None)
    if targets is not None:
        x402scan.update(_targets(x402scan, targets))

    # -- security and invariants ---------------------------------------------------------------------
    sec = m.security
    security = {
        "replays_attempted": tally.kinds["replay"],
        "replays_served": tally.kinds["replay_served"],
        "race_copies": tally.kinds["race"],
        "double_settlements": sec["double_settlements"],
        "served_without_settlement": sec["served_without_settlement"],
        "settled_without_delivery": sec["settled_without_delivery"],
        "requests_paid_twice": sec["requests_paid_twice"],
        "handler_runs_unpaid": tally.outcomes["handler_ran_unpaid"],
    }
    once = sec["double_settlements"] == 0
    invariants = {
        "supply_conserved": m.supply.conserved,
        "transfers_match_payments": sec["unmatched_transfers"] == 0 and m.stray_transfers == 0 and once,
        "no_authorization_settled_twice": once,
    }

    # -- servers and agents --------------------------------------------------------------------------
    servers = {
        name: {
            "requests": tally.servers[name]["requests"],
            "paid": tally.servers[name]["paid"],
            "refused": tally.servers[name]["refused"],
            "errors": tally.servers[name]["errors"],
            "handler_runs": tally.servers[name]["handler_runs"],
            "revenue_usdc": usdc(tally.servers[name]["revenue"]),
        }
        for name in facts.servers
    }
    payees = {label: usdc(m.received[address]) for label, address in facts.payees.items()}
    agents = {}
    for group in s.agents:
        g = tally.groups[group.name]
        agents[group.name] = {
            "agents": m.agents.get(group.name, group.count),
            "behaviour": group.behaviour.kind,
            "requests": g["requests"],
            "paid": g["paid"],
            "refused_by_policy": g["refused_by_policy"],
            "spend_usdc": usdc(m.spend[group.name]),
            "success_rate": round(g["paid"] / g["needed_payment"], 6) if g["needed_payment"] else None,
        }

    events = dict(m.events)
    for key in ("settled_after_expiry", "retries_after_resolution"):
        if sec[key]:
            events[f"accounting_{key}"] = sec[key]
    summary = {
        "scenario": s.simulation.name,
        "seed": facts.seed,
        "virtual_seconds": round(m.virtual_seconds, 6),
        "wall_seconds": round(wall_seconds, 3),
        "requests": tally.rows,
        "paid_requests": tally.outcomes["paid"],
        "settled_payments": n_settled,
        "outcomes": dict(sorted((k, v) for k, v in tally.outcomes.items() if k != "handler_ran_unpaid")),
        "failures": dict(sorted(tally.failures.items())),
        "latency_ms": {kind: m.latency[kind].percentiles_ms() for kind in LATENCY_KINDS},
        "volume_usdc": x402scan["volume_usdc"],
        "gas": gas,
        "facilitators": per_fac,
        "servers": servers,
        "payees": payees,
        "agents": agents,
        "security": security,
        "invariants": invariants,
        "x402scan": x402scan,
        "chain": {"blocks": m.blocks, "height": m.height},
        "events": dict(sorted(events.items())),
        "resources": {
            "peak_rss_mb": round(peak_rss_mb, 1),
            "wall_seconds": round(wall_seconds, 3),
            "payments_per_wall_second": round(n_settled / wall_seconds, 1) if wall_seconds > 0 else None,
        },
    }
    if m.shards > 1:
        summary["shards"] = m.shards
    return summary


def summary_from_shards(
    shards: list[RunMetrics], facts: RunFacts, wall_seconds: float = 0.0, peak_rss_mb: float = 0.0
) -> dict:
    """The summary of a run simulated as shards (same scenario and seed, disjoint agents, each on its
    own chain): their metrics merged (``RunMetrics.merge`` says how), then summarised. The supply
    invariant holds only if it held on every shard's chain."""
    return build_summary(RunMetrics.combine(shards), facts, wall_seconds, peak_rss_mb)


VOLATILE = ("wall_seconds", "resources")


def stable(summary: dict) -> dict:
    """The summary without its wall-clock and resource fields: what the seed determines."""
    return {k: v for k, v in summary.items() if k not in VOLATILE}


__all__ = ["RunFacts", "Tally", "build_summary", "failure_class", "stable", "summary_from_shards", "usdc"]
