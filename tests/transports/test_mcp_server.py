"""The paid tool server and the paying MCP client, in process over the SDK's in-memory transport.

Dispatch is by exact tool name, a free tool runs unpaid, a tool error and a refused payment settle
nothing, a malformed payment is a protocol error; exact, Permit2 and batch-settlement tools are each
paid once; the governor judges a tool call as a request. Every payment is judged on chain.
"""

from __future__ import annotations

import asyncio

import pytest
from mcp.shared.exceptions import McpError

from x402sim import Testbed
from x402sim.actors.client_channels import ChannelStore
from x402sim.actors.server import Route
from x402sim.evm.channels import read_channel
from x402sim.evm.permit2 import nonce_used
from x402sim.governance import Governor, parse_policies
from x402sim.transports import MCP_PAYMENT, ToolCall
from x402sim.transports.mcp import McpPayingClient
from x402sim.transports.mcp_tools import PaidTool
from x402sim.transports.mcp_wire import call_tool, open_session

PRICE = 1_000


class Counted:
    """A tool function that counts its runs."""

    def __init__(self, answer=None, error: Exception | None = None) -> None:
        self.runs = 0
        self.answer, self.error = answer, error

    def __call__(self, arguments: dict):
        self.runs += 1
        if self.error is not None:
            raise self.error
        return self.answer if self.answer is not None else {"got": arguments}


def _world(*extra: PaidTool):
    tb = Testbed(seed=21)
    weather, echo, broken = Counted({"sky": "clear"}), Counted(), Counted(error=RuntimeError("upstream down"))
    tools = [
        PaidTool("weather", weather, PRICE, description="weather now"),
        PaidTool("echo", echo),
        PaidTool("broken", broken, PRICE),
        *extra,
    ]
    server = tb.mcp_server(tools)
    payer = tb.account(usdc=10 * PRICE)
    return tb, server, payer, {"weather": weather, "echo": echo, "broken": broken}


def _authorization_used(tb: Testbed, payer, record) -> bool:
    return tb.chain.authorization_state(payer.address, bytes.fromhex(record.nonce.removeprefix("0x")))


def test_a_paid_tool_is_paid_once_and_settled_on_chain() -> None:
    tb, server, payer, runs = _world()
    client = tb.client(payer)

    result = client.call_tool(server, "weather", {"city": "Oslo"})

    assert result.first_status == 402 and result.status == 200 and result.paid
    assert result.challenge.resource.url == "mcp://tool/weather"
    assert result.json()["structuredContent"] == {"sky": "clear"}
    assert result.settlement.payer.lower() == payer.address.lower()
    assert runs["weather"].runs == 1
    assert tb.chain.balance_of(server.pay_to) == PRICE
    assert tb.chain.balance_of(payer.address) == 9 * PRICE
    (record,) = client.payments
    assert record.resource == "/weather" and _authorization_used(tb, payer, record)


@pytest.mark.parametrize("name", ["Weather", "WEATHER", "weather2", "nope"])
def test_a_name_the_server_does_not_list_is_an_error_and_runs_nothing(name) -> None:
    tb, server, payer, runs = _world()
    client = tb.client(payer)

    result = client.call_tool(server, name, {})

    assert result.status == 500 and not result.paid and result.payment is None
    assert result.json()["content"][0]["text"] == f"unknown tool {name!r}"
    assert sum(r.runs for r in runs.values()) == 0
    assert tb.chain.balance_of(server.pay_to) == 0 and tb.chain.balance_of(payer.address) == 10 * PRICE


def test_a_free_tool_runs_unpaid() -> None:
    tb, server, payer, runs = _world()
    client = tb.client(payer)

    result = client.call_tool(server, "echo", {"x": [1, 2]})

    assert result.status == 200 and result.first_status is None and result.payment is None
    assert result.json()["structuredContent"] == {"got": {"x": [1, 2]}}
    assert runs["echo"].runs == 1 and client.payments == type(client.payments)()


def test_a_tool_error_is_not_settled() -> None:
    tb, server, payer, runs = _world()
    client = tb.client(payer)

    result = client.call_tool(server, "broken", {})

    assert result.status == 500 and not result.paid and result.settlement is None
    assert "RuntimeError: upstream down" in result.json()["content"][0]["text"]
    assert runs["broken"].runs == 1
    (record,) = client.payments  # signed and sent, never settled
    assert not _authorization_used(tb, payer, record)
    assert tb.chain.balance_of(payer.address) == 10 * PRICE and tb.chain.balance_of(server.pay_to) == 0


