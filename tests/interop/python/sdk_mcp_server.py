"""A paid MCP tool server built the SDK's way: a FastMCP server whose tool is wrapped by
``x402.mcp.create_payment_wrapper`` around the SDK's ``x402ResourceServer``, verifying and settling
through a facilitator at a URL.

Only the SDK's public API is used, so every answer is the SDK's own decision. What a local chain
needs is what ``tests/interop/sdk_apps.py`` writes out for HTTP: the ``exact`` scheme registered for
the one CAIP-2 network, and the price as an explicit ``AssetAmount`` (atomic amount, token, EIP-712
name and version), since the SDK knows no stablecoin of a local chain id.

Run as a script, it serves the tool on stdin/stdout:

    python -m tests.interop.python.sdk_mcp_server --facilitator-url URL --network eip155:31337
        --asset 0x... --asset-name "USD Coin" --asset-version 2 --pay-to 0x... --amount 1000
"""

from __future__ import annotations

import argparse

from mcp.server.fastmcp import FastMCP
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.mcp import create_payment_wrapper
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import AssetAmount, ResourceConfig

FACILITATOR_TIMEOUT = 10.0
TOOL = "weather"


def sdk_mcp_server(
    facilitator_url: str,
    *,
    network: str,
    asset: str,
    asset_name: str,
    asset_version: str,
    pay_to: str,
    amount: int,
) -> FastMCP:
    """A FastMCP server selling tool ``weather`` (argument ``city``) for ``amount`` atomic units of
    ``asset``. Builds eagerly: the facilitator must already answer ``GET /supported``."""
    server = x402ResourceServer(
        HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, timeout=FACILITATOR_TIMEOUT))
    )
    server.register(network, ExactEvmServerScheme())
    server.initialize()  # asks the facilitator's /supported (blocking)
    price = AssetAmount(amount=str(amount), asset=asset, extra={"name": asset_name, "version": asset_version})
    accepts = server.build_payment_requirements(
        ResourceConfig(scheme="exact", pay_to=pay_to, price=price, network=network)
    )
    paid = create_payment_wrapper(server, accepts=accepts)
    tools = FastMCP("x402 SDK tools")

    @tools.tool(name=TOOL, description="The weather in a city (paid, x402 SDK)")
    @paid
    async def weather(city: str) -> dict:
        return {"city": city, "sky": "clear", "served_by": "x402 SDK"}

    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("facilitator-url", "network", "asset", "asset-name", "asset-version", "pay-to"):
        parser.add_argument(f"--{option}", required=True)
    parser.add_argument("--amount", type=int, required=True)
    args = parser.parse_args()
    tools = sdk_mcp_server(
        args.facilitator_url,
        network=args.network,
        asset=args.asset,
        asset_name=args.asset_name,
        asset_version=args.asset_version,
        pay_to=args.pay_to,
        amount=args.amount,
    )
    tools.run("stdio")


if __name__ == "__main__":
    main()
