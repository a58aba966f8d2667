"""The reference client under a governor, in process: what the governor says is what lands on chain."""

import pytest

from x402sim.actors.client import SpendPolicy
from x402sim.actors.messages import Approval, Approve, HttpRequest, Send, Unreachable
from x402sim.governance import DENY, AuditLog, Governor, parse_policies, verify

PRICE = 10_000


def finish(steps, answer):
    """Resume ``steps`` with ``answer``, which must end it: its result."""
    try:
        effect = steps.send(answer)
    except StopIteration as done:
        return done.value
    raise AssertionError(f"the fetch went on with {effect!r}")


def make_governor(rules=(), triggers=(), **kwargs) -> Governor:
    policy = parse_policies({"policies": [{"name": "p", "rules": list(rules), "triggers": list(triggers)}]})
    return Governor(policy.policy(), **kwargs)


def test_a_frozen_agent_pays_nothing(tb):
    shop = tb.server({"GET /data": PRICE})
    gov = make_governor(triggers=[{"kind": "velocity", "max": "0.03", "window": 600}])
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, governor=gov, agent="alice")
    results = [client.get(shop, "/data") for _ in range(3)]
    tb.mine()
    assert all(r.paid for r in results)
    frozen_at = tb.chain.balance_of(payer.address)
    blocks = tb.chain.block_number
    for hour in range(5):
        tb.advance(3600 * (hour > 0))  # the first one trips the trigger, the rest come hours later
        result = client.get(shop, "/data")
        assert result.status == 402 and result.refused.startswith("governance: ")
        assert result.payment is None  # nothing was even signed
    tb.mine()
    assert gov.frozen["alice"].trigger == "velocity#0"
    assert tb.chain.balance_of(payer.address) == frozen_at == 10**6 - 3 * PRICE
    assert [t.sender for t in tb.chain.transfers(since_block=blocks + 1)] == []
    assert len(client.payments) == 3


def test_two_payments_in_flight_cannot_both_pass_a_limit_only_one_fits(tb):
    shop = tb.server({"GET /data": PRICE})
    gov = make_governor([{"kind": "spend-limit", "max": "0.015"}])
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, governor=gov)
    request = HttpRequest("GET", "/data", (("Host", "shop.test"),))
    first, second = client.role.fetch(request, tb.now), client.role.fetch(request, tb.now)
    # both send the request and get their 402 before either pays
    effects = [next(first), next(second)]
    answers = [tb.perform(shop, e) for e in effects]
    paid = first.send(answers[0])  # the first signs: its 10,000 is reserved
    assert isinstance(paid, Send) and paid.request.header("PAYMENT-SIGNATURE")
    refused = finish(second, answers[1])
    assert refused.decision.verdict == DENY and "over 0.015 USDC" in refused.refused
    assert finish(first, tb.perform(shop, paid)).paid
    assert tb.chain.balance_of(payer.address) == 10**6 - PRICE
    assert tb.chain.balance_of(shop.pay_to) == PRICE


def test_approvals_go_through_the_driver_and_a_refusal_signs_nothing(tb):
    shop = tb.server({"GET /cheap": PRICE, "GET /dear": 50 * PRICE})
    asked = []

    def approver(decision):
        asked.append(decision.attempt.resource)
        return decision.attempt.amount < 40 * PRICE

    gov = make_governor([{"kind": "approval", "above": "0.1"}], approver=approver)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, governor=gov)
    assert client.get(shop, "/cheap").paid and asked == []
    dear = client.get(shop, "/dear")
    assert dear.refused == "governance: approval#0: refused by approver" and dear.payment is None
    assert tb.chain.balance_of(payer.address) == 10**6 - PRICE
    assert asked and asked[0].endswith("/dear")


def test_an_unanswered_payment_stays_reserved_and_is_logged_unknown(tb, tmp_path):
    shop = tb.server({"GET /data": PRICE})
    gov = make_governor([{"kind": "spend-limit", "max": "0.01"}], audit=AuditLog(tmp_path / "audit.jsonl"))
    client = tb.client(tb.account(usdc=10**6), governor=gov, agent="bob")
    steps = client.role.fetch(HttpRequest("GET", "/data"), tb.now)
    paid = steps.send(tb.perform(shop, next(steps)))
    with pytest.raises(Unreachable):
        steps.throw(Unreachable("server", "connection reset"))
    assert gov.spent("bob") == PRICE
    assert client.get(shop, "/data").refused.startswith("governance: spend-limit#0")
    gov.close()
    entries = verify(tmp_path / "audit.jsonl").entries
    assert [e["event"] for e in entries] == ["decision", "outcome", "decision"]
    assert entries[1]["outcome"] == "unknown" and paid.request.header("PAYMENT-SIGNATURE")


def test_the_client_waits_for_the_approval_effect(tb):
    shop = tb.server({"GET /dear": 50 * PRICE})
    gov = make_governor([{"kind": "approval", "above": "0.1"}])
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, governor=gov)
    steps = client.role.fetch(HttpRequest("GET", "/dear"), tb.now)
    effect = steps.send(tb.perform(shop, next(steps)))
    assert isinstance(effect, Approve) and effect.decision.attempt.amount == 50 * PRICE
    later = tb.now + 120
    paid = steps.send(Approval(True, by="ops", now=later))
    assert isinstance(paid, Send)
    result = finish(steps, tb.perform(shop, paid))
    assert result.paid
    assert int(result.payment.payload["authorization"]["validAfter"]) <= later
    assert tb.chain.balance_of(payer.address) == 10**6 - 50 * PRICE


def test_a_spend_policy_becomes_a_governance_policy_with_the_same_limits(tb):
    shop = tb.server({"GET /data": PRICE, "GET /dear": 6 * PRICE})
    spend = SpendPolicy(max_price=5 * PRICE, budget=2 * PRICE + 5_000, allowed_pay_to=[shop.pay_to])
    old = tb.client(tb.account(usdc=10**6), spend)
    new = tb.client(tb.account(usdc=10**6), governor=Governor(spend.to_policy()))
    for client in (old, new):
        outcomes = [client.get(shop, path).paid for path in ("/dear", "/data", "/data", "/data")]
        assert outcomes == [False, True, True, False]
        assert tb.chain.balance_of(client.address) == 10**6 - 2 * PRICE
