"""The MCP carry: a paid tool call through the roles, unchanged, over an in-memory MCP session.

The client role and the server role run as they do over HTTP; only the carrier differs. Each
payment is judged on chain: the payee's balance and the authorization's state.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import types
from mcp.shared.exceptions import McpError

from x402sim import Testbed
from x402sim.actors.driver import BaseDriver, arun, run
from x402sim.actors.messages import HttpRequest, HttpResponse
from x402sim.protocol import PAYMENT_RESPONSE, decode_json_header
from x402sim.transports import (
    MCP_PAYMENT,
    MCP_PAYMENT_RESPONSE,
    TOOL_BASE_URL,
    McpProtocolError,
    ToolCall,
    call_of_request,
    payment_required_of_result,
    response_of_result,
    result_of_response,
    tool_answer,
    tool_failure,
    tool_request,
    tool_route_key,
)
from x402sim.transports.mcp_wire import call_tool, open_session, tool_server

PRICE = 1_000
WEATHER = tool_route_key("weather")
BROKEN = tool_route_key("broken")


def _world():
    testbed = Testbed(seed=7)
    server = testbed.server(
        {WEATHER: PRICE, BROKEN: PRICE},
        base_url=TOOL_BASE_URL,
        handlers={
            WEATHER: lambda request: tool_answer({"city": json.loads(request.body)["city"], "celsius": 12}),
            BROKEN: lambda request: tool_failure("upstream down"),
        },
    )

    async def on_call(call: ToolCall) -> dict:
        return result_of_response(
            run(server.role.handle(tool_request(call), testbed.now), testbed.driver(server))
        )

    tools = [types.Tool(name=name, inputSchema={"type": "object"}) for name in ("weather", "broken")]
    return testbed, server, tool_server("paid-tools", tools, on_call)


class _McpDriver(BaseDriver):
    world = "MCP test client"

    def __init__(self, session) -> None:
        self.session = session

    async def send(self, effect):
        return response_of_result(await call_tool(self.session, call_of_request(effect.request)))


def _pay(testbed, client, session, tool: str, arguments: dict):
    request = HttpRequest("POST", f"/{tool}", (), json.dumps(arguments).encode())
    return arun(client.role.fetch(request, testbed.now), _McpDriver(session))


def test_a_paid_tool_call_settles_on_chain_and_carries_the_settlement() -> None:
    testbed, server, mcp_server = _world()
    payer = testbed.account(usdc=10 * PRICE)
    client = testbed.client(payer)

    async def scenario():
        async with open_session(mcp_server) as session:
            unpaid = await call_tool(session, ToolCall("weather", {"city": "Oslo"}))
            paid = await _pay(testbed, client, session, "weather", {"city": "Oslo"})
            return unpaid, paid

    unpaid, paid = asyncio.run(scenario())
    required = payment_required_of_result(unpaid)
    assert required is not None and required["resource"]["url"] == "mcp://tool/weather"
    assert json.loads(unpaid["content"][0]["text"]) == unpaid["structuredContent"]
    assert paid.status == 200 and paid.paid
    assert paid.json()["structuredContent"] == {"city": "Oslo", "celsius": 12}
    settlement = decode_json_header(paid.response.header(PAYMENT_RESPONSE))
    assert settlement["success"] is True
    assert testbed.chain.balance_of(server.pay_to) == PRICE
    assert testbed.chain.balance_of(payer.address) == 9 * PRICE
    record = client.role.payments[-1]
    nonce = bytes.fromhex(record.nonce.removeprefix("0x"))
    assert testbed.chain.authorization_state(payer.address, nonce)


def test_a_tool_error_is_not_settled() -> None:
    testbed, server, mcp_server = _world()
    payer = testbed.account(usdc=10 * PRICE)
    client = testbed.client(payer)

    async def scenario():
        async with open_session(mcp_server) as session:
            return await _pay(testbed, client, session, "broken", {})

    answer = asyncio.run(scenario())
    assert answer.status == 500 and not answer.paid
    assert testbed.chain.balance_of(server.pay_to) == 0
    assert testbed.chain.balance_of(payer.address) == 10 * PRICE


@given(st.one_of(st.text(max_size=20), st.integers(), st.lists(st.integers(), max_size=3), st.just({"x": 1})))
def test_a_malformed_payment_is_a_protocol_error_not_a_crash(garbage) -> None:
    testbed, server, mcp_server = _world()

    async def scenario():
        async with open_session(mcp_server) as session:
            with pytest.raises(McpError) as raised:
                await call_tool(session, ToolCall("weather", {"city": "Oslo"}, {MCP_PAYMENT: garbage}))
            return raised.value

    error = asyncio.run(scenario())
    assert error.error.code == -32602
    assert testbed.chain.balance_of(server.pay_to) == 0


def test_the_carry_refuses_names_that_are_not_tool_names() -> None:
    for name in ("", "a/b", "../weather", "w eather", "x" * 129):
        with pytest.raises(McpProtocolError):
            tool_request(ToolCall(name, {}))


@given(
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(["success", "transaction"]), st.text(max_size=8))),
)
def test_a_successful_result_reads_back_to_the_same_answer(structured, settlement) -> None:
    headers = () if settlement is None else ((PAYMENT_RESPONSE, _b64(settlement)),)
    answer = tool_answer(structured)
    response = HttpResponse(200, (*answer.headers, *headers), answer.body)
    result = json.loads(json.dumps(result_of_response(response)))
    back = response_of_result(result)
    assert back.status == 200
    assert back.json()["structuredContent"] == structured
    if settlement is None:
        assert back.header(PAYMENT_RESPONSE) is None and "_meta" not in result
    else:
        assert result["_meta"][MCP_PAYMENT_RESPONSE] == settlement
        assert decode_json_header(back.header(PAYMENT_RESPONSE)) == settlement


def _b64(value) -> str:
    import base64

    return base64.b64encode(json.dumps(value).encode()).decode()
