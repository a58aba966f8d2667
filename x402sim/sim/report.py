"""report.md, its plots and a terminal summary of a finished run.

Rules:

* Everything here reads what the run already computed (``SimResult.summary``, its latency
  sketches, timeline and daily series) and the scenario; no figure of the summary is recomputed,
  so the report and summary.json always agree. The latency CDF is the sketches' distribution (each
  step within 0.5 % of the samples it stands for).
* ``markdown_report(summary, scenario, images)`` is a pure function of its arguments. Wall-clock
  and resource figures appear only in its final "Run" line. It writes out ``report_blocks``, the
  report as Markdown lines and ``TableBlock``s, which ``report_html`` renders as report.html.
* A column's header and format follow the unit suffix of its summary key (``_usdc``, ``_usd``,
  ``_ms``, ``_rate``): USDC with at most 6 decimals, small USD amounts with 4 significant digits.
* Plots use ``matplotlib.figure.Figure`` on the Agg canvas, never pyplot: no GUI backend is
  needed, the global backend is left alone and no figure outlives its file. Sizes and dpi are
  fixed so each PNG stays small. With ``plots``, all three are written; one without data says so.
  A run with a trust section (``reputation``, ``mandates``, ``crawl``) also gets its figure
  (``TRUST_IMAGES``): revenue per registered server over time (garbage sellers dashed; from the
  run's ``TrustMetrics``), each mandated agent's spend against its budget, and crawler requests
  by kind and verdict.
* Charts name at most ``MAX_BARS`` facilitators or servers (the rest are summed as "others");
  Markdown tables show at most ``MAX_ROWS`` rows (the rest are in summary.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..money import UNIT
from .sketch import LatencyStats, as_stats

IMAGES = {"latency_cdf.png": "Latency CDF", "throughput.png": "Throughput", "economics.png": "Economics"}
# written only when the summary has the section they draw
TRUST_IMAGES = {
    "reputation.png": "Revenue per registered server over time",
    "mandates.png": "Spend against budget, per mandated agent",
    "crawl.png": "Crawler requests by kind and verdict",
}
KINDS = {
    "end_to_end": "request sent to answer received",
    "verify": "one verify call, as the server waits for it",
    "settle": "one settle call (until the facilitator answers), as the server waits for it",
    "finality": "request sent to its transfer being final",
}
UNITS = {"_usdc": "USDC", "_usd": "USD", "_ms": "ms"}
FACILITATOR_KEYS: tuple[str, ...] = (
    "settlements",
    "failed_transactions",
    "verify_requests",
    "settle_requests",
)
FACILITATOR_KEYS += ("fees_earned_usdc", "gas_usd", "margin_usd", "mean_wait_ms", "max_queue")
SERVER_KEYS = ("requests", "paid", "refused", "errors", "handler_runs", "revenue_usdc")
AGENT_KEYS = ("agents", "behaviour", "requests", "paid", "refused_by_policy", "spend_usdc", "success_rate")
SCAN_KEYS = ("transactions", "volume_usdc", "buyers", "sellers")
HEADLINE_KEYS = ("requests", "paid_requests", "settled_payments", "volume_usdc", "failed_requests")
GAS_KEYS = ("total_gas", "per_settlement", "usd", "usd_per_settlement", "l1_data_usd", "eth")
GAS_HEADERS = ["Total gas", "Per settlement", "Total (USD)", "Per settlement (USD)", "L1 data (USD)", "ETH"]
DPI = 100
MAX_BARS = 12
MAX_ROWS = 50
MAX_QUEUES = 8


# -- formatting --------------------------------------------------------------------------------------


def fmt_usdc(value: float | None) -> str:
    if value is None:
        return "–"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"  # scientific below 1e-4


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def fmt_num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def _cell(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if key.endswith("_rate"):
        return "–" if value is None else f"{100 * value:.2f} %"
    if key.endswith("_usdc"):
        return fmt_usdc(value)
    if key.endswith("_usd") or key.startswith("usd"):
        return fmt_usd(value)
    return fmt_ms(value) if key.endswith("_ms") else fmt_num(value)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _header(key: str) -> str:
    for suffix, unit in UNITS.items():
        if key.endswith(suffix):
            return f"{_label(key.removesuffix(suffix)).capitalize()} ({unit})"
    return _label(key).capitalize()


@dataclass(frozen=True)
class TableBlock:
    """A table of the report: headers, rows of formatted cells, one alignment letter per column
    ("l" or "r"). ``markdown()`` writes it for report.md (at most ``MAX_ROWS`` rows); report.html
    renders the same object (``report_html``)."""

    headers: list[str]
    rows: list[list]
    align: str

    def markdown(self) -> list[str]:
        out = [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|",
        ]
        for row in self.rows[:MAX_ROWS]:
            out.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
        if len(self.rows) > MAX_ROWS:
            out += ["", f"_{len(self.rows) - MAX_ROWS} more rows in summary.json._"]
        return [*out, ""]


# A report is a list of blocks: Markdown lines (headings, paragraphs, blank lines) and tables.
Block = str | TableBlock


def _table(headers: list[str], rows: list[list], align: str = "") -> list[Block]:
    """A table; ``align`` has one letter per column, "l" or "r" (default: l, then r)."""
    return [TableBlock(headers, rows, align or "l" + "r" * (len(headers) - 1))]


def _by_name(first: str, items: dict[str, dict], keys: tuple[str, ...]) -> list[Block]:
    rows = [[name, *(_cell(k, d[k]) for k in keys)] for name, d in items.items()]
    align = "l" + "".join("l" if k in ("behaviour", "kind", "transport") else "r" for k in keys)
    return _table([first, *map(_header, keys)], rows, align)


def _counts(first: str, counts: dict[str, int], verbatim: bool = False) -> list[Block]:
    """A two-column table of ``counts`` (``verbatim``: names as they are, e.g. refusal codes)."""
    rows = [[k if verbatim else _label(k), fmt_num(v)] for k, v in counts.items()]
    return _table([first, "Count"], rows)


# -- report.md ---------------------------------------------------------------------------------------


def _setup(summary: dict, scenario) -> list[list]:
    agents = sum(g["agents"] for g in summary["agents"].values())
    chain = summary.get("chain", {})
    rows = [
        ["Scenario", summary["scenario"]],
        ["Seed", summary["seed"]],
        ["Virtual time", f"{summary['virtual_seconds']:g} s"],
        ["Agents", f"{agents:,} in {len(summary['agents'])} group(s)"],
        ["Servers", len(summary["servers"])],
        ["Facilitators", len(summary["facilitators"])],
        ["Blocks", f"{chain.get('blocks', 0):,} produced, height {chain.get('height', 0):,}"],
    ]
    if scenario is None:
        return rows
    sim, ch = scenario.simulation, scenario.chain
    rows[2][1] = f"{sim.duration:g} s of arrivals (warm-up {sim.warmup:g} s), ended at {rows[2][1]}"
    rows[4][1] = f"{len(scenario.server_copies())} ({len(scenario.endpoint_keys())} endpoints)"
    fee = ch.fee.model_dump()
    model = fee.pop("model")
    preconf = f", preconfirmation every {ch.preconfirmation:g} s" if ch.preconfirmation else ""
    params = ", ".join(f"{k} = {v if isinstance(v, int) else f'{v:g}'}" for k, v in fee.items())
    return [
        *rows,
        ["Chain", f"block time {ch.block_time:g} s{preconf}, {ch.confirmations} confirmations"],
        ["Fee model", f"{model}: {params}"],
        ["ETH price", f"{ch.eth_usd:g} USD"],
        ["Token", ch.token.upper()],
        ["Faults", ", ".join(f"{f.kind} [{f.start:g}, {f.end:g})" for f in scenario.faults) or "none"],
    ]


def _targets(scan: dict) -> list[Block]:
    tolerance = scan["tolerance"]
    verdict = "within" if scan["within_tolerance"] else "**NOT within**"
    rows = []
    for key, t in scan["targets"].items():
        ok = "yes" if t["within_tolerance"] else "**no**"
        rows.append(
            [
                _label(key),
                _cell(key, scan[key]),
                _cell(key, t["target"]),
                f"{100 * t['deviation']:+.2f} %",
                ok,
            ]
        )
    head = f"Against the scenario's targets: {verdict} a tolerance of {100 * tolerance:g} %."
    return [
        "### Targets",
        "",
        head,
        "",
        *_table(["Figure", "Simulated", "Target", "Deviation", "Within"], rows),
    ]


def _daily(daily: list[dict]) -> list[Block]:
    rows = [[d["day"], *(_cell(k, d[k]) for k in SCAN_KEYS)] for d in daily]
    return _table(["Day", *map(_header, SCAN_KEYS)], rows, "r" * 5)


def _loss_line(g: dict) -> str:
    spend = g["attack_spend_usdc"]
    if not g["governed"]:
        payments = fmt_num(g["attack_payments_settled"]["without_governance"])
        return (
            f"No governor was at work in this run: attack-bound USDC that moved on chain: "
            f"{fmt_usdc(spend['without_governance'])} ({payments} payments of "
            f"{fmt_num(g['attack_requests'])} attack-bound requests)."
        )
    if g["loss_prevented_usdc"] is None:
        return (
            f"Attack-bound spend on chain: {fmt_usdc(spend['with_governance'])} USDC with governance "
            "(the counterfactual run without it was not made: `[governance] counterfactual = false`)."
        )
    return (
        f"Loss prevented: **{fmt_usdc(g['loss_prevented_usdc'])} USDC** (attack-bound USDC that moved "
        f"on chain: {fmt_usdc(spend['with_governance'])} with governance, "
        f"{fmt_usdc(spend['without_governance'])} without it, same seed)."
    )


MECHANISM_KEYS = (
    "paid",
    "settlements",
    "failed_transactions",
    "gas_per_settlement",
    "usd_per_settlement",
    "settled_with_permit",
    "gas_per_permit_settlement",
)
UPTO_KEYS = (
    "paid",
    "authorized_usdc",
    "charged_usdc",
    "headroom_usdc",
    "charged_share",
    "zero_charges",
    "mean_charge_usdc",
)


def _mechanisms(m: dict) -> list[Block]:
    """The mechanisms section: settlements and gas per mechanism, upto's charges, approvals and
    sponsored gas (a run with a Permit2 endpoint)."""
    out: list[Block] = ["## Mechanisms", "", *_by_name("Mechanism", m["by_mechanism"], MECHANISM_KEYS)]
    if m["upto"]:
        shares = {k: {**v, "charged_share": _share(v["charged_share"])} for k, v in m["upto"].items()}
        out += ["### upto: charged against authorized", "", *_by_name("Endpoint", shares, UPTO_KEYS)]
        at_mean = [
            [
                name,
                fmt_usdc(v["mean_charge_usdc"]),
                fmt_usdc(v["at_mean_price"]["revenue_usdc"]),
                fmt_usdc(v["at_mean_price"]["overpaid_usdc"]),
                fmt_usdc(v["at_mean_price"]["underpaid_usdc"]),
            ]
            for name, v in m["upto"].items()
        ]
        headers = ["Endpoint", "Exact price (USDC)", "Revenue (USDC)", "Overpaid (USDC)", "Underpaid (USDC)"]
        out += ["### upto against an exact price set at the mean charge", "", *_table(headers, at_mean)]
    if m["approvals"]:
        rows = [
            [mode, fmt_num(a["transactions"]), fmt_num(a["gas_used"]), fmt_usd(a["usd"]), a["paid_by"]]
            for mode, a in m["approvals"].items()
        ]
        headers = ["Approval", "Approve transactions", "Gas used", "Cost (USD)", "Paid by"]
        out += ["### Approvals of Permit2", "", *_table(headers, rows, "lrrrl")]
    if m["sponsoring"]:
        rows = [
            [
                name,
                ", ".join(f["offers"]) or "none",
                fmt_num(f["funding_transactions"]),
                f"{f['ether_sent_eth']:.6g}",
                fmt_usd(f["ether_sent_usd"]),
                fmt_usd(f["funding_gas_usd"]),
            ]
            for name, f in m["sponsoring"].items()
        ]
        headers = [
            "Facilitator",
            "Offers",
            "Fundings",
            "Ether sent (ETH)",
            "Ether sent (USD)",
            "Their gas (USD)",
        ]
        out += ["### Gas sponsoring", "", *_table(headers, rows, "llrrrr")]
    return out


VERSUS_KEYS = (
    "paid_requests",
    "transactions",
    "gas_used",
    "gas_per_paid_request",
    "transactions_per_paid_request",
    "usd_per_paid_request",
)


def _channels(c: dict, versus: dict | None) -> list[Block]:
    """The channels section (batch-settlement): transactions and gas per kind, per paid request,
    exposure, deposits and their cost, refunds and withdrawals, per server at the end; beside it,
    the per-request mechanisms of the same run."""
    out: list[Block] = ["## Channels (batch-settlement)", ""]
    per = c["per_paid_request"]
    out += [
        f"{fmt_num(c['paid_requests'])} paid requests served {fmt_usdc(c['served_usdc'])} USDC. Per paid "
        f"request, amortised over deposits, claims, settlements and refunds: {per['gas']} gas, "
        f"{per['transactions']} transactions, {fmt_usd(per['usd'])} USD.",
        "",
    ]
    rows = [[k, fmt_num(c["transactions"][k]), fmt_num(c["gas"][k])] for k in c["transactions"]]
    out += _table(["Transaction", "Count", "Gas used"], rows, "lrr")
    e = c["exposure"]
    out += [
        "### Sellers' exposure",
        "",
        *_table(
            ["Exposure", "Max (USDC)", "Time-weighted mean (USDC)"],
            [
                [
                    "served, not claimed",
                    fmt_usdc(e["max_unclaimed_usdc"]),
                    fmt_usdc(e["mean_unclaimed_usdc"]),
                ],
                [
                    "served, not settled",
                    fmt_usdc(e["max_unsettled_usdc"]),
                    fmt_usdc(e["mean_unsettled_usdc"]),
                ],
            ],
            "lrr",
        ),
    ]
    d, r, w = c["deposits"], c["refunds"], c["withdrawals"]
    out += [
        "### Deposits",
        "",
        f"{fmt_num(d['count'])} deposits of {fmt_usdc(d['total_usdc'])} USDC by {fmt_num(d['payers'])} "
        f"payers (max {fmt_usdc(d['max_per_payer_usdc'])} USDC a payer); "
        f"{fmt_usdc(d['locked_at_end_usdc'])} USDC still locked at the end. Locking them cost the "
        f"payers {fmt_usd(d['cost_to_payers_usd'])} USD ({d['locked_usdc_days']} USDC-days at "
        f"{100 * d['annual_rate']:.2f} % a year). Refunds: {fmt_num(r['count'])} "
        f"({fmt_usdc(r['amount_usdc'])} USDC); withdrawals finalized: {fmt_num(w['finalized'])} "
        f"({fmt_usdc(w['amount_usdc'])} USDC).",
        "",
    ]
    servers = c["by_server"]
    keys = (
        "channels",
        "served_usdc",
        "claimed_on_chain_usdc",
        "unclaimed_at_end_usdc",
        "race_served_usdc",
        "race_lost_usdc",
    )
    out += ["### By server, at the end", "", *_by_name("Server", servers, keys)]
    if c["withdraw_race_lost_usdc"]:
        out += [
            f"Withdraw-race payers took {fmt_usdc(c['withdraw_race_lost_usdc'])} USDC of served value.",
            "",
        ]
    if versus:
        out += [
            "### Channels against per-request settlement",
            "",
            *_by_name("Mechanism", versus, VERSUS_KEYS),
        ]
    return out


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _governance(g: dict) -> list[Block]:
    """The governance section: what was blocked, what got through, how fast agents were cut off."""
    honest, cut, appr = g["honest_payments_blocked"], g["time_to_cutoff_s"], g["approvals"]
    share = "–" if honest["share"] is None else f"{100 * honest['share']:.2f} %"
    settled = g["attack_payments_settled"]
    leaked = g["attack_payments_after_cutoff_on_chain"], g["payments_after_freeze_on_chain"]
    rows = [
        ["Decisions", ", ".join(f"{k} {fmt_num(v)}" for k, v in g["decisions"].items()) or "none"],
        [
            "Approvals requested / granted / refused",
            f"{appr['requested']} / {appr['granted']} / {appr['refused']}",
        ],
        ["Attack-bound requests", fmt_num(g["attack_requests"])],
        ["Attack payments blocked", fmt_num(g["attack_payments_blocked"])],
        [
            "Attack payments settled, with / without governance",
            f"{fmt_num(settled['with_governance'])} / {fmt_num(settled['without_governance'])}",
        ],
        [
            "Honest payments blocked (false positives)",
            f"{honest['count']:,} ({share}, {fmt_usdc(honest['usdc'])} USDC)",
        ],
        ["Compromised agents' own payments blocked", fmt_num(g["collateral_payments_blocked"])],
        [
            "Time to cut-off (s): agents, mean, max",
            f"{cut['count']}, {fmt_num(cut['mean'] and round(cut['mean'], 1))}, "
            f"{fmt_num(cut['max'] and round(cut['max'], 1))}",
        ],
        ["Attacked agents / not cut off", f"{g['attacked_agents']} / {g['attacked_agents_not_cut_off']}"],
        ["Honest agents frozen", fmt_num(g["honest_agents_frozen"])],
        [
            "Attack payments after cut-off, on chain",
            f"**{leaked[0]}**" if leaked[0] else "0",
        ],
        ["Payments signed while frozen, on chain", f"**{leaked[1]}**" if leaked[1] else "0"],
    ]
    audit = g.get("audit")
    rows.append(
        [
            "Audit log",
            f"{audit['entries']:,} entries, head `{audit['head']}`" if audit else "none (sharded run)",
        ]
    )
    blocked = [
        [policy, rule, fmt_num(g["payments_blocked"][policy][rule]), fmt_usdc(usdc)]
        for policy, rules in g["spend_blocked_usdc"].items()
        for rule, usdc in sorted(rules.items(), key=lambda kv: -kv[1])
    ]
    out: list[Block] = ["## Governance", "", _loss_line(g), ""]
    if not g["governed"]:
        return out
    out += _table(["Figure", "Value"], rows, "lr")
    out += ["### Blocked, by rule", "", "`frozen`: denied because the agent was frozen already.", ""]
    out += _table(["Policy", "Rule", "Payments", "USDC"], blocked, "llrr") if blocked else ["None.", ""]
    if g["freezes_by_trigger"]:
        out += ["### Freezes, by trigger", "", *_counts("Trigger", g["freezes_by_trigger"])]
    return out


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f} %"


def _reputation(r: dict) -> list[Block]:
    """ERC-8004: registered servers, what they earned and the reputation the registry holds."""
    rows = []
    for name, d in r["servers"].items():
        delivers = d["delivers"] if d["delivers"] == "good" else f"garbage ({_pct(d['garbage_share'])})"
        rows.append(
            [
                name,
                fmt_num(d["agent_id"]),
                delivers,
                fmt_num(d["payments"]),
                fmt_usdc(d["revenue_usdc"]),
                fmt_num(d["feedback"]),
                fmt_num(d["reputation"]),
            ]
        )
    headers = ["Server", "Agent id", "Delivers", "Payments", "Revenue (USDC)", "Feedback", "Reputation"]
    groups = []
    for name, g in r["groups"].items():
        share = g["garbage_spend_share"]
        groups.append(
            [
                name,
                g["choice"],
                "yes" if g["feedback"] else "no",
                fmt_usdc(g["spend_usdc"]),
                _pct(share["first_quarter"]),
                _pct(share["last_quarter"]),
                _pct(share["whole_run"]),
            ]
        )
    f = r["feedback"]
    feedback = (
        f"giveFeedback transactions: {f['sent']:,} sent, {f['mined']:,} mined, {f['reverted']:,} reverted"
        + (f", {f['not_sent']:,} refused by the pool" if f["not_sent"] else "")
        + ". Reputation: the registry's mean of the feedback tagged `x402-resource-delivered` (0-100), "
        "read at the end of the run."
    )
    return [
        "## Reputation (ERC-8004)",
        "",
        feedback,
        "",
        *_table(headers, rows, "lrlrrrr"),
        "### Spend on garbage servers, by group",
        "",
        "Share of each group's USDC settled on chain that went to servers delivering garbage.",
        "",
        *_table(
            ["Group", "Choice", "Feedback", "Spend (USDC)", "First quarter", "Last quarter", "Whole run"],
            groups,
            "lllrrrr",
        ),
    ]


def _mandates(m: dict) -> list[Block]:
    """AP2: payments under mandate, refusals by code, and the two checks on chain."""
    outside, unbound = m["settled_outside_mandate"], m["settled_without_valid_mandate"]
    rows = [
        ["Payments under mandate", fmt_num(m["payments_under_mandate"])],
        ["Settled", fmt_num(m["settled"])],
        ["Refused by a server's mandate check", fmt_num(m["refused"])],
        [
            "Settled outside a mandate, on chain (USDC, payments)",
            f"**{fmt_usdc(outside['usdc'])}, {outside['payments']}**" if outside["payments"] else "0, 0",
        ],
        ["Settled without a valid mandate chain as nonce", f"**{unbound}**" if unbound else "0"],
    ]
    groups = [
        [
            name,
            f"{fmt_usdc(g['amount_range_usdc'][0])}-{fmt_usdc(g['amount_range_usdc'][1])}",
            fmt_usdc(g["budget_usdc"]),
            ", ".join(g["allowed_payees"]) if g["allowed_payees"] is not None else "any",
            fmt_num(g["payments"]),
            fmt_num(g["settled"]),
            fmt_num(g["refused"]),
            fmt_usdc(g["spend_usdc"]),
            fmt_usdc(g["max_agent_spend_usdc"]),
        ]
        for name, g in m["groups"].items()
    ]
    headers = ["Group", "Amount range (USDC)", "Budget (USDC)", "Payees", "Payments", "Settled", "Refused"]
    headers += ["Spend (USDC)", "Top agent (USDC)"]
    out = ["## Mandates (AP2)", "", *_table(["Figure", "Value"], rows, "lr")]
    out += ["### By group", "", "Budget per agent; top agent: the agent that spent most.", ""]
    out += _table(headers, groups, "llrlrrrrr")
    if m["refused_by_code"]:
        out += ["### Refused, by code", "", *_counts("Code", m["refused_by_code"], verbatim=True)]
    return out


CRAWL_KEYS = ("requests", "blocked", "charged", "paid", "free", "revenue_usdc", "payments_on_chain")


def _crawl(c: dict) -> list[Block]:
    """RFC 9421: requests by crawler kind and verdict, revenue, and why requests were blocked."""
    out = ["## Crawl (RFC 9421 signatures)", "", *_by_name("Crawler kind", c["by_kind"], CRAWL_KEYS)]
    out += ["### By group", "", *_by_name("Group", c["by_group"], ("kind", *CRAWL_KEYS))]
    if c["blocked_reasons"]:
        out += ["### Blocked, by reason", "", *_counts("Code", c["blocked_reasons"], verbatim=True)]
    return out


TOOL_KEYS = ("kind", "transport", "price_usdc", "fails", "reputation", "calls", "paid", "spend_usdc")
TASK_GROUP_KEYS = ("attempted", "completed", "abandoned", "unfinished", "spend_usdc")


def _toolchain(t: dict) -> list[Block]:
    """Tasks from Bazaar tools: tasks completed, cost per task, spend by tool and on broken tools,
    time to the first paid call."""
    tasks, first = t["tasks"], t["time_to_first_paid_call_ms"]
    rows = [
        [
            "Tasks completed / attempted",
            f"{fmt_num(tasks['completed'])} / {fmt_num(tasks['attempted'])} "
            f"({fmt_num(tasks['abandoned'])} abandoned, {fmt_num(tasks['unfinished'])} unfinished)",
        ],
        ["Spend on chain (USDC)", fmt_usdc(t["spend_usdc"])],
        ["Cost per completed task (USDC)", fmt_usdc(t["cost_per_completed_task_usdc"])],
        [
            "Spend on broken tools (USDC)",
            f"{fmt_usdc(t['broken_spend_usdc'])} ({_share(t['broken_spend_share'])})",
        ],
        [
            "Calls / failed, discovery queries",
            f"{t['calls']:,} / {t['failed_calls']:,}, {t['discovery_queries']:,}",
        ],
        [
            "Time to first paid call (ms): mean, p50, p95",
            f"{fmt_ms(first['mean'])}, {fmt_ms(first['p50'])}, {fmt_ms(first['p95'])} "
            f"({fmt_num(first['count'])} tasks)",
        ],
    ]
    if t["unattributed_usdc"]:
        rows.append(["Spend no tool call accounts for (USDC)", fmt_usdc(t["unattributed_usdc"])])
    groups = [
        [
            name,
            g["choose"],
            *(_cell(k, g[k]) for k in TASK_GROUP_KEYS),
            fmt_usdc(g["cost_per_completed_task_usdc"]),
        ]
        for name, g in t["groups"].items()
    ]
    headers = ["Group", "Choice rule", *map(_header, TASK_GROUP_KEYS), "Per completed task (USDC)"]
    tools = {
        name: {
            **tool,
            "kind": tool["kind"] or "",
            "fails": _pct(tool["fails"]),
            "reputation": _cell("r", tool["reputation"]),
        }
        for name, tool in t["tools"].items()
    }
    broken = ", ".join(f"`{name}`" for name in t["broken_tools"]) or "none"
    return [
        "## Toolchain (tasks from Bazaar tools)",
        "",
        *_table(["Figure", "Value"], rows, "lr"),
        "### By group",
        "",
        *_table(headers, groups, "ll" + "r" * (len(headers) - 2)),
        "### By tool",
        "",
        f"Spend is read on chain, by the tool whose call carried the payment. Broken tools: {broken}.",
        "",
        *_by_name("Tool", tools, TOOL_KEYS),
    ]


def markdown_report(summary: dict, scenario=None, images=(), daily: list[dict] | None = None) -> str:
    """The text of report.md for ``summary``; ``scenario`` (optional) adds what was configured,
    ``images`` are the PNG file names to embed, ``daily`` (``SimResult.daily``) a table per day."""
    lines: list[str] = []
    for block in report_blocks(summary, scenario, images, daily):
        lines += block.markdown() if isinstance(block, TableBlock) else [block]
    return "\n".join(lines) + "\n"


def report_blocks(summary: dict, scenario=None, images=(), daily: list[dict] | None = None) -> list[Block]:
    """The report as blocks (``markdown_report``'s arguments): Markdown lines and tables, in order."""
    s = summary
    out: list[Block] = [f"# Simulation report: {s['scenario']}", ""]
    if scenario is not None and scenario.simulation.description:
        out += [f"> {scenario.simulation.description}", ""]
    out += ["## What was simulated", "", *_table(["Setting", "Value"], _setup(s, scenario), "ll")]

    figures = {**s, "failed_requests": sum(s["failures"].values())}
    head = _table([*map(_header, HEADLINE_KEYS)], [[_cell(k, figures[k]) for k in HEADLINE_KEYS]])
    out += ["## Headline", "", *head]
    failures = dict(sorted(s["failures"].items(), key=lambda kv: -kv[1]))
    out += ["### Failures by class", "", *(_counts("Class", failures) if failures else ["None.", ""])]

    by_kind = [[k, *(fmt_ms(s["latency_ms"][k][p]) for p in ("p50", "p90", "p99")), KINDS[k]] for k in KINDS]
    lat = _table(["Kind", "p50", "p90", "p99", "Measured as"], by_kind, "lrrrl")
    out += ["## Latency (ms, warm-up excluded)", "", *lat]
    gas = [[_cell(k, s["gas"][k]) if k != "eth" else f"{s['gas'][k]:.6g}" for k in GAS_KEYS]]
    out += ["## Gas", "", *_table(GAS_HEADERS, gas, "r" * 6)]

    out += ["## Facilitators", "", *_by_name("Facilitator", s["facilitators"], FACILITATOR_KEYS)]
    out += ["## Servers", "", *_by_name("Server", s["servers"], SERVER_KEYS)]
    payees = [[name, fmt_usdc(v)] for name, v in s.get("payees", {}).items()]
    out += ["### Received on chain, by payee", "", *_table(["Payee", "USDC"], payees, "lr")]
    keys = (*AGENT_KEYS, "denied") if "governance" in s else AGENT_KEYS
    out += ["## Agent groups", "", *_by_name("Group", s["agents"], keys)]
    out += ["## Security", "", *_counts("Counter", s["security"])]
    if "governance" in s:
        out += _governance(s["governance"])

    if "reputation" in s:
        out += _reputation(s["reputation"])
    if "mandates" in s:
        out += _mandates(s["mandates"])
    if "crawl" in s:
        out += _crawl(s["crawl"])
    if "mechanisms" in s:
        out += _mechanisms(s["mechanisms"])
    if "channels" in s:
        out += _channels(s["channels"], s.get("channels-vs-exact"))
    if "toolchain" in s:
        out += _toolchain(s["toolchain"])

    broken = [k for k, ok in s["invariants"].items() if not ok]
    verdict = f"**VIOLATED: {', '.join(broken)}**" if broken else "All invariants hold."
    out += ["## Invariants", "", verdict, ""]
    holds = [[k, "yes" if ok else "**VIOLATED**"] for k, ok in s["invariants"].items()]
    out += _table(["Invariant", "Holds"], holds, "ll")

    scan = {"all facilitators": s["x402scan"], **s["x402scan"]["per_facilitator"]}
    out += ["## x402scan", "", *_by_name("Scope", scan, SCAN_KEYS)]
    if s["x402scan"].get("targets"):
        out += _targets(s["x402scan"])
    if daily is not None and len(daily) > 1:
        out += ["### Per virtual day", "", *_daily(daily)]
    if s.get("events"):
        out += ["## Events", "", *_counts("Event", s["events"])]
    if images:
        titles = {**IMAGES, **TRUST_IMAGES}
        out += ["## Plots", ""] + [f"![{titles.get(name, name)}]({name})\n" for name in images]

    r = s.get("resources", {})
    rate = fmt_num(r.get("payments_per_wall_second"))
    wall, rss = r.get("wall_seconds", 0), r.get("peak_rss_mb", 0)
    out += ["---", "", f"Run: {wall:g} wall seconds, {rate} payments per wall-second, peak RSS {rss:g} MB."]
    return out


# -- plots -------------------------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _nothing(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_axis_off()


def latency_figure(latencies: dict[str, LatencyStats | list[float]]) -> Figure:
    """The CDF of each latency kind, from its sketch (or from raw samples, in seconds)."""
    fig = _figure((8, 4.5))
    ax = fig.add_subplot()
    series = {k: as_stats(latencies.get(k)) for k in KINDS}
    series = {k: v for k, v in series.items() if v.count}
    if not series:
        _nothing(ax, "latency samples")
        return fig
    positive = []
    for kind, stats in series.items():
        values, fractions = stats.cdf()
        ms = np.asarray(values) * 1000
        ax.step(ms, fractions, where="post", label=f"{_label(kind)} (n={stats.count:,})")
        positive += [v for v in ms if v > 0]
    if positive and max(positive) > 100 * min(positive):
        ax.set_xscale("log")
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests", ylim=(0, 1.02), title="Latency CDF")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def throughput_figure(timeline: list[list], end_of_arrivals: float | None = None, until: float | None = None):
    """Rates and queues per timeline bucket. Buckets that start at or after ``until`` (the run's
    end; the timeline is sized for the longest possible drain) are left out."""
    fig = _figure((8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    timeline = [r for i, r in enumerate(timeline) if i == 0 or until is None or float(r[0]) < until]
    if not timeline:
        _nothing(top, "timeline")
        _nothing(bottom, "timeline")
        return fig
    start, end = (np.array([float(r[i]) for r in timeline]) for i in (0, 1))
    edges = np.append(start, end[-1])

    def steps(ax, values, **kw) -> None:
        values = np.asarray(values, dtype=float)
        ax.step(edges, np.append(values, values[-1]), where="post", **kw)

    for i, name, color in ((2, "requests", "tab:blue"), (3, "paid", "tab:green"), (4, "failures", "tab:red")):
        steps(top, [float(r[i]) for r in timeline] / (end - start), label=name, color=color)
    top.set(ylabel="per second (virtual)", title="Throughput")
    steps(bottom, [float(r[5]) for r in timeline], label="pending txs", color="black")
    queues = [{n: int(v) for n, _, v in (p.partition("=") for p in r[6].split(";") if p)} for r in timeline]
    names = sorted({n for q in queues for n in q}, key=lambda n: -max(q.get(n, 0) for q in queues))
    for name in names[:MAX_QUEUES]:
        steps(bottom, [q.get(name, 0) for q in queues], label=f"queue {name}")
    if len(names) > MAX_QUEUES:
        rest = [sum(q.get(n, 0) for n in names[MAX_QUEUES:]) for q in queues]
        steps(bottom, rest, label=f"queues of {len(names) - MAX_QUEUES} others")
    bottom.set(xlabel="virtual time (s)", ylabel="count, sampled mid-bucket")
    for ax in (top, bottom):
        if end_of_arrivals is not None:
            ax.axvline(end_of_arrivals, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    return fig


def _capped(items: dict[str, dict], keys: tuple[str, ...], rank: str) -> tuple[list[str], dict[str, list]]:
    """Names and values per key: the ``MAX_BARS - 1`` largest by ``rank``, then the rest summed."""
    names = list(items)
    if len(names) <= MAX_BARS:
        return names, {k: [items[n][k] for n in names] for k in keys}
    names.sort(key=lambda n: -items[n][rank])
    kept, rest = names[: MAX_BARS - 1], names[MAX_BARS - 1 :]
    values = {k: [items[n][k] for n in kept] + [sum(items[n][k] for n in rest)] for k in keys}
    return [*kept, f"{len(rest)} others"], values


def _bars(ax, names: list[str], series: dict[str, list], title: str, ylabel: str) -> None:
    if not names:
        _nothing(ax, title.lower())
        return
    width = 0.8 / len(series)
    for i, (key, values) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + (i - (len(series) - 1) / 2) * width, values, width, label=_header(key))
    labels = [n if len(n) <= 16 else f"{n[:7]}…{n[-8:]}" for n in names]  # unique tails: "…-name-14"
    crowded = {"rotation": 35, "ha": "right"} if len(names) > 4 else {}
    ax.set_xticks(range(len(names)), labels, **crowded)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")


def economics_figure(summary: dict) -> Figure:
    fig = _figure((10, 4.5))
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    keys = ("fees_earned_usdc", "gas_usd", "margin_usd")
    _bars(left, *_capped(summary["facilitators"], keys, "settlements"), "Facilitators", "USD or USDC")
    _bars(right, *_capped(summary["servers"], ("revenue_usdc",), "revenue_usdc"), "Servers", "revenue (USDC)")
    return fig


def reputation_figure(summary: dict, trust, bucket: float) -> Figure:
    """Cumulative USDC received per registered server over virtual time (``trust``: the run's
    ``TrustMetrics``, one value per timeline bucket of ``bucket`` seconds); garbage sellers dashed."""
    fig = _figure((8, 4.5))
    ax = fig.add_subplot()
    servers = summary["reputation"]["servers"]
    until = summary["virtual_seconds"]
    drawn = False
    for name, d in servers.items():
        buckets = trust.received.get(name) if trust is not None else None
        if not buckets:
            continue
        n = max(1, min(len(buckets), int(-(-until // bucket))))
        times = np.arange(n + 1) * bucket
        total = np.concatenate([[0.0], np.cumsum(np.asarray(buckets[:n], dtype=float) / UNIT)])
        garbage = d["delivers"] == "garbage"
        label = f"{name} (garbage)" if garbage else name
        ax.plot(
            times, total, linestyle="--" if garbage else "-", linewidth=2 if garbage else 1.2, label=label
        )
        drawn = True
    if not drawn:
        _nothing(ax, "revenue")
        return fig
    ax.set(xlabel="virtual time (s)", ylabel="USDC received on chain (cumulative)")
    ax.set_title("Revenue per registered server (dashed: delivers garbage)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


MAX_AGENTS = 40


def mandates_figure(summary: dict, scenario, trust) -> Figure:
    """Each mandated agent's USDC settled on chain, against its mandate's budget (a black tick);
    at most ``MAX_AGENTS`` agents, those closest to (or over) their budget."""
    fig = _figure((10, 4.5))
    ax = fig.add_subplot()
    budgets = {g.name: g.mandate.budget for g in scenario.agents if g.mandate is not None} if scenario else {}
    spend = dict(trust.agent_spend) if trust is not None else {}
    agents = [
        (name, spend.get(name, 0), budgets[group])
        for group, budget in budgets.items()
        for name in (f"{group}-{i}" for i in range(summary["mandates"]["groups"][group]["agents"]))
    ]
    if not agents:
        _nothing(ax, "mandated agents")
        return fig
    if len(agents) > MAX_AGENTS:
        keep = set(
            sorted(range(len(agents)), key=lambda i: -agents[i][1] / max(agents[i][2], 1))[:MAX_AGENTS]
        )
        agents = [a for i, a in enumerate(agents) if i in keep]
    x = np.arange(len(agents))
    spent = np.array([a[1] for a in agents], dtype=float) / UNIT
    budget = np.array([a[2] for a in agents], dtype=float) / UNIT
    colors = ["tab:red" if s > b else "tab:blue" for s, b in zip(spent, budget, strict=True)]
    ax.bar(x, spent, 0.7, color=colors, label="settled on chain")
    ax.scatter(x, budget, marker="_", s=300, color="black", linewidths=2, label="budget", zorder=3)
    ax.set_xticks(x, [a[0] for a in agents], rotation=60, ha="right", fontsize="small")
    ax.set(ylabel="USDC", title="Spend against budget, per mandated agent (red: over budget)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


CRAWL_VERDICTS = (
    ("blocked", "tab:red"),
    ("charged, not paid", "tab:orange"),
    ("paid", "tab:green"),
    ("free", "tab:blue"),
)


def crawl_figure(summary: dict) -> Figure:
    """Requests per crawler kind, stacked by verdict: blocked, charged but unpaid, paid, free."""
    fig = _figure((8, 4.5))
    ax = fig.add_subplot()
    kinds = summary["crawl"]["by_kind"]
    if not kinds:
        _nothing(ax, "crawlers")
        return fig
    names = list(kinds)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for verdict, color in CRAWL_VERDICTS:
        if verdict == "charged, not paid":
            values = np.array([kinds[n]["charged"] - kinds[n]["paid"] for n in names], dtype=float)
        else:
            values = np.array([kinds[n][verdict] for n in names], dtype=float)
        ax.bar(x, values, 0.6, bottom=bottom, color=color, label=verdict)
        bottom += values
    ax.set_xticks(x, names)
    top = 1.2 * max(bottom.max(), 1)  # room for the legend above the bars
    ax.set(ylabel="requests", title="Crawler requests by kind and verdict", ylim=(0, top))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=4, loc="upper center")
    return fig


def write_report(result, scenario, folder, plots: bool = True) -> Path:
    """Write ``folder/report.md`` and, when ``plots``, the PNGs it embeds (three, and one per trust
    section the summary has); returns report.md."""
    folder = Path(folder)
    images = []
    if plots:
        end = scenario.simulation.duration if scenario is not None else None
        ran = result.summary["virtual_seconds"]
        metrics = getattr(result, "metrics", None)
        trust = getattr(metrics, "trust", None)
        figures = {
            "latency_cdf.png": lambda: latency_figure(result.latencies),
            "throughput.png": lambda: throughput_figure(result.timeline, end, ran),
            "economics.png": lambda: economics_figure(result.summary),
        }
        if "reputation" in result.summary and metrics is not None:
            bucket = metrics.timeline.bucket
            figures["reputation.png"] = lambda: reputation_figure(result.summary, trust, bucket)
        if "mandates" in result.summary:
            figures["mandates.png"] = lambda: mandates_figure(result.summary, scenario, trust)
        if "crawl" in result.summary:
            figures["crawl.png"] = lambda: crawl_figure(result.summary)
        for name, make in figures.items():
            make().savefig(folder / name, dpi=DPI)
            images.append(name)
    path = folder / "report.md"
    daily = getattr(result, "daily", None)
    path.write_text(markdown_report(result.summary, scenario, images, daily), encoding="utf-8")
    return path


# -- the governance trade-off -------------------------------------------------------------------------


def tradeoff_figure(points: list[dict], label: str = "velocity trigger max (USDC in 60 s)") -> Figure:
    """Loss prevented against honest payments blocked, one point per setting (``points`` as
    ``study.governance_tradeoff`` returns them), each labelled with its value; the dashed line is
    the attack-bound spend without governance (all there was to prevent)."""
    fig = _figure((8, 5))
    ax = fig.add_subplot()
    if not points:
        _nothing(ax, "runs")
        return fig
    xs = [100 * (p["honest_blocked_share"] or 0.0) for p in points]
    ys = [p["loss_prevented_usdc"] for p in points]
    ceiling = points[0]["without_governance_usdc"]
    ax.plot(xs, ys, "o-", color="tab:blue", label=f"one run per {label}")
    for i, (x, y, p) in enumerate(zip(xs, ys, points, strict=True)):
        ax.annotate(str(p["value"]), (x, y), textcoords="offset points", xytext=(6, -14 if i % 2 else 6))
    ax.axhline(
        ceiling, color="grey", linestyle="--", linewidth=1, label="attack-bound spend without governance"
    )
    ax.set(
        xlabel="honest payments blocked (% of the honest payments put to a governor)",
        ylabel="loss prevented (USDC, same seed without governance)",
        title="Loss prevented against honest payments blocked",
        xlim=(0, max(xs) * 1.08 + 1),
        ylim=(0, ceiling * 1.1),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


# -- terminal ----------------------------------------------------------------------------------------


def _governance_rows(g: dict) -> list[tuple]:
    spend, honest, cut = g["attack_spend_usdc"], g["honest_payments_blocked"], g["time_to_cutoff_s"]
    if not g["governed"]:
        text = f"{fmt_usdc(spend['without_governance'])} USDC, no governor at work"
        return [("attack-bound spend", Text(text, style="yellow"))]
    if g["loss_prevented_usdc"] is None:
        loss = f"attack-bound spend {fmt_usdc(spend['with_governance'])} USDC (no counterfactual run)"
    else:
        without, with_ = fmt_usdc(spend["without_governance"]), fmt_usdc(spend["with_governance"])
        loss = f"{fmt_usdc(g['loss_prevented_usdc'])} USDC (attack-bound spend {without} -> {with_})"
    share = "" if honest["share"] is None else f", {100 * honest['share']:.2f} %"
    rows = [
        ("loss prevented", Text(loss, style="green")),
        ("honest payments blocked", f"{honest['count']:,} ({fmt_usdc(honest['usdc'])} USDC{share})"),
    ]
    if cut["count"]:
        cutoff = f"{cut['count']} agents, mean {cut['mean']:.1f} s, max {cut['max']:.1f} s"
    else:
        cutoff = "none frozen"
    rows.append(("cut-off", f"{cutoff}; {g['attacked_agents_not_cut_off']} attacked agents not cut off"))
    appr = g["approvals"]
    rows.append(("approvals", f"{appr['requested']} requested, {appr['granted']} granted"))
    leaked = g["attack_payments_after_cutoff_on_chain"] + g["payments_after_freeze_on_chain"]
    if leaked:
        rows.append(("paid after cut-off", Text(f"{leaked} on chain", style="bold red")))
    return rows


def _trust_rows(s: dict) -> list[tuple]:
    rows: list[tuple] = []
    r = s.get("reputation")
    if r is not None:
        for name, g in r["groups"].items():
            share = g["garbage_spend_share"]
            text = f"{_pct(share['first_quarter'])} -> {_pct(share['last_quarter'])} ({g['choice']})"
            rows.append((f"garbage share {name}", text))
        bad, good = r["garbage_servers_max_reputation"], r["good_servers_min_reputation"]
        rows.append(("reputation on chain", f"garbage servers <= {fmt_num(bad)}, good >= {fmt_num(good)}"))
    m = s.get("mandates")
    if m is not None:
        codes = ", ".join(
            f"{k} {v:,}" for k, v in sorted(m["refused_by_code"].items(), key=lambda kv: -kv[1])
        )
        rows.append(
            (
                "under mandate",
                f"{m['payments_under_mandate']:,} payments, {m['settled']:,} settled, "
                f"{m['refused']:,} refused" + (f" ({codes})" if codes else ""),
            )
        )
        outside, unbound = m["settled_outside_mandate"], m["settled_without_valid_mandate"]
        leak = outside["payments"] or unbound
        text = f"{fmt_usdc(outside['usdc'])} USDC outside a mandate, {unbound} without a valid mandate nonce"
        rows.append(("mandates on chain", Text(text, style="bold red" if leak else "green")))
    c = s.get("crawl")
    if c is not None:
        for kind, k in c["by_kind"].items():
            text = (
                f"{k['requests']:,} requests: {k['blocked']:,} blocked, {k['paid']:,} paid "
                f"({fmt_usdc(k['revenue_usdc'])} USDC), {k['free']:,} free"
            )
            rows.append((f"crawl {kind}", text))
    return rows


def terminal_summary(summary: dict) -> Group:
    """A short rich rendering of ``summary`` for the end of a run."""
    s, g, facs = summary, summary["gas"], summary["facilitators"]
    counts = f"{s['requests']:,} / {s['paid_requests']:,} / {s['settled_payments']:,}"
    rows: list[tuple[str, str | Text]] = [("requests / paid / settled", counts)]
    if s["failures"]:
        top = ", ".join(f"{k} {v:,}" for k, v in sorted(s["failures"].items(), key=lambda kv: -kv[1])[:3])
        rows.append(("failed", f"{sum(s['failures'].values()):,} ({top})"))
    rows.append(("volume", f"{fmt_usdc(s['volume_usdc'])} USDC"))
    for kind in ("end_to_end", "settle"):
        p = s["latency_ms"][kind]
        rows.append((f"{_label(kind)} p50 / p99", f"{fmt_ms(p['p50'])} / {fmt_ms(p['p99'])} ms"))
    each = f"{fmt_num(g['per_settlement'])} gas, {fmt_usd(g['usd_per_settlement'])} USD"
    rows.append(("gas per settlement", f"{each} (total {fmt_usd(g['usd'])} USD)"))
    if len(facs) <= 3:
        rows += [(f"margin {name}", f"{fmt_usd(f['margin_usd'])} USD") for name, f in facs.items()]
    else:
        total = fmt_usd(sum(f["margin_usd"] for f in facs.values()))
        rows.append((f"margin, {len(facs)} facilitators", f"{total} USD"))
    incidents = [f"{_label(k)} {v:,}" for k, v in s["security"].items() if v]
    if incidents:
        rows.append(("security", Text(", ".join(incidents), style="yellow")))
    if "governance" in s:
        rows += _governance_rows(s["governance"])
    rows += _trust_rows(s)
    broken = [k for k, ok in s["invariants"].items() if not ok]
    ok = Text("all hold", style="green")
    verdict = Text(f"VIOLATED: {', '.join(broken)}", style="bold red") if broken else ok
    title = f"{s['scenario']} (seed {s['seed']}, {s['virtual_seconds']:g} virtual s)"
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in [*rows, ("invariants", verdict)]:
        table.add_row(label, value)
    return Group(table)
