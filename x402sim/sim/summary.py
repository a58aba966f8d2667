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
* With governance (a group names a ``[[policies]]`` entry) or attacks (a compromised behaviour, a
  price change with ``attack = true``), the ``governance`` section says what the governors decided
  and what it was worth: see ``governance_section``. Attack-bound spend is
  judged on chain (transfers of attack-bound authorizations); the counterfactual figures come from
  the same seed run without governors (``run`` does it; ``RunMetrics.governance.counterfactual``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import LATENCY_KINDS, RunMetrics, Scan, Tally, failure_class
from .scenario import ATOMIC, Scenario, group_window


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


def _nested(counts, convert=lambda v: v) -> dict[str, dict]:
    """{(policy, rule): value} as {policy: {rule: value}}, sorted."""
    out: dict[str, dict] = {}
    for (policy, rule), value in sorted(counts.items()):
        out.setdefault(policy, {})[rule] = convert(value)
    return out


def governance_section(m: RunMetrics, s: Scenario) -> dict:
    """What the governors decided and what it was worth (a scenario whose groups name policies):

    * ``decisions`` by verdict (allow, deny, needs-approval: the governors' first answers);
      ``approvals`` requested, granted and refused (by the simulated approvers);
    * ``spend_blocked_usdc`` and ``payments_blocked``: payments refused (by a rule, a trigger, a
      freeze or the approver), per policy and rule (``frozen``: the agent was frozen already);
    * ``honest_payments_blocked`` (count, usdc, and share of the honest payments a governor was
      asked about: the false positives), ``attack_payments_blocked`` and
      ``collateral_payments_blocked`` (a compromised agent's own payments after its attack began);
    * ``attack_spend_usdc``: attack-bound USDC that moved on chain ``with_governance`` and, in the
      same seed run without governors, ``without_governance`` (None when not run); their difference
      is ``loss_prevented_usdc``. A run without governors (``governed`` false: no policy in use, or
      ``run(governance=False)``) of a scenario with attacks reports its own attack-bound spend as
      ``without_governance``;
    * ``time_to_cutoff_s`` (count, mean, max) over the compromised agents that were frozen: the
      freeze's virtual time less the attack's start (0 for one frozen before it started);
      ``attacked_agents`` and ``attacked_agents_not_cut_off``; ``honest_agents_frozen``: frozen
      while honest (in a group without attack, or before its attack started); freezes by trigger;
    * ``attack_payments_after_cutoff_on_chain`` and ``payments_after_freeze_on_chain``: transfers of
      payments signed while the agent was frozen (0 when governance works);
    * ``audit``: the audit chain's ``entries`` and ``head`` (None for a sharded run: one chain per
      shard, and no file)."""
    g = m.governance
    cf = g.counterfactual
    own = usdc(g.attack["settled_amount"]), g.attack["settled"]
    if g.governed:
        with_governance, with_payments = own
        without = usdc(cf["attack_spend"]) if cf is not None else None
        without_payments = cf["attack_payments"] if cf is not None else None
    else:
        with_governance, with_payments = None, None
        without, without_payments = own
    starts = {
        group.name: max(group.behaviour.at, group.start)
        for group in s.agents
        if group.compromised and group.behaviour.at < group_window(s, group)[1]
    }
    cutoffs, honest_frozen, triggers = [], 0, {}
    for _agent, (group, t, trigger) in sorted(g.frozen.items()):
        triggers[trigger] = triggers.get(trigger, 0) + 1
        if group in starts:
            cutoffs.append(max(0.0, t - starts[group]))
        if group not in starts or t < starts[group]:
            honest_frozen += 1
    attacked = sum(m.agents.get(name, 0) for name in starts)
    honest = g.attempts["honest"]
    approvals = g.stats.approvals
    return {
        "governed": g.governed,
        "policies": s.governed(),
        "decisions": dict(sorted(g.stats.decisions.items())),
        "approvals": {k: approvals[k] for k in ("requested", "granted", "refused")},
        "spend_blocked_usdc": _nested(g.by_rule, usdc),
        "payments_blocked": _nested(g.denials),
        "honest_payments_blocked": {
            "count": g.blocked["honest"],
            "usdc": usdc(g.blocked_amount["honest"]),
            "share": round(g.blocked["honest"] / honest, 6) if honest else None,
        },
        "attack_requests": g.attack["requests"],
        "attack_payments_blocked": g.blocked["attack"],
        "collateral_payments_blocked": g.blocked["collateral"],
        "attack_payments_settled": {"with_governance": with_payments, "without_governance": without_payments},
        "attack_spend_usdc": {"with_governance": with_governance, "without_governance": without},
        "loss_prevented_usdc": (
            round(without - with_governance, 6) if None not in (without, with_governance) else None
        ),
        "time_to_cutoff_s": {
            "count": len(cutoffs),
            "mean": round(sum(cutoffs) / len(cutoffs), 6) if cutoffs else None,
            "max": round(max(cutoffs), 6) if cutoffs else None,
        },
        "attacked_agents": attacked,
        "attacked_agents_not_cut_off": attacked - len(cutoffs),
        "honest_agents_frozen": honest_frozen,
        "freezes_by_trigger": dict(sorted(triggers.items())),
        "attack_payments_after_cutoff_on_chain": g.attack["after_cutoff"],
        "payments_after_freeze_on_chain": g.after_freeze,
        "audit": {"entries": g.audit_entries, "head": g.audit_head} if m.shards == 1 and g.governed else None,
    }


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
    governed = bool(s.governed())
    attacked = governed or s.attacks()
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
        if governed:
            agents[group.name]["denied"] = g["denied"]

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
        **({"governance": governance_section(m, s)} if attacked else {}),
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


__all__ = [
    "RunFacts",
    "Tally",
    "build_summary",
    "failure_class",
    "governance_section",
    "stable",
    "summary_from_shards",
    "usdc",
]
