"""Everything a run counts, as one object that pickles and merges; and the bounded state feeding it.

Theory of operation. A run keeps no record per payment. Rows are counted as they are written
(``Tally``), latencies go into sketches (``sketch.LatencyStats``), and the chain's receipts are
folded into running figures as their blocks are mined (``ChainFolder``), after which the chain may
forget them. The security figures and two invariants are judged per authorization (payer, nonce)
from facts that arrive at different times (the settlement on chain, the rows that carried the
payment, what the agent signed); ``PaymentBook`` keeps an authorization only while one of those
facts can still arrive, then resolves it into plain counters and drops it:

* it can no longer settle once a block at or after its ``validBefore`` has been folded (EIP-3009
  accepts it only while ``block.timestamp < validBefore``), and
* every row that carried it has been written.

So the book holds about a validity window's worth of authorizations (payment rate x
``maxTimeoutSeconds``), whatever the number of payments; everything else kept grows with agents
(buyers, per facilitator too), payees, facilitators, days and the latency range, never payments.

A row that carries an authorization already resolved (a replay sent after it expired) opens a new
entry, which counts on its own; the figures add up to the same values as judging everything at the
end, except in one case no agent behaviour produces: a payment settled but never delivered, later
served by a replay after expiry (it would count as served without settlement). A settlement of a
resolved authorization would be one that the chain accepted after ``validBefore``: it counts
against ``transfers_match_payments``, as does any settlement after ``validBefore``. For a payer
under an AP2 mandate, the book also keeps whether the payment it recorded was bound to a valid
mandate chain; a settlement of one that was not counts in ``TrustMetrics.unbound``.

Retry chains (a request and its retries, for ``requests_paid_twice``) are kept while a retry can
still follow: the last closed row answered >= 500 and the group's ``retry.max`` is not used up.

``RunMetrics`` holds the counters. Shards of one run (same scenario and seed, disjoint agent
populations, same span of virtual time, each on its own chain) merge with ``RunMetrics.merge``:

* summed: row tallies, timeline buckets (pending transactions and queue lengths too), latency
  sketches and the facilitators' queue waits (merged), verify and settle calls, gas, the gas
  histogram, transactions, settlements, volume, spend, what each payee received, mints, stray
  transfers, security counters, events, agents per group, per-day transactions, volume and buyers
  (buyers are per agent, so disjoint across shards; ``Daily.buyers_disjoint`` turns False if two
  shards shared one), USDC minted, total supply and holders' balances (each shard's own chain);
* unioned: buyers and sellers, overall and per facilitator, and each day's sellers (payees are
  shared by the shards);
* maxed: a facilitator's longest queue, blocks built, block height (the same ticks in every
  shard: ``blocks`` is a lower bound of what one chain would have built), virtual seconds;
* and-ed: supply conserved (each shard's chain is checked on its own);
* governance (``Governance``): counters summed, freezes (one per agent, agents disjoint) unioned,
  the audit chain's length summed and its head dropped (shards keep separate chains);
* tasks from Bazaar tools (``ToolchainMetrics``): counters summed, time-to-first-call sketches
  merged;
* trust (``TrustMetrics``): counters summed, revenue per bucket added, agent ids and final
  reputations unioned (only unsharded runs have registered servers);
* facilitator fees: the free tier is re-applied to the merged month (the first ``free_per_month``
  settlements by block time; settlements of two shards in the same second are ordered by block
  number and index, an arbitrary but fixed tie-break). With a ``bps`` part, prices differ, so the
  prices of each month's first ``free_per_month`` settlements are kept (bounded by that setting).
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eth_abi import decode as abi_decode

from ..evm.channels import BATCH_SETTLEMENT_ADDRESS
from ..evm.hashing import keccak
from ..evm.permit2 import EXACT_PERMIT2_PROXY_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS
from ..evm.txsign import decode_signed
from ..governance import Decision, GovernorStats
from ..money import to_usdc
from ..protocol import reason_class
from .channel_metrics import ChannelMetrics, is_channel_receipt
from .fees import Biller, calendar_month, gas_cost
from .records import Row, Timeline
from .sketch import LatencyStats

if TYPE_CHECKING:
    from .scenario import Scenario

AUTHORIZATION_USED = bytes.fromhex("98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5")
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")
# The proxies' settle calls, by the address called: the mechanism's label and the ABI types of
# ``settle``'s arguments; ``settleWithPermit`` puts an EIP-2612 permit before them. The first is the
# PermitTransferFrom, whose nonce the book keys the payment by.
_PERMIT = "((address,uint256),uint256,uint256)"
_PERMIT_2612 = "(uint256,uint256,bytes32,bytes32,uint8)"
_PROXY_CALLS = {
    EXACT_PERMIT2_PROXY_ADDRESS.lower(): (
        "exact/permit2",
        (_PERMIT, "address", "(address,uint256)", "bytes"),
    ),
    UPTO_PERMIT2_PROXY_ADDRESS.lower(): (
        "upto/permit2",
        (_PERMIT, "uint256", "address", "(address,address,uint256)", "bytes"),
    ),
}
DAY = 86_400
LATENCY_KINDS = ("end_to_end", "verify", "settle", "finality")
SECURITY_KEYS = (
    "double_settlements",
    "served_without_settlement",
    "settled_without_delivery",
    "requests_paid_twice",
    "unmatched_transfers",
    "settled_after_expiry",
    "retries_after_resolution",
)


def _selector(name: str, types: tuple[str, ...]) -> bytes:
    return keccak(f"{name}({','.join(types)})".encode())[:4]


def failure_class(row: Row) -> str:
    """A stable label for a failed row: the reason's class when it is a protocol reason code;
    ``governance`` for a payment the governor denied, ``policy`` for one the client refused."""
    if row.outcome == "denied":
        return "governance"
    if row.outcome == "blocked":
        return "crawl_blocked"
    if row.reason.startswith("mandate refused: "):
        return "mandate"
    cls = reason_class(row.reason) if row.reason else None
    if cls is not None and cls.value != "unknown":
        return cls.value
    if row.outcome == "refused":
        return "policy"
    if row.outcome == "error":
        return (
            "facilitator_unreachable"
            if "unreachable" in row.reason or "answer" in row.reason
            else "server_error"
        )
    if row.reason == "payment already presented":
        return "replay_guard"
    if row.reason.lower().startswith("no matching"):
        return "no_matching_requirements"
    return row.outcome


# -- mergeable parts -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counters over the rows of a run."""

    warmup: float
    rows: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    servers: dict = field(default_factory=lambda: defaultdict(Counter))
    groups: dict = field(default_factory=lambda: defaultdict(Counter))

    def add(self, row: Row) -> None:
        self.rows += 1
        self.outcomes[row.outcome] += 1
        self.kinds[row.kind] += 1
        server, group = self.servers[row.server], self.groups[row.group]
        server["requests"] += 1
        group["requests"] += 1
        if row.outcome not in ("paid", "free"):
            self.failures[failure_class(row)] += 1
        if row.outcome == "paid":
            server["paid"] += 1
            server["revenue"] += row.amount
            group["paid"] += 1
        elif row.outcome in ("rejected", "settle_failed"):
            server["refused"] += 1
        elif row.outcome == "error":
            server["errors"] += 1
        if row.outcome != "free":
            group["needed_payment"] += 1
        if row.outcome == "refused":
            group["refused_by_policy"] += 1
        elif row.outcome == "denied":
            group["denied"] += 1
        if row.handled:
            server["handler_runs"] += 1
            if row.outcome != "paid" and row.crawl != "free":  # served free by a crawl policy: by design
                self.outcomes["handler_ran_unpaid"] += 1
        if row.kind == "replay" and row.status == 200:
            self.kinds["replay_served"] += 1

    def merge(self, other: Tally) -> None:
        self.rows += other.rows
        self.outcomes.update(other.outcomes)
        self.failures.update(other.failures)
        self.kinds.update(other.kinds)
        for mine, theirs in ((self.servers, other.servers), (self.groups, other.groups)):
            for name, counts in theirs.items():
                mine[name].update(counts)


