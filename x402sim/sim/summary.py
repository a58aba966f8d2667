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
* Trust (``sim.trust``): ``reputation`` (ERC-8004 registered servers), ``mandates`` (AP2) and
  ``crawl`` (RFC 9421 signatures and pay-per-crawl), each present when the scenario uses it; their
  on-chain figures come from transfers folded as blocks are mined, and final reputations are read
  from the registry at the end of the run (``reputation_section``, ``mandates_section``,
  ``crawl_section``).
* Mechanisms: with an endpoint paid through Permit2 (``exact`` with Permit2, or ``upto``), the
  ``mechanisms`` section gives settlements and gas per mechanism, upto's charges against what was
  authorized, and the approvals and sponsored gas with who paid it (``mechanisms_section``). A
  scenario paid by EIP-3009 alone has no such section, so its summary is what it always was.
* Channels: with a batch-settlement endpoint, the ``channels`` section (gas and transactions per
  paid request amortised, the sellers' exposure, deposits locked and their cost, refunds, what a
  withdraw-race payer took), and ``channels-vs-exact`` beside per-request endpoints of the same run
  (``channel_summary``). A scenario without channels has neither.
* Tasks: with a group that completes tasks from tools found in the Bazaar (``task``), the
  ``toolchain`` section (``toolchain_section``): tasks completed, cost per completed task, spend by
  tool and on broken tools (judged on chain), time to the first paid call. A scenario without tasks
  has no such section.
* ``tool`` names the program and version that made the summary (``x402sim.version``), as the
  conformance reports do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..money import UNIT, to_usdc
