"""A paying MCP client built the SDK's way: ``x402.mcp.x402MCPSession`` around an MCP
``ClientSession``, paying with the SDK's ``x402Client`` and its exact EVM client scheme.

The payer is the SDK's ``x402Client`` as ``tests/interop/sdk_apps.sdk_client`` configures it for a
local chain (the token allowed in its spend controls). Each payment it creates is kept in
``created``, so a test can read the authorization's nonce and check it on chain.
"""

from __future__ import annotations

from typing import Any

from mcp import ClientSession
from x402.mcp import x402MCPSession

from tests.interop.sdk_apps import sdk_client


class SdkMcpPayer:
    """The SDK's paying MCP session over ``session``, for ``key`` on ``network``, allowed up to
    ``max_amount`` atomic units of ``asset`` per payment."""

    def __init__(
        self, session: ClientSession, key: bytes, *, network: str, asset: str, max_amount: int
    ) -> None:
        client = sdk_client(key, network=network, asset=asset, max_amount=max_amount)
        self.created: list[Any] = []
        client.on_after_payment_creation(lambda context: self.created.append(context.payment_payload))
        self.session = x402MCPSession(session, client)

    async def call_tool(self, name: str, arguments: dict[str, Any]):
        """The SDK's ``MCPToolCallResult`` (content, is_error, payment_response, payment_made)."""
        return await self.session.call_tool(name, arguments)