@dataclass
class Scan:
    """x402scan's figures over a set of settlements: transactions, volume, distinct buyers and sellers."""

    transactions: int = 0
    volume: int = 0
    buyers: set[str] = field(default_factory=set)
    sellers: set[str] = field(default_factory=set)

    def add(self, buyer: str, seller: str, value: int) -> None:
        self.transactions += 1
        self.volume += value
        self.buyers.add(buyer)
        self.sellers.add(seller)

    def merge(self, other: Scan) -> None:
        self.transactions += other.transactions
        self.volume += other.volume
        self.buyers |= other.buyers
        self.sellers |= other.sellers


@dataclass
class Day:
    """One virtual day of x402scan figures (distinct buyers counted, sellers kept: few)."""

    transactions: int = 0
    volume: int = 0
    buyers: int = 0
    sellers: set[str] = field(default_factory=set)
    facilitators: dict[str, list[int]] = field(default_factory=dict)  # name -> [transactions, volume]

    def merge(self, other: Day) -> None:
        self.transactions += other.transactions
        self.volume += other.volume
        self.buyers += other.buyers
        self.sellers |= other.sellers
        for name, (n, v) in other.facilitators.items():
            mine = self.facilitators.setdefault(name, [0, 0])
            mine[0] += n
            mine[1] += v


@dataclass
class Daily:
    """x402scan figures per virtual day (86,400 s from the run's start, by block time).

    Memory: one ``Day`` per day with settlements, and the last day each buyer bought (so a buyer
    counts once a day without a set of buyers per day)."""

    days: dict[int, Day] = field(default_factory=dict)
    last_day: dict[str, int] = field(default_factory=dict)
    buyers_disjoint: bool = True

    def add(self, day: int, facilitator: str, buyer: str, seller: str, value: int) -> None:
        d = self.days.get(day)
        if d is None:
            d = self.days[day] = Day()
        d.transactions += 1
        d.volume += value
        if self.last_day.get(buyer) != day:
            self.last_day[buyer] = day
            d.buyers += 1
        d.sellers.add(seller)
        per = d.facilitators.get(facilitator)
        if per is None:
            per = d.facilitators[facilitator] = [0, 0]
        per[0] += 1
        per[1] += value

    def merge(self, other: Daily) -> None:
        for day, theirs in other.days.items():
            self.days.setdefault(day, Day()).merge(theirs)
        for buyer, day in other.last_day.items():
            mine = self.last_day.get(buyer)
            if mine is not None:
                self.buyers_disjoint = False
            self.last_day[buyer] = day if mine is None else max(mine, day)
        self.buyers_disjoint = self.buyers_disjoint and other.buyers_disjoint


@dataclass
class FeeBook:
    """What one facilitator bills, per UTC month, in a form that merges: the count and the sum of
    every settlement's price, and the prices of the month's first ``free_per_month`` settlements
    (kept only when prices differ, i.e. with a ``bps`` part), which the free tier waives."""

    fixed: int = 0
    free_per_month: int = 0
    varies: bool = False
    months: dict[tuple[int, int], list] = field(default_factory=dict)  # month -> [count, billed, firsts]

    def add(self, month: tuple[int, int], order: tuple, price: int) -> None:
        entry = self.months.get(month)
        if entry is None:
            entry = self.months[month] = [0, 0, []]
        entry[0] += 1
        entry[1] += price
        if self.varies and len(entry[2]) < self.free_per_month:
            entry[2].append((*order, price))  # folded in chain order: these are the month's first

    def merge(self, other: FeeBook) -> None:
        for month, (count, billed, firsts) in other.months.items():
            entry = self.months.setdefault(month, [0, 0, []])
            entry[0] += count
            entry[1] += billed
            if self.varies:
                entry[2] = sorted(entry[2] + firsts)[: self.free_per_month]

    @property
    def earned(self) -> int:
        total = 0
        for count, billed, firsts in self.months.values():
            waived = (
                sum(f[-1] for f in firsts) if self.varies else self.fixed * min(count, self.free_per_month)
            )
            total += billed - waived
        return total


