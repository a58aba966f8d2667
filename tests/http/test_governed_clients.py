"""The httpx paying clients under a governor, against a served resource server, facilitator and chain on
loopback: what the governor denies is never signed and never moves, concurrent payments cannot both
pass a limit only one fits, approvals go to the governor's approver, and the audit log verifies.
Judged on chain: balances, ``Transfer`` logs and ``authorizationState``."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.http.conftest import PRICE, World
from x402sim.governance import AuditLog, Governor, parse_policies, summarize, verify
from x402sim.http import AsyncPayingClient, PayingClient

PREMIUM = 5 * PRICE
WAIT = 30  # seconds a held request waits for its gate before the test fails (it is opened, not timed)


@pytest.fixture(scope="module")
def shop():
    """One live world for the module (Hypothesis runs many examples): /weather costs PRICE, /premium
    PREMIUM. Tests judge by differences in balances and transfers, never absolute values."""
    w = World(routes={"GET /weather": PRICE, "GET /premium": PREMIUM})
    yield w
    w.stop()


def policy(*rules, triggers=(), projects=None):
    data = {"policies": [{"name": "p", "rules": list(rules), "triggers": list(triggers)}]}
    if projects:
        data["projects"] = projects
    return parse_policies(data, "test").policy()


def usdc(atomic: int) -> str:
    return f"{atomic / 10**6:.6f}"


class Chain:
    """What the chain says about the shop's payer and payee, before and after."""

    def __init__(self, w: World):
        self.w = w
        self.payer = w.chain.balance_of(w.payer)
        self.payee = w.chain.balance_of(w.payee)
        self.transfers = self._transfers()

    def _transfers(self) -> int:
        return sum(1 for t in self.w.chain.transfers() if t.to == self.w.payee)

    def moved(self) -> tuple[int, int, int]:
        """(payer's loss, payee's gain, new Transfer logs to the payee)."""
        w = self.w
        return (
            self.payer - w.chain.balance_of(w.payer),
            w.chain.balance_of(w.payee) - self.payee,
            self._transfers() - self.transfers,
        )


def nonce(result) -> bytes:
    return bytes.fromhex(result.payment.payload["authorization"]["nonce"][2:])


class Recording(httpx.HTTPTransport):
    """Records whether each request carried a payment."""

    def __init__(self):
        super().__init__()
        self.paid = []

    def handle_request(self, request):
        self.paid.append("payment-signature" in request.headers)
        return super().handle_request(request)


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self):
        super().__init__()
        self.paid = []

    async def handle_async_request(self, request):
        self.paid.append("payment-signature" in request.headers)
        return await super().handle_async_request(request)


def get_sync(w, governor, path="/weather", **kwargs):
    client = PayingClient(w.payer_key, networks=(w.chain.network,), governor=governor, **kwargs)
    client._http = httpx.Client(transport=(transport := Recording()))
    with client:
        return client.get(w.server_url + path), client, transport


def get_async(w, governor, path="/weather", **kwargs):
    async def go():
        client = AsyncPayingClient(w.payer_key, networks=(w.chain.network,), governor=governor, **kwargs)
        client._http = httpx.AsyncClient(transport=(transport := AsyncRecording()))
        async with client:
            return await client.get(w.server_url + path), client, transport

    return asyncio.run(go())


GETS = {"sync": get_sync, "async": get_async}

# Rules that each deny one /weather payment (PRICE to the shop's payee, on its host).
DENYING = {
    "cap": {"kind": "request-cap", "name": "cap", "max": usdc(PRICE - 1)},
    "spend": {"kind": "spend-limit", "name": "spend", "max": usdc(PRICE - 1), "period": "day"},
    "usage": {"kind": "usage-limit", "name": "usage", "max_calls": 0},
    "rate": {"kind": "rate-limit", "name": "rate", "max_payments": 0},
    "payees": {"kind": "allow", "name": "payees", "payees": ["0x" + "11" * 20]},
    "hosts": {"kind": "block", "name": "hosts", "hosts": ["the shop's host"]},  # filled in by the test
    "networks": {"kind": "allow", "name": "networks", "networks": ["eip155:1"]},
}


