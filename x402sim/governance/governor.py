"""The governor: decides, before an agent signs, whether a payment may go ahead; records what
became of it; freezes agents that behave suspiciously. Sans-IO: every call is told the time.

Theory of operation.

* ``decide(attempt, now)`` answers ``allow``, ``deny`` (naming the rule and why) or
  ``needs-approval``. In order: a frozen agent is denied; the anomaly triggers are checked (one that
  fires freezes the agent and denies the payment); then every rule that applies to the agent, where
  any deny wins; then the approval threshold.
* An allowed payment (or one waiting for approval) is *reserved* at once against every limit it
  counts toward, before the call returns, so two payments in flight cannot both pass a limit only
  one fits (calls are serialised by a lock: threads and asyncio tasks alike). ``approve`` turns a
  pending decision into allow or deny; ``record`` says what became of an allowed payment:
  ``settled``, ``failed`` (the reservation is released) or ``unknown`` (it stays reserved: it may
  have settled).
* Every decision, approval, outcome, freeze and unfreeze is one audit entry (``audit.AuditLog``),
  and the governor's state is a fold of those entries (``_apply``): a governor given an existing
  audit file resumes with its spend, counters and freezes, under the policy it is given now.

Periods are calendar periods of the ``now`` given (UTC; weeks start on Monday); ``run`` is the
governor's whole life (for a resumed governor, the whole audit file).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..money import format_usdc
from .audit import AuditLog
from .policy import (
    Allow,
    Approval,
    Block,
    EndpointBurst,
    FailureStreak,
    NewPayee,
    Policy,
    RateLimit,
    RequestCap,
    Rule,
    Scoped,
    SpendLimit,
    UsageLimit,
    Velocity,
)

ALLOW, DENY, NEEDS_APPROVAL = "allow", "deny", "needs-approval"
OUTCOMES = ("settled", "failed", "unknown")


@dataclass(frozen=True)
class Attempt:
    """A payment an agent is about to sign: who, for what, to whom, how much (atomic units)."""

    agent: str
    resource: str  # host and path, e.g. "api.example.com/weather"
    pay_to: str
    asset: str
    network: str
    amount: int

    @property
    def host(self) -> str:
        return self.resource.split("/", 1)[0]


@dataclass(frozen=True)
class Decision:
    """The governor's answer to an ``Attempt``; ``ticket`` names it in ``approve`` and ``record``."""

    verdict: str
    ticket: int
    attempt: Attempt
    rule: str | None = None
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == ALLOW

    def explain(self) -> str:
        return f"{self.rule}: {self.reason}" if self.rule else self.reason


@dataclass(frozen=True)
class Freeze:
    agent: str
    at: float
    trigger: str
    reason: str


@dataclass
class GovernorStats:
    """Counts over a governor's life (mergeable: a simulator's shards each have governors)."""

    decisions: Counter[str] = field(default_factory=Counter)  # verdict -> n
    denials: Counter[str] = field(default_factory=Counter)  # rule -> n
    denied_amount: Counter[str] = field(default_factory=Counter)  # rule -> atomic units
    approvals: Counter[str] = field(default_factory=Counter)  # requested / granted / refused
    outcomes: Counter[str] = field(default_factory=Counter)
    freezes: list[Freeze] = field(default_factory=list)

    def merge(self, other: GovernorStats) -> None:
        for name in ("decisions", "denials", "denied_amount", "approvals", "outcomes"):
            getattr(self, name).update(getattr(other, name))
        self.freezes.extend(other.freezes)


@dataclass
class _Charge:
    """What an allowed payment holds against the limits until it settles or fails."""

    agent: str
    amount: int
    spends: list[SpendKey]
    calls: list[CallKey]


PeriodKey = int | str  # 0 for the whole run, else the day, ISO week or month
SpendKey = tuple[str, str, PeriodKey]  # (rule, who, period)
CallKey = tuple[str, str, str, PeriodKey]  # (rule, who, target, period)


def period_key(period: str, t: float) -> PeriodKey:
    if period == "run":
        return 0
    d = datetime.fromtimestamp(t, UTC)
    if period == "day":
        return d.date().isoformat()
    if period == "week":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{d.year}-{d.month:02d}"