@dataclass
class FacilitatorStats:
    """One facilitator: calls and queueing (from the world), transactions and fees (from the chain)."""

    fees: FeeBook = field(default_factory=FeeBook)
    verifies: int = 0
    settles: int = 0
    waits: LatencyStats = field(default_factory=LatencyStats)  # seconds queued for a slot
    max_queue: int = 0
    settlements: int = 0  # transactions that moved the token
    failed_transactions: int = 0
    gas_used: int = 0
    gas_wei: int = 0
    scan: Scan = field(default_factory=Scan)

    def merge(self, other: FacilitatorStats) -> None:
        self.fees.merge(other.fees)
        self.verifies += other.verifies
        self.settles += other.settles
        self.waits.merge(other.waits)
        self.max_queue = max(self.max_queue, other.max_queue)
        self.settlements += other.settlements
        self.failed_transactions += other.failed_transactions
        self.gas_used += other.gas_used
        self.gas_wei += other.gas_wei
        self.scan.merge(other.scan)


@dataclass
class SupplyCheck:
    """The token's books at the end of a run (or the sum over shards, each on its own chain)."""

    minted: int = 0  # USDC the world granted its agents
    supply: int = 0  # the token's total supply
    balances: int = 0  # what every holder the run knows of holds
    conserved: bool = True  # supply == minted == mints seen on chain and balances == supply, per shard
    shards: int = 0

    def merge(self, other: SupplyCheck) -> None:
        self.minted += other.minted
        self.supply += other.supply
        self.balances += other.balances
        self.conserved = self.conserved and other.conserved
        self.shards += other.shards


@dataclass
class Governance:
    """What the governors decided and what got through (all zero in a run without policies).

    Payments are ``attack``-bound (``Row.attack``), ``collateral`` (the agent's own payments once
    it is compromised: blocking them is the price of stopping it, not a false positive) or
    ``honest`` (every other). ``attempts`` counts the payments a governor was asked about,
    ``blocked`` those it (or the approver) refused, ``blocked_amount`` their amounts; ``by_rule``
    and ``denials`` the same per (policy, rule). ``attack`` counts attack-bound ``requests`` and,
    from the chain (authorizations resolved by the ``PaymentBook``), attack-bound transfers
    ``settled``, their ``settled_amount`` and those signed while the agent was frozen
    (``after_cutoff``); ``after_freeze`` counts every transfer signed while its agent was frozen.
    ``stats``: the governors' own counters, merged. ``frozen``: agent -> (group, virtual time,
    trigger) of its first freeze. ``counterfactual``: the attack figures of the same seed run
    without governance (``attack_spend``, ``attack_payments``, ``attack_requests``), set by ``run``.
    ``audit_entries`` and ``audit_head``: the governors' audit chain. ``governed``: whether any
    governor was at work (a run without policies, or a counterfactual, still counts attacks)."""

    governed: bool = False  # governors judged the agents' payments (False: a counterfactual)
    stats: GovernorStats = field(default_factory=GovernorStats)
    attempts: Counter = field(default_factory=Counter)
    blocked: Counter = field(default_factory=Counter)
    blocked_amount: Counter = field(default_factory=Counter)
    by_rule: Counter = field(default_factory=Counter)  # (policy, rule) -> atomic units blocked
    denials: Counter = field(default_factory=Counter)  # (policy, rule) -> payments blocked
    attack: Counter = field(default_factory=Counter)
    after_freeze: int = 0
    frozen: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    audit_entries: int = 0
    audit_head: str | None = None
    counterfactual: Counter | None = None

    def decided(self, policy: str, side: str, decision: Decision) -> None:
        """A governor's last word on a payment (``side``: honest, attack or collateral) of an agent
        under ``policy``."""
        self.attempts[side] += 1
        if not decision.allowed:
            amount = decision.attempt.amount
            self.blocked[side] += 1
            self.blocked_amount[side] += amount
            self.by_rule[(policy, decision.rule or "")] += amount
            self.denials[(policy, decision.rule or "")] += 1

    def settled(self, value: int, attack: bool, after_freeze: bool) -> None:
        """A transfer on chain of a payment (attack-bound or not, signed while frozen or not)."""
        if attack:
            self.attack["settled"] += 1
            self.attack["settled_amount"] += value
            if after_freeze:
                self.attack["after_cutoff"] += 1
        if after_freeze:
            self.after_freeze += 1

    def merge(self, other: Governance) -> None:
        self.governed = self.governed or other.governed
        self.stats.merge(other.stats)
        for name in ("attempts", "blocked", "blocked_amount", "by_rule", "denials", "attack"):
            getattr(self, name).update(getattr(other, name))
        self.after_freeze += other.after_freeze
        self.frozen.update(other.frozen)
        self.audit_entries += other.audit_entries
        self.audit_head = None  # one chain per shard: no head stands for them all
        if other.counterfactual is not None:
            self.counterfactual = (self.counterfactual or Counter()) + other.counterfactual