@settings(max_examples=20)
@given(
    rule=st.sampled_from(sorted(DENYING)),
    mode=st.sampled_from(sorted(GETS)),
    agent=st.sampled_from([None, "bot"]),
)
def test_a_denial_signs_nothing_and_moves_nothing(shop, tmp_path_factory, rule, mode, agent):
    denying = dict(DENYING[rule])
    if rule == "hosts":  # block this very host (host and port, as the governor names resources)
        denying["hosts"] = [shop.server_url.removeprefix("http://")]
    path = tmp_path_factory.mktemp("deny") / "audit.jsonl"
    governor = Governor(policy(denying), audit=AuditLog(path))
    before = Chain(shop)

    result, client, transport = GETS[mode](shop, governor, agent=agent)
    governor.close()

    assert result.status == 402 and result.payment is None and not client.payments
    assert result.decision is not None and result.decision.rule == rule
    assert result.refused == f"governance: {result.decision.explain()}"
    assert transport.paid == [False]  # one unpaid request; no payment header ever left
    assert before.moved() == (0, 0, 0)
    report = verify(path, head=governor.head)
    assert report.ok and [e["event"] for e in report.entries] == ["decision"]
    (entry,) = report.entries
    assert entry["decision"] == "deny" and entry["rule"] == rule and entry["amount"] == str(PRICE)
    assert entry["agent"] == (agent or shop.payer) and entry["payee"] == shop.payee


