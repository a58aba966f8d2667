"""``x402sim serve mcp`` and ``x402sim pay --mcp``, run as a user runs them: the stack in its own
process (uvicorn on 127.0.0.1, streamable HTTP), a paid call over it, a paid call over stdio (the
paying MCP client starting ``serve mcp --stdio`` as its target), each judged by the token balances
the chain reports; and the command's refusals, each one clear line and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys

import pytest
from typer.testing import CliRunner

from tests.http.conftest import closed_port_url, start_cli, stop_cli, token_balance
from x402sim.cli import app
from x402sim.transports import ToolCall, payment_required_of_result
from x402sim.transports.mcp import McpPayingClient
from x402sim.transports.mcp_tools_file import ToolsFileError, load_tools
from x402sim.transports.mcp_wire import call_tool, open_session

runner = CliRunner()


async def _call_unpaid(url: str, name: str) -> dict:
    async with open_session(url, timeout=10) as session:
        return await call_tool(session, ToolCall(name, {"city": "Oslo"}))


def _pay(*args: str):
    return runner.invoke(app, ["pay", *args], env={"NO_COLOR": "1"})


def test_serve_mcp_then_pay_over_streamable_http_and_over_stdio():
    proc, info = start_cli("serve", "mcp", "--port", "0", "--chain-port", "0", "--facilitator-port", "0")
    try:
        rpc, payer = info["rpc_url"], info["accounts"][0]["address"]
        assert info["mcp_url"].endswith("/mcp") and info["mcp_url"].startswith("http://127.0.0.1:")
        assert [(t["name"], t["price"]) for t in info["tools"]] == [
            ("weather", 1000),
            ("forecast", 2500),
            ("echo", None),
        ]
        start = token_balance(info, payer)
        unpaid = asyncio.run(_call_unpaid(info["mcp_url"], "weather"))
        assert payment_required_of_result(unpaid)["resource"]["url"] == info["mcp_url"]  # one endpoint

        done = _pay("--mcp", info["mcp_url"], "weather", "--args", '{"city": "Oslo"}', "--rpc-url", rpc)

        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)  # the tool's result; the settlement is on stderr
        assert result["structuredContent"] == {"city": "Oslo", "temperature_c": 4, "sky": "snow"}
        (line,) = [x for x in done.stderr.splitlines() if x.startswith("settlement: ")]
        settlement = json.loads(line.removeprefix("settlement: "))
        assert settlement["success"] and settlement["payer"] == payer
        assert token_balance(info, info["payee"]) == 1000
        assert token_balance(info, payer) == start - 1000

        unknown = _pay("--mcp", info["mcp_url"], "Weather", "--rpc-url", rpc)
        assert unknown.exit_code == 2 and "the server has no tool 'Weather'" in unknown.output

        stdio_payee = info["accounts"][-1]["address"]  # serve mcp --stdio pays the chain's last account
        before = token_balance(info, stdio_payee)
        served = ["serve", "mcp", "--stdio", "--facilitator-url", info["facilitator_url"], "--rpc-url", rpc]
        command = shlex.join([sys.executable, "-m", "x402sim", *served])
        client = McpPayingClient(
            info["accounts"][0]["private_key"], networks=(info["network"],), env=dict(os.environ)
        )
        paid = client.call_tool_sync(command, "forecast", {"city": "Lima", "days": 2})

        assert paid.paid and paid.challenge.resource.url == "mcp://tool/forecast"
        assert [d["day"] for d in paid.json()["structuredContent"]["days"]] == [1, 2]
        assert token_balance(info, stdio_payee) == before + 2500
        assert token_balance(info, payer) == start - 3500
    finally:
        assert stop_cli(proc) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mcp", "http://127.0.0.1:9/mcp", "weather", "--args", "{bad"], "--args: not JSON"),
        (["--mcp", "http://127.0.0.1:9/mcp", "weather", "--args", "[1]"], "--args: expected a JSON object"),
        (["--mcp", "http://127.0.0.1:9/mcp", "a/b"], "not an MCP tool name"),
        (["--mcp", "http://127.0.0.1:9/mcp", "weather", "-d", "x"], "--data is not for a tool call"),
        (["http://127.0.0.1:9/x", "--args", "{}"], "--args needs --mcp"),
        (["--mcp", "http://example.com/mcp", "weather"], "--mcp"),
    ],
)
def test_pay_mcp_refuses_bad_input_before_contacting_anything(args, message):
    done = _pay(*args, "--key", "0x" + "11" * 32, "--network", "eip155:31337")
    assert done.exit_code == 2 and message in done.output, done.output


def test_pay_mcp_names_an_unreachable_target():
    target = closed_port_url() + "/mcp"
    done = _pay("--mcp", target, "weather", "--key", "0x" + "11" * 32, "--network", "eip155:31337")
    assert done.exit_code == 2 and f"--mcp {target}: tool 'weather': " in done.output, done.output


def test_tools_files_name_the_file_tool_and_key(tmp_path):
    good = tmp_path / "tools.toml"
    good.write_text(
        '[[tools]]\nname = "quote"\nprice = 500\nscheme = "upto"\ncharge = "40%"\nanswer = { text = "hi" }\n'
        '[[tools]]\nname = "echo"\necho = true\nexample = { a = 1 }\n'
    )
    config = load_tools(good)
    quote, echo = config.tools
    assert (quote.route.key, quote.route.price, quote.route.scheme) == ("POST /quote", 500, "upto")
    assert echo.route is None and echo.run({"a": 1}) == {"a": 1} and echo.example == {"a": 1}
    assert quote.run({}) == {"text": "hi"}
    for body, problem in [
        ('[[tools]]\nname = "q"\nprice = -1\necho = true\n', "tool 'q': price"),
        ('[[tools]]\nname = "q"\n', "tool 'q': say exactly one of answer"),
        ('[[tools]]\nname = "q"\nfunction = "nowhere.at_all:f"\n', "tool 'q': function: cannot import"),
        ('[[tools]]\nname = "q/r"\necho = true\n', "tools[0]: name"),
        ('[[tools]]\nname = "q"\nscheme = "upto"\necho = true\n', "tool 'q': scheme: only a priced tool"),
        ('[[tools]]\nname = "q"\necho = true\n[[tools]]\nname = "Q"\necho = true\n', "listed twice"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(ToolsFileError, match=re.escape(problem)) as raised:
            load_tools(bad)
        assert str(raised.value).startswith(str(bad))