@dataclass
class TrustMetrics:
    """The trust counters of a run (all empty in a run without trust features). Shards merge by
    adding (``received`` bucket by bucket) and uniting (agent ids and final reputations, which only
    an unsharded run has: a sharded run with registered servers is refused).

    ``agents``: server -> ERC-8004 agent id. ``received``: server -> atomic USDC settled to its payTo
    per timeline bucket; ``settled``: server -> transfers to it. ``deliveries``: (server, good or
    garbage) -> paid answers. ``quarters``: (group, quarter index, "all" or "garbage") -> atomic USDC
    the group settled (to garbage servers). ``feedback``: sent, not_sent (the pool refused it),
    mined, reverted. ``reputation``: server -> (count, mean) read from the registry at the end.
    ``mandate``: (group, payments | settled | refused) -> rows; ``refusals``: mandate refusal code ->
    rows. ``outside``: reason -> atomic USDC of mandated agents' transfers outside their mandate
    (``payments``, ``usdc``: each such transfer once); ``unbound``: settled authorizations of a
    mandated payer not bound to a valid mandate chain. ``agent_spend`` / ``agent_payments``:
    mandated agent -> atomic USDC / transfers on chain. ``crawl``: (group, requests | blocked |
    charged | paid | free) -> rows; ``blocked``: signature refusal code -> rows. ``group_payments``:
    group -> transfers from its agents on chain (with any trust feature in the run)."""

    agents: dict[str, int] = field(default_factory=dict)
    received: dict[str, list[int]] = field(default_factory=dict)
    settled: Counter = field(default_factory=Counter)
    deliveries: Counter = field(default_factory=Counter)
    quarters: Counter = field(default_factory=Counter)
    feedback: Counter = field(default_factory=Counter)
    reputation: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    mandate: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    outside: Counter = field(default_factory=Counter)
    unbound: int = 0
    agent_spend: Counter = field(default_factory=Counter)
    agent_payments: Counter = field(default_factory=Counter)
    crawl: Counter = field(default_factory=Counter)
    blocked: Counter = field(default_factory=Counter)
    group_payments: Counter = field(default_factory=Counter)

    def merge(self, other: TrustMetrics) -> None:
        self.agents.update(other.agents)
        for server, buckets in other.received.items():
            mine = self.received.setdefault(server, [0] * len(buckets))
            for i, value in enumerate(buckets):
                mine[i] += value
        for name in (
            "settled",
            "deliveries",
            "quarters",
            "feedback",
            "mandate",
            "refusals",
            "outside",
            "agent_spend",
            "agent_payments",
            "crawl",
            "blocked",
            "group_payments",
        ):
            getattr(self, name).update(getattr(other, name))
        self.reputation.update(other.reputation)
        self.unbound += other.unbound


@dataclass
class MechanismMetrics:
    """Per-mechanism counters (reported when a scenario pays through Permit2; every field adds up
    across shards).

    From the chain, per mechanism label (``build.mechanism_label``): ``settlements`` (facilitator
    transactions that moved the token), ``failed``, their ``gas`` and ``wei`` (successful ones, at
    the scenario's fee model), ``with_permit`` (settled through ``settleWithPermit``: an EIP-2612
    permit sponsored in the same transaction). ``approvals``, ``approval_gas``, ``approval_wei``:
    the payers' own ``approve`` transactions, by the group's approval mode; ``funding_txs``,
    ``ether_sent`` (their value, wei on chain) and ``funding_wei`` (their gas at the fee model) per
    facilitator: the ether it sent payers for their approval's gas (``erc20ApprovalGasSponsoring``).
    From the rows: ``paid`` per label; per upto
    endpoint (``server route``), ``authorized`` (the maxima signed by paid requests), ``charged``,
    and ``charges``: charge -> paid rows (its size grows with the distinct charges, never with
    payments)."""

    settlements: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    gas: Counter = field(default_factory=Counter)
    wei: Counter = field(default_factory=Counter)
    with_permit: Counter = field(default_factory=Counter)
    permit_gas: Counter = field(default_factory=Counter)
    approvals: Counter = field(default_factory=Counter)
    approval_gas: Counter = field(default_factory=Counter)
    approval_wei: Counter = field(default_factory=Counter)
    funding_txs: Counter = field(default_factory=Counter)
    ether_sent: Counter = field(default_factory=Counter)
    funding_wei: Counter = field(default_factory=Counter)
    paid: Counter = field(default_factory=Counter)
    authorized: Counter = field(default_factory=Counter)
    charged: Counter = field(default_factory=Counter)
    charges: dict[str, Counter] = field(default_factory=dict)

    COUNTERS = (
        "settlements",
        "failed",
        "gas",
        "wei",
        "with_permit",
        "permit_gas",
        "approvals",
        "approval_gas",
        "approval_wei",
        "funding_txs",
        "ether_sent",
        "funding_wei",
        "paid",
        "authorized",
        "charged",
    )

    def upto_paid(self, endpoint: str, authorized: int, charged: int) -> None:
        self.authorized[endpoint] += authorized
        self.charged[endpoint] += charged
        self.charges.setdefault(endpoint, Counter())[charged] += 1

    def merge(self, other: MechanismMetrics) -> None:
        for name in self.COUNTERS:
            getattr(self, name).update(getattr(other, name))
        for endpoint, counts in other.charges.items():
            self.charges.setdefault(endpoint, Counter()).update(counts)


