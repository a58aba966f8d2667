"""The demonstration ``x402sim demo`` runs: a few agents paying a few servers on the embedded chain.

It exercises the whole foundation once, as a new user would want to see it: funded agents, paid
requests settled on chain, a replayed payment refused, a spend policy refusing a price, then a
report of balances, gas and the on-chain invariants. ``run_demo`` returns the facts; the CLI
renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from .actors.client import SpendPolicy
from .actors.messages import HttpRequest, Send
from .money import UNIT
from .protocol import (
    PAYMENT_SIGNATURE,
    AnyPaymentPayload,
    SettleResponse,
    encode_header,
    parse_payment_required,
    reason_class,
)
from .testbed import Testbed


@dataclass
class DemoReport:
    seed: int
    events: list[str] = field(default_factory=list)
    balances: list[tuple[str, str, int, int]] = field(default_factory=list)  # name, address, before, after
    paid_requests: int = 0
    settlements: int = 0
    gas_used: list[int] = field(default_factory=list)
    transfers_on_chain: int = 0
    supply_before: int = 0
    supply_after: int = 0
    replay_reason: str | None = None
    replay_class: str | None = None

    @property
    def supply_constant(self) -> bool:
        return self.supply_before == self.supply_after


def run_demo(seed: int = 7, requests: int = 5) -> DemoReport:
    report = DemoReport(seed=seed)
    tb = Testbed(seed=seed)
    alice, bob = tb.accounts(2, usdc=5 * UNIT)
    weather = tb.server({"GET /weather": 1_000, "GET /forecast": 10_000})
    news = tb.server({"GET /headlines": 2_500})
    people = [
        ("alice", alice.address),
        ("bob", bob.address),
        ("weather", weather.pay_to),
        ("news", news.pay_to),
    ]
    before = {addr: tb.chain.balance_of(addr) for _, addr in people}
    report.supply_before = tb.chain.total_supply()
    first_block = tb.chain.block_number + 1

    agent_a = tb.client(alice)
    agent_b = tb.client(bob, SpendPolicy(max_price=5_000))
    for i in range(requests):
        for name, agent, server, path in (
            ("alice", agent_a, weather, "/weather" if i % 2 == 0 else "/forecast"),
            ("bob", agent_b, news, "/headlines"),
        ):
            result = agent.get(server, path)
            if result.paid:
                report.paid_requests += 1
                tx = cast(SettleResponse, result.settlement).transaction  # paid: it has one
                report.events.append(f"{name} GET {path} -> {result.status}, paid, tx {tx[:12]}…")
            else:
                report.events.append(f"{name} GET {path} -> {result.status}: {result.refused or 'not paid'}")
        tb.advance(30)

    # bob's policy caps the price at 0.005 USDC: the forecast costs 0.01
    refused = agent_b.get(weather, "/forecast")
    report.events.append(f"bob GET /forecast -> {refused.status}, refused by policy: {refused.refused}")

    # a replay: alice pays once more, then her payment header is sent again as it was
    result = agent_a.get(weather, "/weather")
    report.paid_requests += 1 if result.paid else 0
    payment = cast(AnyPaymentPayload, result.payment)  # alice pays: her client sent a payment
    replay = HttpRequest("GET", "/weather", ((PAYMENT_SIGNATURE, encode_header(payment)),))
    answer = tb.perform(weather, Send(replay))
    report.replay_reason = parse_payment_required(answer.headers, answer.body).error or ""
    report.replay_class = str(reason_class(report.replay_reason))
    report.events.append(f"replay of alice's last payment -> {answer.status}: {report.replay_reason}")

    report.settlements = sum(1 for s in tb.facilitator.settlements if s.success)
    report.gas_used = [s.gas_used for s in tb.facilitator.settlements if s.success]
    report.transfers_on_chain = len(tb.chain.transfers(since_block=first_block))
    report.supply_after = tb.chain.total_supply()
    report.balances = [(name, addr, before[addr], tb.chain.balance_of(addr)) for name, addr in people]
    return report