@pytest.mark.parametrize("garbage", ["not a payment", 7, [1], {"x402Version": 2}])
def test_a_malformed_payment_is_a_protocol_error_and_runs_nothing(garbage) -> None:
    tb, server, _, runs = _world()

    async def scenario():
        async with open_session(server.server) as session:
            with pytest.raises(McpError) as raised:
                await call_tool(session, ToolCall("weather", {}, {MCP_PAYMENT: garbage}))
            free = await call_tool(session, ToolCall("echo", {"a": 1}, {MCP_PAYMENT: garbage}))
            return raised.value, free

    error, free = asyncio.run(scenario())
    assert error.error.code == -32602
    assert runs["weather"].runs == 0 and tb.chain.balance_of(server.pay_to) == 0
    assert free["structuredContent"] == {"got": {"a": 1}}  # a free tool ignores what it is not asked for


def test_a_permit2_tool_is_paid_over_mcp() -> None:
    report = PaidTool("report", lambda a: "a report", Route("POST /x", 2 * PRICE, transfer_method="permit2"))
    tb, server, payer, _ = _world(report)
    tb.chain.fund(payer.address, eth=10**17)  # the approval's gas is the payer's
    tb.approve_permit2(payer)
    client = tb.client(payer)

    result = client.call_tool(server, "report", {})

    assert result.status == 200 and result.paid, result.body
    assert result.payment.accepted.extra["assetTransferMethod"] == "permit2"
    assert result.json()["content"] == [{"type": "text", "text": "a report"}]
    (record,) = client.payments
    assert nonce_used(tb.chain, payer.address, int(record.nonce))
    assert tb.chain.balance_of(server.pay_to) == 2 * PRICE


def test_a_batch_settlement_tool_is_paid_through_a_channel_and_claimed(tmp_path) -> None:
    route = Route("POST /feed", 100, scheme="batch-settlement", claim_interval=60, settle_interval=60)
    tb = Testbed(seed=22)
    receiver = tb.account()
    server = tb.mcp_server([PaidTool("feed", lambda a: {"n": a["n"]}, route)], pay_to=receiver.address)
    asyncio.run(server.channel_work(tb.now))  # starts the server's claim and settle clocks
    payer = tb.account(usdc=10_000)
    client = tb.client(payer, channel_store=ChannelStore(tmp_path / "agent.sqlite"))

    results = [client.call_tool(server, "feed", {"n": n}) for n in range(3)]

    assert [r.json()["structuredContent"] for r in results] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(r.status == 200 and r.channel_problem is None for r in results)
    view = tb.channel(client)
    assert [e.kind for e in view.life] == ["deposit", "voucher", "voucher", "voucher"]
    assert view.onchain.balance == 1_000 and tb.chain.balance_of(payer.address) == 9_000
    tb.advance(61)
    work = asyncio.run(server.channel_work())
    assert len(work.claims) == 1 and len(work.settlements) == 1 and not work.errors
    assert read_channel(tb.chain, view.channel_id).total_claimed == 300
    assert tb.chain.balance_of(receiver.address) == 300


def _governor(rule: dict) -> Governor:
    return Governor(parse_policies({"policies": [{"name": "p", "rules": [rule]}]}).policy())


def test_the_governor_judges_a_tool_call_by_its_resource() -> None:
    tb, server, payer, runs = _world()
    blocked = tb.client(payer, governor=_governor({"kind": "block", "hosts": ["tool"]}))

    refused = blocked.call_tool(server, "weather", {})

    assert refused.status == 402 and refused.refused.startswith("governance: ") and refused.payment is None
    assert refused.decision.attempt.resource == "tool/weather"
    assert runs["weather"].runs == 0 and tb.chain.balance_of(payer.address) == 10 * PRICE


def test_the_paying_mcp_client_pays_an_in_memory_server_under_a_governor() -> None:
    tb, server, payer, _ = _world()
    governor = _governor({"kind": "spend-limit", "max": "0.0015"})  # room for one call
    client = McpPayingClient(
        payer.key, networks=(tb.chain.network,), governor=governor, clock=lambda: tb.now, seed=1
    )

    async def scenario():
        async with client.session(server.server) as session:  # one session, two calls
            return [await client.call_tool(session, "weather", {}) for _ in range(2)]

    first, second = asyncio.run(scenario())

    assert first.paid and first.settlement.transaction
    assert second.refused.startswith("governance: ") and second.payment is None
    assert [r.outcome for r in client.payments] == ["settled"]
    assert _authorization_used(tb, payer, client.payments[0])
    assert tb.chain.balance_of(server.pay_to) == PRICE


def test_tool_sets_refuse_ambiguous_names() -> None:
    tb = Testbed(seed=1)
    for bad in ("..", ".", "a/b", ""):
        with pytest.raises(ValueError, match="tool name"):
            PaidTool(bad, lambda a: a)
    with pytest.raises(ValueError, match="letter case"):
        tb.mcp_server([PaidTool("Quote", lambda a: a, 1), PaidTool("quote", lambda a: a)])
