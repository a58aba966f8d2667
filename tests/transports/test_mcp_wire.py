"""The streamable HTTP tool server answers at its endpoint itself: a POST to ``/mcp`` is not
redirected (a redirect doubled every MCP exchange's round trips, found by
``benchmarks/paid_tool_calls.py``)."""

from __future__ import annotations

from starlette.testclient import TestClient

from x402sim.transports.mcp_wire import MCP_PATH, streamable_http_app, tool_server

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


async def _never(call):
    raise AssertionError("no tool is called here")


def test_a_post_to_the_endpoint_is_answered_there_not_redirected():
    app = streamable_http_app(tool_server("t", [], _never))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        answer = http.post(
            MCP_PATH,
            json=INITIALIZE,
            headers={"Accept": "application/json, text/event-stream"},
            follow_redirects=False,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["serverInfo"]["name"] == "t"
