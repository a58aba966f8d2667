"""The governor: limits that hold under concurrency, calendar periods, triggers, approvals, resume."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.governance import ALLOW, DENY, NEEDS_APPROVAL, Attempt, AuditLog, Governor, parse_policies

T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC, a Thursday
PAYEE = "0x00000000000000000000000000000000000000aa"


def governor(rules=(), triggers=(), projects=None, audit=None, approver=None) -> Governor:
    data = {"policies": [{"name": "p", "rules": list(rules), "triggers": list(triggers)}]}
    if projects:
        data["projects"] = projects
    return Governor(parse_policies(data).policy(), projects=projects, audit=audit, approver=approver)


def attempt(amount, agent="alice", resource="api.test/data", pay_to=PAYEE) -> Attempt:
    return Attempt(agent, resource, pay_to, "0xusdc", "eip155:31337", amount)


# -- limits under concurrency ----------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("try"), st.sampled_from(["alice", "bob", "carol"]), st.integers(1, 400_000)),
        st.tuples(st.just("end"), st.integers(0, 50), st.sampled_from(["settled", "failed", "unknown"])),
        st.tuples(st.just("answer"), st.integers(0, 50), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(ops=operations, shared=st.booleans(), limit=st.integers(0, 1_000_000))
def test_no_interleaving_of_payments_in_flight_passes_a_spend_limit(ops, shared, limit):
    """Payments are decided while others are still in flight (allowed, not yet settled), approvals
    come back in any order: what is settled or may have settled never exceeds the limit."""
    rules = [
        {"kind": "spend-limit", "max": str(limit / 10**6), "shared": shared},
        {"kind": "approval", "above": "0.2"},
    ]
    g = governor(rules)
    in_flight, waiting, settled, unknown = [], [], {}, {}
    for op in ops:
        if op[0] == "try":
            d = g.decide(attempt(op[2], op[1]), T0)
            (in_flight if d.verdict == ALLOW else waiting if d.verdict == NEEDS_APPROVAL else []).append(d)
        elif op[0] == "end" and in_flight:
            d = in_flight.pop(op[1] % len(in_flight))
            g.record(d, op[2], T0)
            bucket = settled if op[2] == "settled" else unknown if op[2] == "unknown" else {}
            bucket[d.attempt.agent] = bucket.get(d.attempt.agent, 0) + d.attempt.amount
        elif op[0] == "answer" and waiting:
            d = g.approve(waiting.pop(op[1] % len(waiting)), op[2], T0)
            if d.allowed:
                in_flight.append(d)
        held = {}
        for d in in_flight + waiting:
            held[d.attempt.agent] = held.get(d.attempt.agent, 0) + d.attempt.amount
        per_agent = {
            a: settled.get(a, 0) + unknown.get(a, 0) + held.get(a, 0) for a in ("alice", "bob", "carol")
        }
        if shared:
            assert sum(per_agent.values()) <= limit
        else:
            assert max(per_agent.values()) <= limit


def test_threads_racing_for_one_budget_get_exactly_what_fits():
    g = governor([{"kind": "spend-limit", "max": "0.05", "shared": True}])
    start = threading.Barrier(20)
    verdicts = []

    def pay(i):
        start.wait()
        verdicts.append(g.decide(attempt(10_000, f"agent-{i}"), T0).verdict)

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts.count(ALLOW) == 5 and verdicts.count(DENY) == 15


def test_a_failed_payment_frees_its_reservation_and_an_unknown_one_keeps_it():
    g = governor([{"kind": "spend-limit", "max": "0.02"}])
    first, second = g.decide(attempt(10_000), T0), g.decide(attempt(10_000), T0)
    assert g.decide(attempt(1), T0).verdict == DENY
    g.record(first, "failed", T0)
    g.record(second, "unknown", T0)
    assert g.spent("alice") == 10_000
    assert g.decide(attempt(10_000), T0).allowed
    assert not g.decide(attempt(1), T0).allowed


# -- calendar periods -------------------------------------------------------------------------------------


def next_boundary(period: str, t: float) -> float:
    d = datetime.fromtimestamp(t, UTC)
    midnight = d.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        nxt = midnight + timedelta(days=1)
    elif period == "week":
        nxt = midnight + timedelta(days=7 - d.weekday())
    else:
        nxt = midnight.replace(day=1, month=d.month % 12 + 1, year=d.year + (d.month == 12))
    return nxt.timestamp()


@settings(max_examples=200)
@given(
    period=st.sampled_from(["day", "week", "month"]),
    start=st.floats(T0, T0 + 3 * 365 * 86_400),
    before=st.floats(0.001, 20 * 86_400),
    after=st.floats(0, 20 * 86_400),
)
def test_period_limits_reset_at_the_boundary_and_not_before(period, start, before, after):
    g = governor([{"kind": "spend-limit", "max": "1", "period": period}])
    assert g.decide(attempt(1_000_000), start).allowed
    boundary = next_boundary(period, start)
    earlier = max(start, boundary - before)
    assert g.decide(attempt(1), earlier).verdict == DENY  # still the same period
    later = boundary + after
    if later < next_boundary(period, boundary):
        assert g.decide(attempt(1_000_000), later).allowed  # a fresh period
        assert g.spent("alice", now=later) == 1_000_000
        assert g.spent("alice", now=start) == 1_000_000


def test_usage_and_rate_limits():
    g = governor(
        [
            {"kind": "usage-limit", "max_calls": 2, "per": "host"},
            {"kind": "rate-limit", "max_payments": 3, "window": 60},
        ]
    )
    assert [g.decide(attempt(1, resource="a.test/x"), T0 + i).allowed for i in range(3)] == [
        True,
        True,
        False,
    ]
    assert g.decide(attempt(1, resource="b.test/x"), T0 + 3).allowed
    assert g.decide(attempt(1, resource="c.test/x"), T0 + 4).verdict == DENY  # 3 payments in 60 s
    assert g.decide(attempt(1, resource="c.test/x"), T0 + 61).allowed  # the window slid past two


def test_lists_scopes_and_deny_wins():
    g = governor(
        [
            {"kind": "allow", "payees": [PAYEE], "hosts": ["api.test"]},
            {"kind": "block", "networks": ["eip155:31337"], "applies_to": "agent:mallory"},
            {"kind": "request-cap", "max": "0.5", "applies_to": "project:interns"},
        ],
        projects={"interns": ["bob"]},
    )
    assert g.decide(attempt(900_000), T0).allowed
    assert g.decide(attempt(900_000, "bob"), T0).rule == "request-cap#2"
    assert g.decide(attempt(1, "mallory"), T0).reason == "network eip155:31337 is blocked"
    assert g.decide(attempt(1, pay_to="0x" + "bb" * 20), T0).reason.startswith("payee 0x")
    assert g.decide(attempt(1, resource="evil.test/x"), T0).reason == "host evil.test is not allowed"


# -- triggers and freezes ---------------------------------------------------------------------------------


def test_velocity_freezes_and_a_frozen_agent_is_denied_until_unfrozen():
    g = governor(triggers=[{"kind": "velocity", "max": "0.1", "window": 60}])
    for i in range(10):
        assert g.decide(attempt(10_000), T0 + i).allowed
    frozen = g.decide(attempt(10_000), T0 + 10)
    assert frozen.verdict == DENY and frozen.rule == "velocity#0" and "frozen" in frozen.reason
    assert g.frozen["alice"].at == T0 + 10
    assert all(g.decide(attempt(1), T0 + 3600 * i).rule == "frozen" for i in range(1, 5))
    assert g.decide(attempt(1, "bob"), T0 + 11).allowed  # only alice is frozen
    g.unfreeze("alice", T0 + 4 * 3600, by="ops")
    assert g.decide(attempt(1), T0 + 4 * 3600).allowed


def test_failure_streak_new_payee_and_endpoint_burst():
    g = governor(
        triggers=[
            {"kind": "failure-streak", "count": 3},
            {"kind": "new-payee", "above": "0.1", "known": [PAYEE]},
            {"kind": "endpoint-burst", "max_requests": 5, "window": 10},
        ]
    )
    for _ in range(3):
        g.record(g.decide(attempt(1), T0), "failed", T0)
    assert g.frozen["alice"].trigger == "failure-streak#0"

    assert g.decide(attempt(200_000, "bob"), T0).allowed  # a known payee
    stranger = "0x" + "cc" * 20
    assert g.decide(attempt(50_000, "bob", pay_to=stranger), T0).allowed  # new, but small
    assert g.decide(attempt(200_000, "bob", pay_to=stranger), T0).rule == "new-payee#1"

    for i in range(5):
        assert g.decide(attempt(1, "carol"), T0 + i).allowed
    assert g.decide(attempt(1, "carol"), T0 + 5).rule == "endpoint-burst#2"


def test_approvals():
    g = governor([{"kind": "approval", "above": "1"}], approver=lambda d: d.attempt.amount < 2_000_000)
    asked = g.decide(attempt(1_500_000), T0)
    assert asked.verdict == NEEDS_APPROVAL and g.ask_approver(asked, T0).allowed
    assert g.ask_approver(g.decide(attempt(3_000_000), T0), T0).verdict == DENY
    assert g.decide(attempt(1_000_000), T0).allowed  # not above the threshold
    assert dict(g.stats.approvals) == {"requested": 2, "granted": 1, "refused": 1}
    with pytest.raises(ValueError, match="not waiting for approval"):
        g.approve(asked, True, T0)


# -- resuming from the audit log ---------------------------------------------------------------------------


@settings(max_examples=100)
@given(
    amounts=st.lists(
        st.tuples(st.integers(1, 300_000), st.sampled_from(["settled", "failed", "unknown"])), max_size=25
    ),
    probes=st.lists(st.integers(1, 400_000), min_size=1, max_size=10),
)
def test_a_governor_resumed_from_its_audit_log_decides_as_the_original(tmp_path_factory, amounts, probes):
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    rules = [{"kind": "spend-limit", "max": "2", "period": "day"}, {"kind": "rate-limit", "max_payments": 8}]
    triggers = [{"kind": "failure-streak", "count": 4}, {"kind": "velocity", "max": "1.5", "window": 30}]
    live = governor(rules, triggers, audit=AuditLog(path))
    for i, (amount, outcome) in enumerate(amounts):
        d = live.decide(attempt(amount), T0 + 5 * i)
        if d.allowed:
            live.record(d, outcome, T0 + 5 * i)
    live.close()
    resumed = governor(rules, triggers, audit=AuditLog(path))
    assert resumed.frozen == live.frozen and resumed.stats == live.stats
    now = T0 + 5 * len(amounts)
    for amount in probes:
        a, b = live.decide(attempt(amount), now), resumed.decide(attempt(amount), now)
        assert (a.verdict, a.rule, a.reason, a.ticket) == (b.verdict, b.rule, b.reason, b.ticket)


def test_a_freeze_while_an_approval_waits_wins_and_released_payments_are_no_velocity():
    g = governor(
        [{"kind": "approval", "above": "0.5"}],
        [{"kind": "velocity", "max": "1", "window": 60}, {"kind": "failure-streak", "count": 2}],
    )
    waiting = g.decide(attempt(900_000), T0)
    g.record(g.decide(attempt(1), T0), "failed", T0)
    g.record(g.decide(attempt(1), T0), "failed", T0)
    assert "alice" in g.frozen
    late = g.approve(waiting, True, T0 + 30)
    assert (
        late.verdict == DENY and late.rule == "frozen" and "approved by approver, but frozen" in late.reason
    )

    g2 = governor([{"kind": "approval", "above": "0.5"}], [{"kind": "velocity", "max": "1", "window": 60}])
    g2.approve(g2.decide(attempt(900_000), T0), False, T0)  # refused: never spent
    g2.record(g2.decide(attempt(400_000), T0), "failed", T0)  # failed: never spent
    assert g2.decide(attempt(900_000), T0 + 1).verdict == NEEDS_APPROVAL  # no velocity freeze