# Limits that fit exactly k payments of PRICE (a spend limit with change to spare: k fit, k + 1 do not).
def fitting(kind: str, k: int) -> dict:
    return {
        "spend": {"kind": "spend-limit", "name": "limit", "max": usdc(k * PRICE + PRICE // 2)},
        "usage": {"kind": "usage-limit", "name": "limit", "max_calls": k, "per": "resource"},
        "rate": {"kind": "rate-limit", "name": "limit", "max_payments": k, "window": 3600},
    }[kind]


class Counting(Governor):
    """Calls ``on_all`` once ``expected`` decisions were made: a paid request held until then proves
    every decision was made while the allowed payments were still in flight (none had settled)."""

    def __init__(self, *args, expected: int, on_all, **kwargs):
        super().__init__(*args, **kwargs)
        self.expected, self.on_all, self.decided = expected, on_all, 0

    def decide(self, attempt, now):
        decision = super().decide(attempt, now)
        self.decided += 1
        if self.decided == self.expected:
            self.on_all()
        return decision


def judge_concurrent(w, before, results, governor, path, n, k):
    paid = [r for r in results if r.payment is not None]
    denied = [r for r in results if r.payment is None]
    assert len(paid) == k and all(r.status == 200 and r.paid for r in paid)
    assert len(denied) == n - k and all(r.status == 402 and r.decision.rule == "limit" for r in denied)
    assert before.moved() == (k * PRICE, k * PRICE, k)
    assert all(w.chain.authorization_state(w.payer, nonce(r)) for r in paid)
    report = verify(path, head=governor.head)
    assert report.ok
    summary = summarize(report.entries)
    assert summary["decisions"] == {k: v for k, v in (("allow", k), ("deny", n - k)) if v}
    assert summary["spend"]["agents"] == ({"bot": k * PRICE} if k else {})


@settings(max_examples=12)
@given(data=st.data(), n=st.integers(2, 8), kind=st.sampled_from(["spend", "usage", "rate"]))
def test_concurrent_async_payments_cannot_both_pass_a_limit_only_one_fits(
    shop, tmp_path_factory, data, n, kind
):
    k = data.draw(st.integers(1, n - 1), label="payments that fit")
    path = tmp_path_factory.mktemp("gather") / "audit.jsonl"
    before = Chain(shop)

    async def scene():
        gate = asyncio.Event()
        governor = Counting(policy(fitting(kind, k)), audit=AuditLog(path), expected=n, on_all=gate.set)

        class Held(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request):
                if "payment-signature" in request.headers:
                    await asyncio.wait_for(gate.wait(), WAIT)  # until all n decisions are made
                return await super().handle_async_request(request)

        client = AsyncPayingClient(
            shop.payer_key, networks=(shop.chain.network,), governor=governor, agent="bot"
        )
        client._http = httpx.AsyncClient(transport=Held(), timeout=WAIT)
        async with client:
            results = await asyncio.gather(*(client.get(shop.server_url + "/weather") for _ in range(n)))
        governor.close()
        return results, governor

    results, governor = asyncio.run(scene())
    judge_concurrent(shop, before, results, governor, path, n, k)


@settings(max_examples=6)
@given(n=st.integers(2, 6), kind=st.sampled_from(["spend", "usage", "rate"]))
def test_concurrent_threads_cannot_both_pass_a_limit_only_one_fits(shop, tmp_path_factory, n, kind):
    """One governor shared by n threads, each with its own PayingClient (one agent, one wallet)."""
    path = tmp_path_factory.mktemp("threads") / "audit.jsonl"
    gate = threading.Event()
    governor = Counting(policy(fitting(kind, 1)), audit=AuditLog(path), expected=n, on_all=gate.set)
    before = Chain(shop)

    class Held(httpx.HTTPTransport):
        def handle_request(self, request):
            if "payment-signature" in request.headers:
                assert gate.wait(WAIT), "not every decision was made"
            return super().handle_request(request)

    def one(_):
        client = PayingClient(shop.payer_key, networks=(shop.chain.network,), governor=governor, agent="bot")
        client._http = httpx.Client(transport=Held(), timeout=WAIT)
        with client:
            return client.get(shop.server_url + "/weather")

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    governor.close()
    judge_concurrent(shop, before, results, governor, path, n, 1)


@pytest.mark.parametrize("mode", sorted(GETS))
def test_approvals_are_asked_of_the_governors_approver(shop, tmp_path, mode):
    path = tmp_path / "audit.jsonl"
    asked, answers = [], iter([True, False])

    def approver(decision):
        asked.append(decision)
        return next(answers)

    rules = [{"kind": "approval", "name": "big", "above": usdc(PRICE)}]
    governor = Governor(policy(*rules), audit=AuditLog(path), approver=approver)
    before = Chain(shop)

    cheap, *_ = GETS[mode](shop, governor, "/weather")  # below the threshold: nobody is asked
    assert cheap.paid and not asked
    granted, *_ = GETS[mode](shop, governor, "/premium")
    assert granted.paid and granted.decision.reason == "approved by approver"
    assert shop.chain.authorization_state(shop.payer, nonce(granted))
    refused, client, transport = GETS[mode](shop, governor, "/premium")
    assert refused.payment is None and not client.payments and transport.paid == [False]
    assert refused.decision.rule == "big" and refused.decision.reason == "refused by approver"
    assert [d.attempt.amount for d in asked] == [PREMIUM, PREMIUM]
    assert asked[0].rule == "big" and asked[0].attempt.resource.endswith("/premium")
    assert before.moved() == (PRICE + PREMIUM, PRICE + PREMIUM, 2)

    governor.close()
    nobody = Governor(policy(*rules), audit=AuditLog(path))  # no approver: refused, and logged
    unanswered, *_ = GETS[mode](shop, nobody, "/premium")
    nobody.close()
    assert unanswered.decision.reason == "refused by no approver"
    assert before.moved() == (PRICE + PREMIUM, PRICE + PREMIUM, 2)

    report = verify(path, head=nobody.head)
    assert report.ok
    summary = summarize(report.entries)
    assert summary["approvals"] == {"requested": 3, "granted": 1, "refused": 2}
    assert summary["spend"]["agents"] == {shop.payer: PRICE + PREMIUM}
    approvals = [e for e in report.entries if e["event"] == "approval"]
    assert [(e["decision"], e["by"]) for e in approvals] == [
        ("allow", "approver"),
        ("deny", "approver"),
        ("deny", "no approver"),
    ]


@pytest.mark.parametrize("mode", sorted(GETS))
def test_the_clients_audit_file_verifies_and_carries_spend_over(shop, tmp_path, mode):
    path = tmp_path / "audit.jsonl"
    rules = [{"kind": "spend-limit", "name": "daily", "max": usdc(3 * PRICE), "period": "day"}]
    projects = {"lab": ["bot"]}
    before = Chain(shop)
    governor = Governor(policy(*rules, projects=projects), projects=projects, audit=AuditLog(path))
    results = [GETS[mode](shop, governor, agent="bot")[0] for _ in range(2)]
    governor.close()
    assert all(r.paid for r in results)
    report = verify(path, head=governor.head)
    assert report.ok and [e["event"] for e in report.entries] == ["decision", "outcome"] * 2
    txs = {e["tx"] for e in report.entries if e["event"] == "outcome"}
    assert txs == {r.settlement.transaction for r in results}
    summary = summarize(report.entries)
    assert summary["spend"] == {
        "agents": {"bot": 2 * PRICE},
        "projects": {"lab": 2 * PRICE},
        "payees": {shop.payee: 2 * PRICE},
    }
    assert before.moved() == (2 * PRICE, 2 * PRICE, 2)

    # A governor resumed from the file knows the day's spend: one more fits, the next does not.
    resumed = Governor(policy(*rules, projects=projects), projects=projects, audit=AuditLog(path))
    third, fourth = (GETS[mode](shop, resumed, agent="bot")[0] for _ in range(2))
    resumed.close()
    assert third.paid and fourth.payment is None and fourth.decision.rule == "daily"
    assert before.moved() == (3 * PRICE, 3 * PRICE, 3)
    assert verify(path, head=resumed.head).ok
