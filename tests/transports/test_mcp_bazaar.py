"""Paid MCP tools in the Bazaar: a tool's 402 declares its listing, a settled call gets it cataloged
(keyed by resource URL and tool), an unlisted tool stays out; a fresh ``serve mcp`` and ``serve``
stack is discoverable before anything is paid; and ``pay --discover`` finds a tool and pays it over
streamable HTTP, with its listing's example arguments or ``--args``, judged by the token balances."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from tests.http.conftest import token_balance
from x402sim.cli import app
from x402sim.http.serve import ChainSetup, serve_all
from x402sim.protocol.bazaar import ListQuery
from x402sim.transports.mcp_serve import serve_mcp_all
from x402sim.transports.mcp_tools import PaidTool
from x402sim.transports.mcp_tools_file import ToolsFileError, parse_tools

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PORTS = {"chain": 0, "facilitator": 0, "server": 0, "mcp": 0}


def _weather(arguments: dict) -> dict:
    return {"city": arguments["city"], "celsius": 4}


def test_a_settled_tool_call_catalogs_the_tool_and_an_unlisted_tool_stays_out(tb):
    tools = [
        PaidTool(
            "weather",
            _weather,
            1_000,
            description="Weather by city",
            input_schema=CITY,
            example={"city": "Oslo"},
            output_example={"city": "Oslo", "celsius": 4},
        ),
        PaidTool("private", _weather, 700, input_schema=CITY, listed=False),
    ]
    server = tb.mcp_server(tools)
    payer = tb.account(usdc=10_000)
    client = tb.client(payer)

    paid = client.call_tool(server, "weather", {"city": "Lima"})

    assert paid.paid and paid.json()["structuredContent"] == {"city": "Lima", "celsius": 4}
    listing = paid.challenge.extensions["bazaar"]
    tool_input = listing["info"]["input"]
    assert (tool_input["tool"], tool_input["toolName"], tool_input["example"]) == ("weather",) * 2 + (
        {"city": "Oslo"},
    )
    assert "transport" not in tool_input  # in process: mcp://tool/<name>, no streamable-http to name
    assert paid.payment.extensions["bazaar"] == listing  # echoed by the client
    (item,) = tb.facilitator.role.catalog.list(ListQuery(type="mcp")).items
    assert (item.resource, item.listing.tool, item.accepts[0]["amount"]) == (
        "mcp://tool/weather",
        "weather",
        "1000",
    )
    assert item.listing.info.output.example == {"city": "Oslo", "celsius": 4}

    unlisted = client.call_tool(server, "private", {"city": "Lima"})
    assert unlisted.paid and "bazaar" not in (unlisted.challenge.extensions or {})
    assert len(tb.facilitator.role.catalog) == 1
    assert tb.chain.balance_of(payer.address) == 10_000 - 1_700
    assert tb.chain.balance_of(server.pay_to) == 1_700


def test_tools_files_say_unlisted_and_a_bad_listing_is_refused_when_loaded():
    common = {"pay_to": "0x" + "11" * 20}
    config = parse_tools({**common, "tools": [{"name": "a", "price": 5, "answer": 1, "listed": False}]})
    assert config.tools[0].listing is None and config.tools[0].paid
    listed = parse_tools({**common, "tools": [{"name": "a", "price": 5, "answer": {"x": 1}}]})
    assert listed.tools[0].listing.info.output.example == {"x": 1}  # the fixed answer, as example
    with pytest.raises(ToolsFileError, match=r"tool 'a'.*listed: expected true or false"):
        parse_tools({**common, "tools": [{"name": "a", "price": 5, "answer": 1, "listed": "no"}]})
    with pytest.raises(ToolsFileError, match=r"tool 'a'.*Bazaar listing is not valid.*output"):
        parse_tools(
            {
                **common,
                "tools": [{"name": "a", "price": 5, "answer": "text", "output_schema": {"type": "object"}}],
            }
        )


def test_a_fresh_serve_stack_lists_its_demo_route_at_once():
    running = serve_all(ChainSetup(accounts=1), ports=PORTS)
    try:
        listed = httpx.get(running.info["facilitator_url"] + "/discovery/resources").json()
    finally:
        running.stop()
    (item,) = listed["items"]
    assert item["resource"] == running.info["server_url"] + "/weather"
    assert (
        item["accepts"][0]["amount"] == "1000"
        and item["extensions"]["bazaar"]["info"]["input"]["method"] == "GET"
    )


def _pay_discover(info: dict, words: str, *more: str):
    args = ["pay", "--discover", words, "--facilitator-url", info["facilitator_url"]]
    key = info["accounts"][0]["private_key"]
    return CliRunner().invoke(app, [*args, "--rpc-url", info["rpc_url"], "--key", key, *more])


def test_serve_mcp_is_discoverable_at_once_and_pay_discover_pays_a_tool_over_streamable_http():
    running = serve_mcp_all(ChainSetup(accounts=1), ports=PORTS)
    try:
        info = running.info
        url, payer, payee = info["mcp_url"], info["accounts"][0]["address"], info["payee"]
        listed = httpx.get(info["facilitator_url"] + "/discovery/resources", params={"type": "mcp"}).json()
        assert sorted(
            (i["resource"], i["extensions"]["bazaar"]["info"]["input"]["tool"], i["accepts"][0]["amount"])
            for i in listed["items"]
        ) == [(url, "forecast", "2500"), (url, "weather", "1000")]  # before any call; echo is free
        assert listed["items"][0]["extensions"]["bazaar"]["info"]["input"]["transport"] == "streamable-http"
        start = token_balance(info, payer)

        done = _pay_discover(info, "days forecast")  # the listing's example arguments

        assert done.exit_code == 0, done.output
        assert f"chose MCP tool forecast at {url} by cheapest: price 2500" in done.stderr
        assert [d["city"] for d in json.loads(done.stdout)["structuredContent"]["days"]] == ["Oslo"] * 3
        assert token_balance(info, payee) == 2500 and token_balance(info, payer) == start - 2500

        again = _pay_discover(info, "weather", "--args", '{"city": "Lima"}', "--max-price", "2000")

        assert again.exit_code == 0, again.output
        assert f"chose MCP tool weather at {url}" in again.stderr
        assert json.loads(again.stdout)["structuredContent"]["city"] == "Lima"
        assert token_balance(info, payee) == 3500 and token_balance(info, payer) == start - 3500

        bad = _pay_discover(info, "weather", "--args", "[1]")
        assert bad.exit_code == 2 and "--args: expected a JSON object" in bad.stderr
        none = _pay_discover(info, "weather", "--max-price", "10")
        assert none.exit_code == 1 and "no service found for 'weather'" in none.stderr
        assert token_balance(info, payer) == start - 3500  # nothing more was paid
    finally:
        running.stop()