@dataclass
class ToolchainMetrics:
    """Agents completing tasks from tools found in the Bazaar (``sim.toolchain``; every field adds
    up across shards, the sketch merges).

    Per group: ``tasks`` (``(group, "attempted" | "completed" | "abandoned")``), ``steps`` (step
    calls: ``(group, "calls" | "failovers")``) and ``queries`` to the Bazaar; ``first_call``: per
    task, the virtual seconds from its start to the answer of its first paid call (discovery
    included); from the rows: ``calls`` and ``paid`` per tool (``server/path``); from the chain:
    ``spend``, the USDC transferred per tool, attributed through the authorization the tool's
    request carried (``PaymentBook``)."""

    tasks: Counter = field(default_factory=Counter)
    steps: Counter = field(default_factory=Counter)
    queries: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)
    paid: Counter = field(default_factory=Counter)
    spend: Counter = field(default_factory=Counter)
    first_call: LatencyStats = field(default_factory=LatencyStats)

    COUNTERS = ("tasks", "steps", "queries", "calls", "paid", "spend")

    def merge(self, other: ToolchainMetrics) -> None:
        for name in self.COUNTERS:
            getattr(self, name).update(getattr(other, name))
        self.first_call.merge(other.first_call)


@dataclass
class RunMetrics:
    """All the counters of a run (or of merged shards of one): see the module's docstring."""

    tally: Tally
    timeline: Timeline
    latency: dict[str, LatencyStats]
    facilitators: dict[str, FacilitatorStats]
    agents: Counter = field(default_factory=Counter)  # group -> agents
    by_gas: Counter = field(default_factory=Counter)  # (gas used, settled) -> facilitator transactions
    total_gas: int = 0
    total_wei: int = 0
    l1_wei: int = 0
    mints: int = 0  # USDC minted, as the chain's Transfer logs say
    stray_transfers: int = 0  # token moved by someone other than a facilitator or its owner
    spend: Counter = field(default_factory=Counter)  # group -> atomic USDC settled from its agents
    received: Counter = field(default_factory=Counter)  # address -> atomic USDC settled to it
    scan: Scan = field(default_factory=Scan)
    daily: Daily = field(default_factory=Daily)
    security: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    supply: SupplyCheck = field(default_factory=SupplyCheck)
    blocks: int = 0
    height: int = 0
    virtual_seconds: float = 0.0
    shards: int = 1
    governance: Governance = field(default_factory=Governance)
    trust: TrustMetrics = field(default_factory=TrustMetrics)
    mechanisms: MechanismMetrics = field(default_factory=MechanismMetrics)
    channels: ChannelMetrics = field(default_factory=ChannelMetrics)  # batch-settlement
    toolchain: ToolchainMetrics = field(default_factory=ToolchainMetrics)  # tasks from Bazaar tools

    @classmethod
    def start(cls, scenario: Scenario) -> RunMetrics:
        """Empty metrics for a run of ``scenario``."""
        sim = scenario.simulation
        bucket = sim.timeline_bucket or max(sim.duration / 60, scenario.chain.block_time)
        timeline = Timeline(bucket, max(1, int(-(-(sim.duration + sim.drain) // bucket))))
        facilitators = {}
        for f in scenario.facilitators:
            fees = FeeBook(
                f.fee.fixed, f.fee.free_per_month, varies=bool(f.fee.bps) and f.fee.free_per_month > 0
            )
            facilitators[f.name] = FacilitatorStats(fees)
        return cls(Tally(sim.warmup), timeline, {k: LatencyStats() for k in LATENCY_KINDS}, facilitators)

    def absorb(self, other: RunMetrics) -> None:
        """Add the counters of ``other`` (another shard of the same run) to these."""
        if list(self.facilitators) != list(other.facilitators):
            raise ValueError("metrics of runs with different facilitators do not merge")
        self.tally.merge(other.tally)
        self.timeline.merge(other.timeline)
        for kind, stats in other.latency.items():
            self.latency.setdefault(kind, LatencyStats()).merge(stats)
        for name, facilitator in other.facilitators.items():
            self.facilitators[name].merge(facilitator)
        for name in ("agents", "by_gas", "spend", "received", "security", "events"):
            getattr(self, name).update(getattr(other, name))
        for name in ("total_gas", "total_wei", "l1_wei", "mints", "stray_transfers", "shards"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.scan.merge(other.scan)
        self.daily.merge(other.daily)
        self.supply.merge(other.supply)
        self.governance.merge(other.governance)
        self.trust.merge(other.trust)
        self.mechanisms.merge(other.mechanisms)
        self.channels.merge(other.channels)
        self.toolchain.merge(other.toolchain)
        self.blocks = max(self.blocks, other.blocks)
        self.height = max(self.height, other.height)
        self.virtual_seconds = max(self.virtual_seconds, other.virtual_seconds)

    def merge(self, other: RunMetrics) -> RunMetrics:
        """A new ``RunMetrics``: these and ``other`` merged (neither is changed)."""
        out = copy.deepcopy(self)
        out.absorb(other)
        return out

    @classmethod
    def combine(cls, shards: list[RunMetrics]) -> RunMetrics:
        """The merge of ``shards`` (at least one), in order; none of them is changed."""
        if not shards:
            raise ValueError("no shards to combine")
        out = copy.deepcopy(shards[0])
        for other in shards[1:]:
            out.absorb(other)
        return out

    def daily_rows(self, facilitators: list[str] | None = None) -> list[dict]:
        """One dict per virtual day up to the last day of the run, settled or not (daily.csv)."""
        names = list(self.facilitators) if facilitators is None else facilitators
        last = max([int(self.virtual_seconds // DAY), *self.daily.days])
        rows = []
        for day in range(last + 1):
            d = self.daily.days.get(day) or Day()
            row = {
                "day": day,
                "transactions": d.transactions,
                "volume_usdc": to_usdc(d.volume),
                "buyers": d.buyers,
                "sellers": len(d.sellers),
            }
            for name in names:
                n, v = d.facilitators.get(name, (0, 0))
                row[f"{name}.transactions"] = n
                row[f"{name}.volume_usdc"] = to_usdc(v)
            rows.append(row)
        return rows


# -- live state of one run -------------------------------------------------------------------------------


class _Authorization:
    __slots__ = (
        "after_freeze",
        "attack",
        "ceiling",
        "chains",
        "expired",
        "free",
        "mandate",
        "open_rows",
        "served",
        "settled",
        "signed",
        "tool",
        "transfers",
        "valid_before",
    )

    def __init__(self) -> None:
        self.attack = False  # attack-bound (Row.attack of the row that sent it first)
        self.after_freeze = False  # signed while its agent was frozen (Row.after_freeze)
        self.settled = 0
        self.transfers: list[tuple[int, str, int]] = []  # (value, to, block time) of each settlement
        self.served = 0  # rows answered 200 with it
        self.signed: tuple[int, str] | None = None  # (amount, payTo) as the first row recorded it
        self.valid_before: int | None = None
        self.open_rows = 0
        self.chains: list[int] = []  # retry chains whose rows carried it
        self.expired = False
        self.mandate: bool | None = None  # bound to a valid AP2 mandate chain (None: not judged)
        self.ceiling = False  # upto: the signed amount is a maximum, any transfer up to it matches
        self.free = 0  # upto: settled for a charge of 0 (nothing sent, nothing to find on chain)
        self.tool = ""  # the Bazaar tool (server/path) a task's call paid with it ("": none)


class _Chain:
    __slots__ = ("may_retry", "rows", "settled", "unresolved", "unwritten")

    def __init__(self) -> None:
        self.rows = 0  # closed rows of the chain
        self.unwritten = 0  # closed and not yet written
        self.unresolved = 0  # authorizations of its rows still in the book
        self.settled = 0  # its authorizations found settled
        self.may_retry = False


class PaymentBook:
    """Per-authorization facts, each kept only while it can still change a figure (module docstring).

    ``security`` (a ``RunMetrics.security``) receives the resolved counts; ``retries`` is each agent
    group's ``retry.max``; ``governance`` (a ``RunMetrics.governance``) receives the transfers of
    attack-bound payments and of payments signed while frozen."""

    def __init__(
        self,
        security: Counter,
        retries: dict[str, int],
        governance: Governance | None = None,
        trust: TrustMetrics | None = None,
        toolchain: ToolchainMetrics | None = None,
    ) -> None:
        self.security = security
        self.toolchain = toolchain if toolchain is not None else ToolchainMetrics()
        self.retries = retries
        self.governance = governance if governance is not None else Governance()
        self.trust = trust if trust is not None else TrustMetrics()
        self.mandated: set[str] = set()  # payers (lower case) whose settlements must carry a mandate
        self.open: dict[tuple[str, str], _Authorization] = {}
        self.chains: dict[int, _Chain] = {}
        self._expiry: list[tuple[int, int, tuple[str, str], _Authorization]] = []
        self._pushed = 0
        self.clock = -math.inf  # time of the last block folded

    def _get(self, key: tuple[str, str]) -> _Authorization:
        entry = self.open.get(key)
        if entry is None:
            entry = self.open[key] = _Authorization()
        return entry

    def recorded(
        self,
        key: tuple[str, str],
        amount: int,
        pay_to: str,
        valid_before: int,
        attack: bool = False,
        after_freeze: bool = False,
        mandate: bool | None = None,
        ceiling: bool = False,
        tool: str = "",
    ) -> None:
        """An open row carries the authorization ``key`` (what the agent sent; ``attack``: an
        attack-bound payment, ``after_freeze``: signed while its agent was frozen, ``mandate``:
        whether it is bound to a valid AP2 mandate chain, None when not judged; ``ceiling``: an
        upto permit, whose amount is the most a settlement may move; ``tool``: the Bazaar tool a
        task's call paid, whose spend its transfers count in)."""
        entry = self._get(key)
        entry.open_rows += 1
        if entry.signed is None:
            entry.signed = (amount, pay_to)
            entry.attack, entry.after_freeze = attack, after_freeze
            entry.mandate = mandate
            entry.ceiling = ceiling
            entry.tool = tool
        if entry.valid_before is None:
            entry.valid_before = valid_before
            if valid_before <= self.clock:
                entry.expired = True
            else:
                self._pushed += 1
                heapq.heappush(self._expiry, (valid_before, self._pushed, key, entry))

    def settled(self, key: tuple[str, str], value: int, to: str, block_time: int) -> None:
        """The chain moved ``value`` to ``to`` under the authorization ``key``."""
        entry = self._get(key)
        entry.settled += 1
        entry.transfers.append((value, to, block_time))

    def charged_nothing(self, key: tuple[str, str]) -> None:
        """An upto payment under ``key`` was settled for 0: served, with no transfer to find."""
        self._get(key).free += 1

    def closed(self, row: Row) -> None:
        """``row`` got its answer: keep its retry chain while a retry may follow."""
        gid = row.origin or row.id
        chain = self.chains.get(gid)
        retries = self.retries.get(row.group, 0)
        failed = row.status is not None and row.status >= 500  # what makes an agent retry
        if chain is None:
            if row.origin:
                self.security["retries_after_resolution"] += 1
            if not (failed and retries):
                return  # no retry follows: the request pays once at most
            chain = self.chains[gid] = _Chain()
        chain.rows += 1
        chain.unwritten += 1
        chain.may_retry = failed and chain.rows <= retries

    def written(self, row: Row) -> None:
        """``row`` is complete: count its answer against its authorization."""
        gid = row.origin or row.id
        chain = self.chains.get(gid)
        if chain is not None and row.done is not None:
            chain.unwritten -= 1
        if row.nonce:
            key = (row.payer.lower(), row.nonce.lower())
            entry = self._get(key)
            if row.status == 200:
                entry.served += 1
            if chain is not None and gid not in entry.chains:
                entry.chains.append(gid)
                chain.unresolved += 1
            entry.open_rows -= 1
            if entry.open_rows <= 0 and entry.expired:
                self._resolve(key, entry)
        if chain is not None:
            self._drop_chain(gid, chain)

    def advance(self, block_time: int) -> None:
        """A block at ``block_time`` was folded: authorizations valid only before it are final."""
        self.clock = max(self.clock, block_time)
        expiry = self._expiry
        while expiry and expiry[0][0] <= block_time:
            _, _, key, entry = heapq.heappop(expiry)
            if self.open.get(key) is entry:
                entry.expired = True
                if entry.open_rows <= 0:
                    self._resolve(key, entry)

    def flush(self) -> None:
        """The run is over: resolve every authorization still open."""
        for key, entry in list(self.open.items()):
            self._resolve(key, entry)
        self._expiry.clear()

    def _resolve(self, key: tuple[str, str], entry: _Authorization) -> None:
        del self.open[key]
        sec = self.security
        settled, served = entry.settled, entry.served
        if settled > 1:
            sec["double_settlements"] += 1
        if served > settled + entry.free:
            sec["served_without_settlement"] += served - settled - entry.free
        if settled and not served:
            sec["settled_without_delivery"] += 1
        for value, to, block_time in entry.transfers:
            if key[0] in self.mandated and entry.mandate is not True:
                self.trust.unbound += 1
            if entry.attack or entry.after_freeze:
                self.governance.settled(value, entry.attack, entry.after_freeze)
            if entry.tool:
                self.toolchain.spend[entry.tool] += value
            signed = entry.signed
            amount_differs = signed is not None and (
                value > signed[0] if entry.ceiling else signed[0] != value
            )
            if signed is None or amount_differs or signed[1].lower() != to.lower():
                sec["unmatched_transfers"] += 1
            elif entry.valid_before is not None and block_time >= entry.valid_before:
                sec["unmatched_transfers"] += 1
                sec["settled_after_expiry"] += 1
        for gid in entry.chains:
            chain = self.chains.get(gid)
            if chain is None:
                continue
            chain.unresolved -= 1
            if settled:
                chain.settled += 1
                if chain.settled == 2:
                    sec["requests_paid_twice"] += 1
            self._drop_chain(gid, chain)

    def _drop_chain(self, gid: int, chain: _Chain) -> None:
        if not chain.may_retry and chain.unwritten <= 0 and chain.unresolved <= 0:
            del self.chains[gid]

    def sizes(self) -> dict[str, int]:
        return {
            "authorizations": len(self.open),
            "chains": len(self.chains),
            "expiry_heap": len(self._expiry),
        }


class ChainFolder:
    """Folds receipts into a ``RunMetrics`` as blocks are mined (what ``summary`` used to read from
    every receipt at the end), and tells the ``PaymentBook`` what was settled and when.

    ``world`` gives the chain, the facilitators' addresses, the agents, the fee model and the raw
    transactions (for the L1 data fee; each is dropped once folded)."""

    def __init__(self, world, metrics: RunMetrics, book: PaymentBook) -> None:
        self.world = world
        self.metrics = metrics
        self.book = book
        self.chain = world.chain
        self.token = world.chain.usdc
        self.start = world.start_time
        self.fee_model = world.scenario.chain.fee
        self.facilitators = {f.role.address: name for name, f in world.facilitators.items()}
        # the price of one settlement, free tier aside (FeeBook applies it)
        self.prices = {
            name: Biller(f.spec.fee.model_copy(update={"free_per_month": 0}))
            for name, f in world.facilitators.items()
        }
        self.holders: set[str] = set()  # addresses the token moved to or from (for the balances)
        self.folded = 0  # number of the last block folded
        self._agents: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._agents_seen = -1
        self.trust = getattr(world, "trust_book", None)

    def group_of(self, address: str) -> str | None:
        agents = self.world.agents
        if len(agents) != self._agents_seen:
            self._agents = {a.client.address: a.group.name for a in agents}
            self._names = {a.client.address: a.name for a in agents}
            self._agents_seen = len(agents)
        return self._agents.get(address)

    def fold_block(self, block) -> list[bytes]:
        """Fold ``block`` (and any block mined since the last fold); returns the hashes folded."""
        folded = self.catch_up(block.number - 1) if block.number > self.folded + 1 else []
        receipt = self.chain.receipt
        for h in block.tx_hashes:
            r = receipt(h)
            if r is not None:
                self.fold(r)
        self.folded = max(self.folded, block.number)
        self.book.advance(block.timestamp)
        return [*folded, *block.tx_hashes]

    def catch_up(self, through: int | None = None) -> list[bytes]:
        """Fold the blocks mined outside the producer (funding, at the start) up to ``through``
        (default: the chain's head); returns the hashes folded."""
        through = self.chain.block_number if through is None else through
        if through <= self.folded:
            return []
        missed = [r for r in self.chain.receipts() if self.folded < r.block_number <= through]
        missed.sort(key=lambda r: (r.block_number, r.index))
        for r in missed:
            self.fold(r)
        self.folded = through
        if missed:
            self.book.advance(missed[-1].block_timestamp)
        return [r.tx_hash for r in missed]

    def fold(self, r) -> None:
        m = self.metrics
        token = self.token
        transfers = [t for t in r.transfers() if t.token == token]
        raw = self.world.raw_txs.pop(r.tx_hash, b"")
        name = self.facilitators.get(r.sender)
        if is_channel_receipt(r):  # batch-settlement: folded by kind (``channel_metrics``)
            self._channel(r, raw, name)
            return
        if name is None:
            if (r.to or "").lower() == token.lower() and not transfers and raw:
                self._approval(r, raw)
            if self.trust is not None:
                self.trust.receipt(r)
            for t in transfers:
                if int(t.from_, 16) == 0:
                    m.mints += t.value
                else:
                    self.holders.add(t.to)
                    # an agent moving its own funds, if the invariant holds
                    if r.sender != t.from_ or self.group_of(t.from_) is None:
                        m.stray_transfers += 1
            return
        fac = m.facilitators[name]
        cost = gas_cost(self.fee_model, r.gas_used, raw)
        fac.gas_used += r.gas_used
        fac.gas_wei += cost.total
        m.total_gas += r.gas_used
        m.total_wei += cost.total
        m.l1_wei += cost.l1_data
        permit2 = None
        if (r.to or "").lower() != token.lower():
            permit2 = self._permit2_call(r, raw)
            if permit2 is None:  # ether for a payer's approval gas (erc20ApprovalGasSponsoring)
                value = decode_signed(raw).value if raw else 0
                m.mechanisms.funding_txs[name] += 1
                m.mechanisms.ether_sent[name] += value
                m.mechanisms.funding_wei[name] += cost.total
                return
        label = permit2[0] if permit2 is not None else "exact/eip3009"
        ok = r.success and bool(transfers)
        mech = m.mechanisms
        if ok:
            mech.settlements[label] += 1
            mech.gas[label] += r.gas_used
            mech.wei[label] += cost.total
            if permit2 is not None and permit2[2]:
                mech.with_permit[label] += 1
                mech.permit_gas[label] += r.gas_used
        else:
            mech.failed[label] += 1
        m.by_gas[(r.gas_used, ok)] += 1
        if ok:
            fac.settlements += 1
            price = self.prices[name].bill(sum(t.value for t in transfers), r.block_timestamp)
            month = calendar_month(r.block_timestamp)
            fac.fees.add(month, (r.block_timestamp, r.block_number, r.index), price)
        else:
            fac.failed_transactions += 1
        nonces = (
            [permit2[1]]
            if permit2 is not None
            else [
                "0x" + log.topics[2].hex()
                for log in r.logs
                if log.address == token and log.topics and log.topics[0] == AUTHORIZATION_USED
            ]
        )
        day = (r.block_timestamp - self.start) // DAY
        for t, nonce in zip(transfers, nonces, strict=False):
            buyer, seller, value = t.from_, t.to, t.value
            m.scan.add(buyer, seller, value)
            fac.scan.add(buyer, seller, value)
            m.daily.add(day, name, buyer, seller, value)
            group = self.group_of(buyer)
            if group is not None:
                m.spend[group] += value
            if self.trust is not None:
                agent = self._names.get(buyer) if group is not None else None
                self.trust.transfer(buyer, seller, value, r.block_timestamp, group, agent)
            m.received[seller] += value
            self.holders.add(seller)
            self.holders.add(buyer)
            self.book.settled((buyer.lower(), nonce.lower()), value, seller, r.block_timestamp)

    def _channel(self, r, raw: bytes, name: str | None) -> None:
        """A transaction to the batch-settlement contract or a deposit collector: a facilitator's
        (deposit, claim, settle, refund: its gas counts as the facilitator's) or a payer's own
        (withdrawal). The tokens it moves are in the holders; a settlement is what its receiver got."""
        m = self.metrics
        cost = gas_cost(self.fee_model, r.gas_used, raw)
        if name is not None:
            fac = m.facilitators[name]
            fac.gas_used += r.gas_used
            fac.gas_wei += cost.total
            m.total_gas += r.gas_used
            m.total_wei += cost.total
            m.l1_wei += cost.l1_data
            m.by_gas[(r.gas_used, r.success)] += 1
            if not r.success:
                fac.failed_transactions += 1
        m.channels.fold(r, cost.total, r.block_timestamp - self.start)
        for t in r.transfers():
            if t.token != self.token:
                continue
            self.holders.add(t.to)
            self.holders.add(t.from_)
            if t.from_.lower() == BATCH_SETTLEMENT_ADDRESS.lower() and self.group_of(t.to) is None:
                m.received[t.to] += t.value  # a receiver's settlement

    def _permit2_call(self, r, raw: bytes) -> tuple[str, str, bool] | None:
        """A facilitator's call to a Permit2 proxy: the mechanism's label, the permit's nonce (as
        the payment carries it: decimal) and whether an EIP-2612 permit came with it; None for
        any other transaction."""
        call = _PROXY_CALLS.get((r.to or "").lower())
        if call is None or not raw:
            return None
        label, types = call
        data = decode_signed(raw).data
        with_permit = data[:4] == _selector("settleWithPermit", (_PERMIT_2612, *types))
        if with_permit:
            types = (_PERMIT_2612, *types)
        elif data[:4] != _selector("settle", types):
            return None
        args = abi_decode(list(types), data[4:])[1 if with_permit else 0 :]
        return label, str(args[0][1]), with_permit

    def _approval(self, r, raw: bytes) -> None:
        """A payer's own ``approve`` of the token, by its group's approval mode (the set-up
        approvals of ``approved`` groups included: the summary leaves their cost out)."""
        tx = decode_signed(raw)
        group = self.group_of(r.sender)
        if tx.data[:4] != APPROVE_SELECTOR or group is None:
            return
        mode = self.world.specs[group].approval
        mech = self.metrics.mechanisms
        mech.approvals[mode] += 1
        mech.approval_gas[mode] += r.gas_used
        mech.approval_wei[mode] += gas_cost(self.fee_model, r.gas_used, raw).total


__all__ = [
    "ChainFolder",
    "Daily",
    "FacilitatorStats",
    "FeeBook",
    "Governance",
    "MechanismMetrics",
    "PaymentBook",
    "RunMetrics",
    "Scan",
    "SupplyCheck",
    "Tally",
    "ToolchainMetrics",
    "TrustMetrics",
    "failure_class",
]
