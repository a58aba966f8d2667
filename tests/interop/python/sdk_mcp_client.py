"""A paying MCP client built the SDK's way: ``x402.mcp.x402MCPSession`` around an MCP
``ClientSession``, paying with the SDK's ``x402Client`` and its exact EVM client scheme.

The payer is the SDK's ``x402Client`` as ``tests/interop/sdk_apps.sdk_client`` configures it for a
local chain (the token allowed in its spend controls). Each payment it creates is kept in
``created``, so a test can read the authorization's nonce and check it on chain.

``main()`` is the official e2e MCP client, as a conformance target: from the e2e environment
(``RESOURCE_SERVER_URL``, ``ENDPOINT_PATH``: the tool, ``EVM_PRIVATE_KEY`` or
``CLIENT_EVM_PRIVATE_KEY``, ``EVM_NETWORK``) it connects with the SDK's ``create_x402_mcp_client``
(MCP over SSE at ``RESOURCE_SERVER_URL/sse``), calls the tool with ``{"city": "San Francisco"}``,
pays automatically with the exact EVM scheme registered the SDK's way (any asset allowed on the local
chain, which the SDK knows no default asset of), and prints one JSON line ``{success, data,
status_code, payment_response}``; exit 0 on success. Run it with ``python -m
tests.interop.python.sdk_mcp_client``.
"""

from __future__ import annotations

import json
import os
import sys
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


LOCAL_NETWORK = "eip155:31337"
E2E_ARGUMENTS = {"city": "San Francisco"}


def _verdict_of(result) -> dict[str, Any]:
    data = None
    for item in result.content:
        text = getattr(item, "text", None)
        if text is not None:
            try:
                data = json.loads(text)
            except (TypeError, ValueError):
                data = {"text": text}
            break
    settlement = result.payment_response
    dump = getattr(settlement, "model_dump", None)
    return {
        "success": not result.is_error,
        "data": data,
        "status_code": 200,
        "payment_response": dump(mode="json", by_alias=True, exclude_none=True) if dump else settlement,
    }


async def main() -> int:
    from eth_account import Account
    from x402 import x402Client
    from x402.mcp import create_x402_mcp_client
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    url, tool = os.environ.get("RESOURCE_SERVER_URL", ""), os.environ.get("ENDPOINT_PATH", "").lstrip("/")
    key = os.environ.get("EVM_PRIVATE_KEY") or os.environ.get("CLIENT_EVM_PRIVATE_KEY", "")
    if not (url and tool and key):
        print("RESOURCE_SERVER_URL, ENDPOINT_PATH and EVM_PRIVATE_KEY are required", file=sys.stderr)
        return 2
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    if os.environ.get("EVM_NETWORK") == LOCAL_NETWORK:
        client.set_spend_controls({"allowed_assets": True})
    try:
        async with create_x402_mcp_client(client, url, auto_payment=True) as mcp:
            verdict = _verdict_of(await mcp.call_tool(tool, dict(E2E_ARGUMENTS)))
    except Exception as exc:  # the SDK refused to pay, or the call failed: the verdict says so
        verdict = {"success": False, "error": f"{type(exc).__name__}: {exc}", "status_code": 500}
    print(json.dumps(verdict, default=str), flush=True)
    return 0 if verdict["success"] else 1


if __name__ == "__main__":
    import asyncio

    raise SystemExit(asyncio.run(main()))
