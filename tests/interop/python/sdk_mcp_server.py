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

or, as a conformance target (``--from-env``), the official e2e MCP server's tool from its
environment (``FACILITATOR_URL``, ``EVM_PAYEE_ADDRESS``, ``EVM_NETWORK``; ``FACILITATOR_TIMEOUT_SECONDS``,
when set, bounds each facilitator call, as for the HTTP SDK targets): ``get_weather`` at the
SDK's default ``"$0.001"`` in the network's default USDC, its resource ``mcp://tool/get_weather``,
served on stdin/stdout instead of the e2e server's SSE.
"""

from __future__ import annotations

import argparse

from mcp.server.fastmcp import FastMCP
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.mcp import create_payment_wrapper
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import AssetAmount, ResourceConfig, ResourceInfo

FACILITATOR_TIMEOUT = 10.0
TOOL = "weather"
E2E_TOOL = "get_weather"  # the official e2e MCP servers' tool
E2E_PRICE = "$0.001"


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


def e2e_server(facilitator_url: str, *, network: str, pay_to: str, timeout: float | None = None) -> FastMCP:
    """The official e2e MCP server's paid tool (``get_weather``, argument ``city``), configured the
    SDK's default way: ``"$0.001"`` in the network's default asset; ``timeout`` bounds each
    facilitator call (None: the SDK's default)."""
    config = FacilitatorConfig(url=facilitator_url)
    if timeout is not None:
        config = FacilitatorConfig(url=facilitator_url, timeout=timeout)
    server = x402ResourceServer(HTTPFacilitatorClient(config))
    server.register(network, ExactEvmServerScheme())
    server.initialize()
    accepts = server.build_payment_requirements(
        ResourceConfig(scheme="exact", pay_to=pay_to, price=E2E_PRICE, network=network)
    )
    resource = ResourceInfo(
        url=f"mcp://tool/{E2E_TOOL}",
        description="Get current weather for a city",
        mime_type="application/json",
    )
    paid = create_payment_wrapper(server, accepts=accepts, resource=resource)
    tools = FastMCP("x402 SDK tools (e2e)")

    @tools.tool(name=E2E_TOOL, description="Get current weather for a city (paid, x402 SDK)")
    @paid
    async def get_weather(city: str) -> dict:
        return {"city": city, "weather": "sunny", "temperature": 70}

    return tools


def _from_env() -> FastMCP:
    import os
    import sys

    missing = [n for n in ("FACILITATOR_URL", "EVM_PAYEE_ADDRESS", "EVM_NETWORK") if not os.environ.get(n)]
    if missing:
        print(f"{missing[0]} environment variable is required", file=sys.stderr)
        raise SystemExit(2)
    return e2e_server(
        os.environ["FACILITATOR_URL"],
        network=os.environ["EVM_NETWORK"],
        pay_to=os.environ["EVM_PAYEE_ADDRESS"],
    )


def main() -> None:
    import sys

    if "--from-env" in sys.argv[1:]:
        _from_env().run("stdio")
        return
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
