"""The testbed's paying tool calls: a client role paying an in-process tool server over an in-memory
MCP session (the SDK's memory transport, so the call is a real MCP exchange).

``Testbed.mcp_server`` builds the server (``mcp.PaidToolServer`` over the testbed's facilitator);
``TestClient.call_tool`` calls ``call_tool_in_process`` here. The client's approvals go to its
governor's approver, its ERC-8004 feedback is posted and mined from its wallet, as the testbed's
HTTP exchanges do. Needs ``x402sim[agents]``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..actors.client import Client, FetchResult, answer_with_approver
from ..actors.driver import BaseDriver, arun
from ..actors.messages import Approval, Approve, GiveFeedback, HttpRequest, HttpResponse, Send
from .mcp import PaidToolServer
from .mcp_carry import call_of_request, response_of_result
from .mcp_wire import call_tool, open_session

__all__ = ["call_tool_in_process"]


class _InProcessDriver(BaseDriver):
    world = "testbed MCP client"

    def __init__(self, testbed: Any, client: Client, session: Any) -> None:
        self.testbed, self.client, self.session = testbed, client, session

    async def send(self, effect: Send) -> HttpResponse:
        return response_of_result(await call_tool(self.session, call_of_request(effect.request)))

    async def approve(self, effect: Approve) -> Approval:
        return answer_with_approver(self.client, effect)

    async def give_feedback(self, effect: GiveFeedback) -> bytes:
        return self.testbed.give_feedback(self.client.key, effect)


def call_tool_in_process(
    testbed: Any, client: Client, server: PaidToolServer, name: str, arguments: dict[str, Any]
) -> FetchResult:
    """``client`` calls ``name`` on ``server`` with ``arguments`` at the testbed's clock."""
    body = json.dumps(arguments, separators=(",", ":")).encode()
    request = HttpRequest("POST", f"/{name}", (("Content-Type", "application/json"),), body)

    async def scenario() -> FetchResult:
        async with open_session(server.server) as session:
            return await arun(client.fetch(request, testbed.now), _InProcessDriver(testbed, client, session))

    return asyncio.run(scenario())