class Governor:
    """Enforces ``policy`` for any number of agents (``projects``: project -> agent names).

    ``audit``: an ``AuditLog`` (or None to keep no log); an existing file's entries are folded in
    first, so spend and freezes carry over. ``approver``: what in-process and HTTP clients ask when a
    payment needs approval (a function of the pending ``Decision`` returning True to grant);
    without one, such payments are refused."""

    def __init__(
        self,
        policy: Policy,
        *,
        projects: dict[str, Iterable[str]] | None = None,
        audit: AuditLog | None = None,
        approver: Callable[[Decision], bool] | None = None,
    ) -> None:
        self.policy = policy
        self.projects = {name: set(agents) for name, agents in (projects or {}).items()}
        self.audit = audit
        self.approver = approver
        self._labels = policy.labels()
        self._lock = threading.RLock()
        self._tickets = 0
        self._spend: Counter[SpendKey] = Counter()  # (rule, who, period) -> atomic units reserved
        self._calls: Counter[CallKey] = Counter()  # (rule, who, target, period) -> calls reserved
        self._rate: dict[tuple[str, str], deque[float]] = {}  # (rule, who) -> times of reserved payments
        self._charges: dict[int, _Charge] = {}  # ticket -> what it holds, until it settles or fails
        self._pending: dict[int, Decision] = {}  # ticket -> decision waiting for approval
        # agent -> (time, amount, ticket) of reserved payments
        self._recent: dict[str, deque[tuple[float, int, int]]] = {}
        self._tries: dict[tuple[str, str], deque[float]] = {}  # (agent, resource) -> times of attempts
        self._streak: Counter[str] = Counter()  # agent -> failed or denied payments in a row
        self._seen: dict[str, set[str]] = {}  # agent -> payees paid
        self._attempts: dict[int, dict[str, Any]] = {}  # ticket -> decision entry (for outcomes)
        self.frozen: dict[str, Freeze] = {}
        self.stats = GovernorStats()
        self._velocity_window = max((t.window for t in policy.triggers if isinstance(t, Velocity)), default=0)
        if audit is not None:
            for entry in audit.entries:
                self._apply(entry)
                self._tickets = max(self._tickets, entry.get("ticket") or 0)

    # -- the public calls -----------------------------------------------------------------------------

    def decide(self, attempt: Attempt, now: float) -> Decision:
        """Allow, deny or ask for approval of ``attempt`` at unix time ``now`` (and log it)."""
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            freeze = self.frozen.get(attempt.agent)
            if freeze is not None:
                decision = Decision(
                    DENY, ticket, attempt, "frozen", f"frozen at {freeze.at:.0f} by {freeze.trigger}"
                )
            else:
                decision = self._triggered(attempt, ticket, now) or self._judge(attempt, ticket, now)
            self._log(self._decision_entry(decision, now))
            if decision.verdict == DENY:
                self._after_failure(attempt.agent, now)
            return decision

    def approve(self, decision: Decision, granted: bool, now: float, by: str = "approver") -> Decision:
        """The decision after the approver's answer to a ``needs-approval`` decision."""
        with self._lock:
            if self._pending.get(decision.ticket) is None:
                raise ValueError(f"ticket {decision.ticket} is not waiting for approval")
            rule = decision.rule
            freeze = self.frozen.get(decision.attempt.agent)
            if freeze is not None and granted:  # frozen while it waited: the freeze wins
                granted, rule = False, "frozen"
                reason = f"approved by {by}, but frozen at {freeze.at:.0f} by {freeze.trigger} meanwhile"
            else:
                reason = f"approved by {by}" if granted else f"refused by {by}"
            verdict = ALLOW if granted else DENY
            answer = Decision(verdict, decision.ticket, decision.attempt, rule, reason)
            self._log(
                {
                    "event": "approval",
                    "time": now,
                    "agent": decision.attempt.agent,
                    "ticket": decision.ticket,
                    "decision": verdict,
                    "rule": rule,
                    "by": by,
                    "reason": reason,
                }
            )
            if not granted:
                self._after_failure(decision.attempt.agent, now)
            return answer

    def ask_approver(self, decision: Decision, now: float) -> Decision:
        """``approve`` with this governor's own approver's answer (refused when it has none)."""
        if self.approver is None:
            return self.approve(decision, False, now, by="no approver")
        return self.approve(decision, bool(self.approver(decision)), now)

    def record(self, decision: Decision, outcome: str, now: float, tx: str | None = None) -> None:
        """What became of an allowed payment: ``settled``, ``failed`` or ``unknown``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        with self._lock:
            if decision.ticket not in self._charges:
                raise ValueError(f"ticket {decision.ticket} holds no allowed payment")
            self._log(
                {
                    "event": "outcome",
                    "time": now,
                    "agent": decision.attempt.agent,
                    "ticket": decision.ticket,
                    "outcome": outcome,
                    "tx": tx,
                }
            )
            if outcome == "failed":
                self._after_failure(decision.attempt.agent, now)

    def unfreeze(self, agent: str, now: float, by: str, reason: str = "") -> None:
        """Let a frozen agent pay again (its trigger history starts afresh)."""
        with self._lock:
            if agent not in self.frozen:
                raise ValueError(f"agent {agent!r} is not frozen")
            self._log({"event": "unfreeze", "time": now, "agent": agent, "by": by, "reason": reason})

    @property
    def head(self) -> str | None:
        """The hash of the last audit entry (None without a log)."""
        return self.audit.head if self.audit is not None else None

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()

    # -- judging ---------------------------------------------------------------------------------------

    def _applies(self, item: Scoped, agent: str) -> bool:
        scope = item.applies_to
        if scope == "everyone":
            return True
        if scope.startswith("agent:"):
            return agent == scope[6:]
        return agent in self.projects.get(scope[8:], ())

    def _who(self, item: Scoped, agent: str) -> str:
        return f"shared {item.applies_to}" if getattr(item, "shared", False) else agent

    def _triggered(self, a: Attempt, ticket: int, now: float) -> Decision | None:
        for trigger in self.policy.triggers:
            if not self._applies(trigger, a.agent):
                continue
            why = None
            if isinstance(trigger, Velocity):
                recent = sum(x for t, x, _ in self._recent.get(a.agent, ()) if t > now - trigger.window)
                if recent + a.amount > trigger.max:
                    why = f"{_u(recent + a.amount)} within {trigger.window:g} s (max {_u(trigger.max)})"
            elif isinstance(trigger, NewPayee):
                known = self._seen.get(a.agent, set()) | {p.lower() for p in trigger.known}
                if a.amount > trigger.above and a.pay_to.lower() not in known:
                    why = f"{_u(a.amount)} to {a.pay_to}, a payee never paid (above {_u(trigger.above)})"
            elif isinstance(trigger, EndpointBurst):
                tries = [t for t in self._tries.get((a.agent, a.resource), ()) if t > now - trigger.window]
                if len(tries) + 1 > trigger.max_requests:
                    why = f"{len(tries) + 1} payments to {a.resource} within {trigger.window:g} s"
            if why is not None:
                label = self._labels[id(trigger)]
                self._log({"event": "freeze", "time": now, "agent": a.agent, "rule": label, "reason": why})
                return Decision(DENY, ticket, a, label, f"agent frozen: {why}")
        return None

    def _judge(self, a: Attempt, ticket: int, now: float) -> Decision:
        approval: Approval | None = None
        for rule in self.policy.rules:
            if not self._applies(rule, a.agent):
                continue
            why = self._refusal(rule, a, now)
            if why is not None:
                return Decision(DENY, ticket, a, self._labels[id(rule)], why)
            if isinstance(rule, Approval) and a.amount > rule.above and approval is None:
                approval = rule
        if approval is not None:
            reason = f"{_u(a.amount)} is above the approval threshold {_u(approval.above)}"
            return Decision(NEEDS_APPROVAL, ticket, a, self._labels[id(approval)], reason)
        return Decision(ALLOW, ticket, a)

    def _refusal(self, rule: Rule, a: Attempt, now: float) -> str | None:
        label = self._labels[id(rule)]
        if isinstance(rule, RequestCap):
            return (
                f"{_u(a.amount)} is above the per-request cap {_u(rule.max)}" if a.amount > rule.max else None
            )
        if isinstance(rule, Allow | Block):
            for name, value in (
                ("payees", a.pay_to),
                ("assets", a.asset),
                ("networks", a.network),
                ("hosts", a.host),
            ):
                listed = rule.matches(name, value)
                if listed is not None and listed == isinstance(rule, Block):
                    return f"{name[:-1]} {value} is {'blocked' if listed else 'not allowed'}"
            return None
        who = self._who(rule, a.agent)
        if isinstance(rule, SpendLimit):
            used = self._spend[(label, who, period_key(rule.period, now))]
            if used + a.amount > rule.max:
                per = "" if rule.period == "run" else f" this {rule.period}"
                return f"{_u(a.amount)} would bring spend to {_u(used + a.amount)}, over {_u(rule.max)}{per}"
        elif isinstance(rule, UsageLimit):
            target = _target(rule.per, a)
            used = self._calls[(label, who, target, period_key(rule.period, now))]
            if used + 1 > rule.max_calls:
                return f"{rule.max_calls} paid calls to {target} already used"
        elif isinstance(rule, RateLimit):
            times = self._rate.get((label, who), ())
            if sum(1 for t in times if t > now - rule.window) + 1 > rule.max_payments:
                return f"more than {rule.max_payments} payments within {rule.window:g} s"
        return None

    # -- the audit log, and the state as its fold ----------------------------------------------------------

    def _decision_entry(self, d: Decision, now: float) -> dict[str, Any]:
        a = d.attempt
        return {
            "event": "decision",
            "time": now,
            "agent": a.agent,
            "projects": sorted(p for p, members in self.projects.items() if a.agent in members),
            "ticket": d.ticket,
            "resource": a.resource,
            "payee": a.pay_to,
            "asset": a.asset,
            "network": a.network,
            "amount": str(a.amount),
            "decision": d.verdict,
            "rule": d.rule,
            "reason": d.reason,
        }

    def _log(self, entry: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(entry)
        self._apply(entry)

    def _apply(self, e: dict[str, Any]) -> None:
        event, agent, now = e["event"], e["agent"], e["time"]
        if event == "decision":
            self._apply_decision(e)
        elif event == "approval":
            pending = self._pending.pop(e["ticket"], None)
            self.stats.approvals["granted" if e["decision"] == ALLOW else "refused"] += 1
            if e["decision"] == DENY and pending is not None:
                self._release(e["ticket"])
                self._streak[agent] += 1
        elif event == "outcome":
            self.stats.outcomes[e["outcome"]] += 1
            if e["outcome"] == "settled":
                self._streak[agent] = 0
                paid = self._attempts.get(e["ticket"])
                if paid is not None:
                    self._seen.setdefault(agent, set()).add(paid["payee"].lower())
            elif e["outcome"] == "failed":
                self._release(e["ticket"])
                self._streak[agent] += 1
            if e["outcome"] != "unknown":
                self._charges.pop(e["ticket"], None)
                self._attempts.pop(e["ticket"], None)
        elif event == "freeze":
            freeze = Freeze(agent, now, e["rule"], e["reason"])
            self.frozen[agent] = freeze
            self.stats.freezes.append(freeze)
        elif event == "unfreeze":
            self.frozen.pop(agent, None)
            self._streak[agent] = 0
            self._recent.pop(agent, None)
            for key in [k for k in self._tries if k[0] == agent]:
                del self._tries[key]

    def _apply_decision(self, e: dict[str, Any]) -> None:
        agent, now, verdict = e["agent"], e["time"], e["decision"]
        attempt = Attempt(agent, e["resource"], e["payee"], e["asset"], e["network"], int(e["amount"]))
        self.stats.decisions[verdict] += 1
        self._tries.setdefault((agent, attempt.resource), deque()).append(now)
        self._trim_tries(agent, attempt.resource, now)
        if verdict == DENY:
            self._streak[agent] += 1
            self.stats.denials[e["rule"]] += 1
            self.stats.denied_amount[e["rule"]] += attempt.amount
            return
        if verdict == NEEDS_APPROVAL:
            self.stats.approvals["requested"] += 1
            self._pending[e["ticket"]] = Decision(verdict, e["ticket"], attempt, e["rule"], e["reason"])
        self._reserve(e["ticket"], attempt, now)
        self._attempts[e["ticket"]] = e

    def _after_failure(self, agent: str, now: float) -> None:
        """Freeze ``agent`` if a failure-streak trigger's count is reached (the streak was counted)."""
        if agent in self.frozen:
            return
        for trigger in self.policy.triggers:
            streak = self._streak[agent]
            if (
                isinstance(trigger, FailureStreak)
                and self._applies(trigger, agent)
                and streak >= trigger.count
            ):
                why = f"{streak} failed or denied payments in a row"
                label = self._labels[id(trigger)]
                self._log({"event": "freeze", "time": now, "agent": agent, "rule": label, "reason": why})
                return

    def _reserve(self, ticket: int, a: Attempt, now: float) -> None:
        charge = _Charge(a.agent, a.amount, [], [])
        for rule in self.policy.rules:
            if not self._applies(rule, a.agent):
                continue
            label, who = self._labels[id(rule)], self._who(rule, a.agent)
            if isinstance(rule, SpendLimit):
                spend_key = (label, who, period_key(rule.period, now))
                self._spend[spend_key] += a.amount
                charge.spends.append(spend_key)
            elif isinstance(rule, UsageLimit):
                call_key = (label, who, _target(rule.per, a), period_key(rule.period, now))
                self._calls[call_key] += 1
                charge.calls.append(call_key)
            elif isinstance(rule, RateLimit):
                times = self._rate.setdefault((label, who), deque())
                times.append(now)
                while times and times[0] <= now - rule.window:
                    times.popleft()
        self._charges[ticket] = charge
        if self._velocity_window:
            recent = self._recent.setdefault(a.agent, deque())
            recent.append((now, a.amount, ticket))
            while recent and recent[0][0] <= now - self._velocity_window:
                recent.popleft()

    def _release(self, ticket: int) -> None:
        charge = self._charges.pop(ticket, None)
        if charge is None:
            return
        for spend_key in charge.spends:
            self._spend[spend_key] -= charge.amount
        for call_key in charge.calls:
            self._calls[call_key] -= 1
        recent = self._recent.get(charge.agent)
        if recent:  # what never left the wallet is no spend velocity
            self._recent[charge.agent] = deque(x for x in recent if x[2] != ticket)

    def _trim_tries(self, agent: str, resource: str, now: float) -> None:
        window = max((t.window for t in self.policy.triggers if isinstance(t, EndpointBurst)), default=0)
        tries = self._tries[(agent, resource)]
        while tries and tries[0] <= now - window:
            tries.popleft()
        if not tries:
            del self._tries[(agent, resource)]

    # -- reading ----------------------------------------------------------------------------------------

    def spent(self, agent: str, rule: str | None = None, now: float | None = None) -> int:
        """What ``agent`` has reserved against spend-limit ``rule`` (the first spend limit that applies
        to it when None) in the period of ``now`` (the run's total for ``run`` limits)."""
        for item in self.policy.rules:
            if isinstance(item, SpendLimit) and self._applies(item, agent):
                label = self._labels[id(item)]
                if rule is None or rule == label:
                    key = period_key(item.period, now if now is not None else 0)
                    return self._spend[(label, self._who(item, agent), key)]
        raise KeyError(f"no spend limit {rule or ''} applies to agent {agent!r}")


def _u(atomic: int) -> str:
    return f"{format_usdc(atomic)} USDC"


def _target(per: str, a: Attempt) -> str:
    return {"host": a.host, "resource": a.resource, "payee": a.pay_to.lower()}[per]


__all__ = [
    "ALLOW",
    "DENY",
    "NEEDS_APPROVAL",
    "Attempt",
    "Decision",
    "Freeze",
    "Governor",
    "GovernorStats",
    "period_key",
]