from ..version import NAME, VERSION
from .channel_summary import channels_section, versus_section
from .metrics import LATENCY_KINDS, RunMetrics, Scan, Tally, failure_class
from .scenario import Scenario, group_window, is_compromised, uses_channels


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
        "volume_usdc": to_usdc(scan.volume),
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
        target = to_usdc(target) if key == "volume_usdc" else target
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
    own = to_usdc(g.attack["settled_amount"]), g.attack["settled"]
    if g.governed:
        with_governance, with_payments = own
        without = to_usdc(cf["attack_spend"]) if cf is not None else None
        without_payments = cf["attack_payments"] if cf is not None else None
    else:
        with_governance, with_payments = None, None
        without, without_payments = own
    starts = {
        group.name: max(group.behaviour.at, group.start)
        for group in s.agents
        if is_compromised(group.behaviour) and group.behaviour.at < group_window(s, group)[1]
    }
    cutoffs: list[float] = []
    honest_frozen = 0
    triggers: dict[str, int] = {}
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
        "spend_blocked_usdc": _nested(g.by_rule, to_usdc),
        "payments_blocked": _nested(g.denials),
        "honest_payments_blocked": {
            "count": g.blocked["honest"],
            "usdc": to_usdc(g.blocked_amount["honest"]),
            "share": round(g.blocked["honest"] / honest, 6) if honest else None,
        },
        "attack_requests": g.attack["requests"],
        "attack_payments_blocked": g.blocked["attack"],
        "collateral_payments_blocked": g.blocked["collateral"],
        "attack_payments_settled": {"with_governance": with_payments, "without_governance": without_payments},
        "attack_spend_usdc": {"with_governance": with_governance, "without_governance": without},
        "loss_prevented_usdc": (
            round(without - with_governance, 6)
            if without is not None and with_governance is not None
            else None
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


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def reputation_section(m: RunMetrics, s: Scenario) -> dict:
    """Registered servers and who paid them (a scenario with ``identity = true`` servers):

    * ``servers``: per registered server, its ``agent_id``, what it ``delivers`` (good or garbage,
      with its ``garbage_share``), transfers to it on chain (``payments``) and their ``revenue_usdc``,
      its ``garbage_deliveries``, and the ``feedback`` count and ``reputation`` (mean value, 0-100)
      read from the reputation registry at the end (feedback tagged ``x402-resource-delivered``);
    * ``groups``: per agent group, how it chooses (``choice``), whether it gives ``feedback``, its
      ``spend_usdc`` on chain and the share of it that went to garbage servers, by quarter of the
      run (by block time; the drain counts in the last) and over the ``whole_run``;
    * ``feedback``: giveFeedback transactions ``sent`` (and ``not_sent``: refused by the pool),
      ``mined`` and ``reverted``;
    * ``garbage_servers_max_reputation`` and ``good_servers_min_reputation``: from the registry."""
    t = m.trust
    servers: dict[str, dict] = {}
    bad: list[float] = []
    good: list[float] = []
    for copy in s.server_copies():
        if not copy.spec.identity:
            continue
        deliver = copy.spec.deliver
        garbage = deliver.kind == "garbage"
        count, mean = t.reputation.get(copy.name, (None, None))
        reputation = round(mean, 6) if mean is not None else None
        servers[copy.name] = {
            "agent_id": t.agents.get(copy.name),
            "delivers": copy.spec.deliver.kind,
            "garbage_share": deliver.share if deliver.kind == "garbage" else 0.0,
            "payments": t.settled[copy.name],
            "revenue_usdc": to_usdc(sum(t.received.get(copy.name, ()))),
            "garbage_deliveries": t.deliveries[(copy.name, "garbage")],
            "feedback": count,
            "reputation": reputation,
        }
        if reputation is not None:
            (bad if garbage else good).append(reputation)
    groups = {}
    for group in s.agents:
        spent = [t.quarters[(group.name, q, "all")] for q in range(4)]
        wasted = [t.quarters[(group.name, q, "garbage")] for q in range(4)]
        by_quarter = [_share(w, a) for w, a in zip(wasted, spent, strict=True)]
        groups[group.name] = {
            "choice": group.choice.kind,
            "feedback": group.feedback,
            "spend_usdc": to_usdc(sum(spent)),
            "garbage_spend_usdc": to_usdc(sum(wasted)),
            "garbage_spend_share": {
                "first_quarter": by_quarter[0],
                "last_quarter": by_quarter[3],
                "whole_run": _share(sum(wasted), sum(spent)),
                "by_quarter": by_quarter,
            },
        }
    f = t.feedback
    return {
        "servers": servers,
        "groups": groups,
        "feedback": {k: f[k] for k in ("sent", "not_sent", "mined", "reverted")},
        "garbage_servers_max_reputation": max(bad) if bad else None,
        "good_servers_min_reputation": min(good) if good else None,
    }


def mandates_section(m: RunMetrics, s: Scenario) -> dict:
    """Payments under AP2 mandates (a scenario with ``mandate`` groups or ``mandates`` servers):

    * ``payments_under_mandate`` (payments sent by mandated agents), ``settled`` (paid) and
      ``refused`` (a server's ``mandate refused``), and ``refused_by_code``;
    * ``groups``: per mandated group, its mandate (``amount_range_usdc``, ``budget_usdc`` per
      agent, ``allowed_payees``), the same counts, its ``spend_usdc`` on chain and
      ``max_agent_spend_usdc`` (the agent that spent most);
    * two checks on chain that must be 0: ``settled_outside_mandate`` (``usdc`` and ``payments`` of
      mandated agents' transfers above or below the amount range, to a payee not allowed, beyond
      the budget or the occurrences, in chain order; ``by_reason_usdc``) and
      ``settled_without_valid_mandate`` (settled authorizations of a mandated agent whose EIP-3009
      nonce is not keccak256 of a mandate chain a fresh verifier accepts for that payment);
    * ``servers``: which verifier each verifying server uses (shared or own)."""
    t = m.trust
    groups = {}
    spent_by_group: dict[str, list[int]] = {}
    for agent, agent_spent in t.agent_spend.items():
        spent_by_group.setdefault(agent.rpartition("-")[0], []).append(agent_spent)
    for group in s.agents:
        mandate = group.mandate
        if mandate is None:
            continue
        counts = {k: t.mandate[(group.name, k)] for k in ("payments", "settled", "refused")}
        spent = spent_by_group.get(group.name, [])
        groups[group.name] = {
            "agents": m.agents.get(group.name, group.count),
            "amount_range_usdc": [to_usdc(mandate.amount_range.min), to_usdc(mandate.amount_range.max)],
            "budget_usdc": to_usdc(mandate.budget),
            "allowed_payees": mandate.allowed_payees,
            **counts,
            "spend_usdc": to_usdc(sum(spent)),
            "max_agent_spend_usdc": to_usdc(max(spent)) if spent else 0.0,
        }
    out = t.outside
    reasons = ("amount_out_of_range", "payee_not_allowed", "over_budget", "recurrence_exceeded")
    return {
        "payments_under_mandate": sum(g["payments"] for g in groups.values()),
        "settled": sum(g["settled"] for g in groups.values()),
        "refused": sum(g["refused"] for g in groups.values()),
        "refused_by_code": dict(sorted(t.refusals.items())),
        "groups": groups,
        "settled_outside_mandate": {
            "usdc": to_usdc(out["usdc"]),
            "payments": out["payments"],
            "by_reason_usdc": {r: to_usdc(out[r]) for r in reasons},
        },
        "settled_without_valid_mandate": t.unbound,
        "servers": {c.name: c.spec.mandates for c in s.server_copies() if c.spec.mandates != "off"},
    }


def crawl_section(m: RunMetrics, s: Scenario) -> dict:
    """Crawlers in front of pay-per-crawl policies (a scenario with ``crawl`` servers or signing
    groups): requests by crawler kind (``allowlisted``, ``web-bot-auth``, ``tap``, ``badly-signed``,
    ``unsigned``; see ``trust.crawler_kind``) and by group, each with the policy's verdicts
    (``blocked``, ``charged``, of which ``paid``, and ``free``), the USDC those agents moved on chain
    (``revenue_usdc``) in how many transfers (``payments_on_chain``); ``blocked_reasons`` by refusal
    code (``unsigned``, ``unknown_key``, ``bad_signature``, ``expired``, ...). A group counts as a
    crawler when it signs or met a crawl policy; ``servers``: each policy's allow list and
    ``block_unsigned``."""
    from .trust import crawler_kind

    t = m.trust
    keys = ("requests", "blocked", "charged", "paid", "free")
    by_group: dict[str, dict] = {}
    by_kind: dict[str, dict[str, float]] = {}  # counts (int) and revenue_usdc
    for group in s.agents:
        if group.signature is None and not t.crawl[(group.name, "requests")]:
            continue  # neither signs nor met a crawl policy: not a crawler
        kind = crawler_kind(s, group)
        counts: dict[str, int] = {k: t.crawl[(group.name, k)] for k in keys}
        revenue = to_usdc(m.spend[group.name])
        payments: int = t.group_payments[group.name]
        by_group[group.name] = {
            "kind": kind,
            **counts,
            "revenue_usdc": revenue,
            "payments_on_chain": payments,
        }
        total = by_kind.setdefault(kind, dict.fromkeys((*keys, "revenue_usdc", "payments_on_chain"), 0))
        for k in keys:
            total[k] += counts[k]
        total["payments_on_chain"] += payments
        total["revenue_usdc"] = round(total["revenue_usdc"] + revenue, 6)
    return {
        "by_kind": by_kind,
        "by_group": by_group,
        "blocked_reasons": dict(sorted(t.blocked.items(), key=lambda kv: (-kv[1], kv[0]))),
        "servers": {
            c.name: {"allow": c.spec.crawl.allow, "block_unsigned": c.spec.crawl.block_unsigned}
            for c in s.server_copies()
            if c.spec.crawl is not None
        },
    }


def trust_sections(m: RunMetrics, s: Scenario) -> dict:
    """The ``reputation``, ``mandates`` and ``crawl`` sections the scenario calls for."""
    out = {}
    if any(v.identity for v in s.servers):
        out["reputation"] = reputation_section(m, s)
    if any(g.mandate for g in s.agents) or any(v.mandates != "off" for v in s.servers):
        out["mandates"] = mandates_section(m, s)
    if any(g.signature for g in s.agents) or any(v.crawl is not None for v in s.servers):
        out["crawl"] = crawl_section(m, s)
    return out


# who bears the gas of the approvals of each ``approval`` mode of an agent group
APPROVAL_PAYERS = {
    "approved": "nobody in the run (set before it: left out of costs)",
    "self": "agents",
    "sponsored-erc20": "facilitator (the ether it sent)",
    "sponsored-eip2612": "facilitator (inside its settleWithPermit)",
}


def channel_sections(m: RunMetrics, s: Scenario) -> dict:
    """``channels`` when an endpoint is paid by batch-settlement, and ``channels-vs-exact`` when
    others are paid per request in the same run (``channel_summary``)."""
    if not uses_channels(s):
        return {}
    out = {"channels": channels_section(m, s)}
    if any(not e.channels for server in s.servers for e in server.endpoints):
        out["channels-vs-exact"] = versus_section(m, s)
    return out


def mechanisms_section(m: RunMetrics, s: Scenario) -> dict:
    """Payments by mechanism (a scenario with a Permit2 endpoint):

    * ``by_mechanism``: per mechanism label (``exact/eip3009``, ``exact/permit2``, ``upto/permit2``)
      the paid requests, the settlement transactions on chain (and the failed ones), their gas
      (total, per settlement, USD per settlement at the scenario's fee model), and those settled
      with an EIP-2612 permit (``settleWithPermit``) with their gas per settlement;
    * ``upto``: per upto endpoint, the maxima the paid requests signed (``authorized_usdc``)
      against what was charged, the headroom (their difference: what a client had to hold and
      would have paid at an exact price set at the maximum), the share charged, the charges of 0,
      and ``at_mean_price``: an exact price set at the mean charge, which takes the same revenue
      from the same requests but overcharges the light ones (``overpaid_usdc``) and undercharges
      the heavy ones (``underpaid_usdc``);
    * ``approvals``: per approval mode of the groups, the payers' own ``approve`` transactions on
      chain, their gas and cost, and who bears it (``APPROVAL_PAYERS``);
    * ``sponsoring``: per facilitator offering an extension, the transactions that sent payers
      ether for their approval's gas (``erc20ApprovalGasSponsoring``), the ether sent (what the
      approval does not burn stays in the payer's wallet: a cost to the facilitator all the same)
      and those transactions' own gas. Their gas is also in the facilitator's ``gas_usd``; the
      ether sent is not (its margin is gas against fees). The EIP-2612 permits are in
      ``by_mechanism`` (``settled_with_permit``): their gas is in the settlement's."""
    mech, eth_usd = m.mechanisms, s.chain.eth_usd
    labels = []
    for server in s.servers:
        for e in server.endpoints:
            label = f"{e.scheme}/{e.method_of_transfer}"
            if label not in labels:
                labels.append(label)
    by_mechanism = {}
    for label in labels:
        n, gas, wei = mech.settlements[label], mech.gas[label], mech.wei[label]
        permits = mech.with_permit[label]
        by_mechanism[label] = {
            "paid": mech.paid[label],
            "settlements": n,
            "failed_transactions": mech.failed[label],
            "gas_used": gas,
            "gas_per_settlement": round(gas / n, 1) if n else None,
            "usd_per_settlement": round(wei / 1e18 * eth_usd / n, 9) if n else None,
            "settled_with_permit": permits,
            "gas_per_permit_settlement": round(mech.permit_gas[label] / permits, 1) if permits else None,
        }
    upto = {}
    for endpoint in sorted(mech.charges):
        charges = mech.charges[endpoint]
        paid = sum(charges.values())
        authorized, charged = mech.authorized[endpoint], mech.charged[endpoint]
        mean = charged / paid if paid else 0.0
        over = sum(k * (mean - c) for c, k in charges.items() if c < mean)
        under = sum(k * (c - mean) for c, k in charges.items() if c > mean)
        upto[endpoint] = {
            "paid": paid,
            "authorized_usdc": to_usdc(authorized),
            "charged_usdc": to_usdc(charged),
            "headroom_usdc": to_usdc(authorized - charged),
            "charged_share": round(charged / authorized, 6) if authorized else None,
            "zero_charges": charges.get(0, 0),
            "mean_charge_usdc": round(mean / UNIT, 6),
            "at_mean_price": {
                "revenue_usdc": round(mean * paid / UNIT, 6),
                "overpaid_usdc": round(over / UNIT, 6),
                "underpaid_usdc": round(under / UNIT, 6),
            },
        }
    modes = {g.approval for g in s.agents}
    approvals = {
        mode: {
            "transactions": mech.approvals[mode],
            "gas_used": mech.approval_gas[mode],
            "usd": round(mech.approval_wei[mode] / 1e18 * eth_usd, 6),
            "paid_by": APPROVAL_PAYERS[mode],
        }
        for mode in ("approved", "self", "sponsored-erc20", "sponsored-eip2612")
        if mode in modes
    }
    sponsoring = {}
    for f in s.facilitators:
        if f.sponsoring or mech.funding_txs[f.name]:
            sent, fees = mech.ether_sent[f.name], mech.funding_wei[f.name]
            sponsoring[f.name] = {
                "offers": list(f.sponsoring),
                "funding_transactions": mech.funding_txs[f.name],
                "ether_sent_eth": round(sent / 1e18, 12),
                "ether_sent_usd": round(sent / 1e18 * eth_usd, 6),
                "funding_gas_usd": round(fees / 1e18 * eth_usd, 6),
            }
    return {"by_mechanism": by_mechanism, "upto": upto, "approvals": approvals, "sponsoring": sponsoring}


def _usdc_per(amount: int, n: int) -> float | None:
    return round(amount / n / UNIT, 6) if n else None


def toolchain_section(m: RunMetrics, s: Scenario) -> dict:
    """Agents completing tasks from tools found in the Bazaar (a scenario with ``task`` groups):

    * ``tasks``: ``attempted``, ``completed``, ``abandoned`` (a step ran out of candidates) and
      ``unfinished`` (still running at the end);
    * ``spend_usdc``: what the task groups' agents transferred on chain, and
      ``cost_per_completed_task_usdc``: that spend over the tasks completed (None: none completed);
    * ``spend_by_tool_usdc``: the same transfers by the tool whose call carried the authorization
      (every listed tool, in file order), ``unattributed_usdc`` what no tool's call accounts for
      (a payment settled while its call was still unfinished at the end; 0 otherwise);
    * ``broken_tools`` (tools whose handler fails a share of its calls), ``broken_spend_usdc`` and
      ``broken_spend_share`` (of ``spend_usdc``);
    * ``tools``: per tool, its ``kind``, ``transport``, listed ``price_usdc`` (as built), ``fails``,
      ``reputation``, the ``calls`` tasks made to it, those ``paid`` and its ``spend_usdc``;
    * ``calls`` and ``failed_calls`` of the steps, ``discovery_queries``;
    * ``time_to_first_paid_call_ms``: per task started after the warm-up, from its start (discovery
      included) to the answer of its first paid call: ``count``, ``mean``, ``p50``, ``p95``;
    * ``groups``: per task group, its ``choose`` rule, its tasks and ``spend_usdc``, and its
      ``cost_per_completed_task_usdc``."""
    t = m.toolchain
    task_groups = [g for g in s.agents if g.task is not None]

    def tasks(group: str | None) -> dict[str, int]:
        names = [group] if group is not None else [g.name for g in task_groups]
        counts = {k: sum(t.tasks[(n, k)] for n in names) for k in ("attempted", "completed", "abandoned")}
        counts["unfinished"] = counts["attempted"] - counts["completed"] - counts["abandoned"]
        return counts

    spent = sum(m.spend[g.name] for g in task_groups)
    totals = tasks(None)
    tools: dict[str, dict] = {}
    broken: list[str] = []
    for name, e in s.tool_endpoints():
        tools[name] = {
            "kind": e.kind,
            "transport": e.transport,
            "price_usdc": to_usdc(e.price) if isinstance(e.price, int) else None,  # drawn: None
            "fails": e.fails,
            "reputation": e.reputation,
            "calls": t.calls[name],
            "paid": t.paid[name],
            "spend_usdc": to_usdc(t.spend[name]),
        }
        if e.fails > 0:
            broken.append(name)
    attributed = sum(t.spend[name] for name in tools)
    broken_spend = sum(t.spend[name] for name in broken)
    first = t.first_call
    percentiles = first.percentiles_ms((50, 95))
    groups = {}
    for g in task_groups:
        counts = tasks(g.name)
        task = g.task
        groups[g.name] = {
            "choose": task.choose if task is not None else None,
            **counts,
            "spend_usdc": to_usdc(m.spend[g.name]),
            "cost_per_completed_task_usdc": _usdc_per(m.spend[g.name], counts["completed"]),
        }
    return {
        "tasks": totals,
        "spend_usdc": to_usdc(spent),
        "cost_per_completed_task_usdc": _usdc_per(spent, totals["completed"]),
        "spend_by_tool_usdc": {name: tool["spend_usdc"] for name, tool in tools.items()},
        "unattributed_usdc": to_usdc(spent - attributed),
        "broken_tools": broken,
        "broken_spend_usdc": to_usdc(broken_spend),
        "broken_spend_share": _share(broken_spend, spent),
        "tools": tools,
        "calls": sum(t.steps[(g.name, "calls")] for g in task_groups),
        "failed_calls": sum(t.steps[(g.name, "failed_calls")] for g in task_groups),
        "discovery_queries": sum(t.queries[g.name] for g in task_groups),
        "time_to_first_paid_call_ms": {
            "count": first.count,
            "mean": round(1000 * first.mean, 3) if first.mean is not None else None,
            **percentiles,
        },
        "groups": groups,
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
            "fees_earned_usdc": to_usdc(fees),
            "mean_wait_ms": round(1000 * f.waits.total / f.waits.count, 3) if f.waits.count else 0.0,
            "max_queue": f.max_queue,
            "gas_eth": round(f.gas_wei / 1e18, 12),
            "gas_usd": round(gas_usd, 6),
            "margin_usd": round(fees / UNIT - gas_usd, 6),
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
            "revenue_usdc": to_usdc(tally.servers[name]["revenue"]),
        }
        for name in facts.servers
    }
    payees = {label: to_usdc(m.received[address]) for label, address in facts.payees.items()}
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
            "spend_usdc": to_usdc(m.spend[group.name]),
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
        **trust_sections(m, s),
        **({"mechanisms": mechanisms_section(m, s)} if s.uses_permit2() else {}),
        **channel_sections(m, s),
        **({"toolchain": toolchain_section(m, s)} if s.tasks() else {}),
        "invariants": invariants,
        "x402scan": x402scan,
        "chain": {"blocks": m.blocks, "height": m.height},
        "events": dict(sorted(events.items())),
        "resources": {
            "peak_rss_mb": round(peak_rss_mb, 1),
            "wall_seconds": round(wall_seconds, 3),
            "payments_per_wall_second": round(n_settled / wall_seconds, 1) if wall_seconds > 0 else None,
        },
        "tool": {"name": NAME, "version": VERSION},
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
    "channel_sections",
    "crawl_section",
    "failure_class",
    "governance_section",
    "mandates_section",
    "mechanisms_section",
    "reputation_section",
    "stable",
    "summary_from_shards",
    "toolchain_section",
]
