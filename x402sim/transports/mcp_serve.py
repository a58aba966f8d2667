"""``x402sim serve mcp``: a paid tool server as a local service, beside the chain and the facilitator.

* ``serve_mcp_all`` starts the chain's JSON-RPC, the reference facilitator (settling on the embedded
  chain directly: ``x402sim.http.serve.local_stack``, as ``serve_all`` does) and the tool server
  over streamable HTTP at ``<url>/mcp``, on one event loop. The tools' 402s name that endpoint URL.
  The listed tools are cataloged in the facilitator's Bazaar at start-up (keyed by that URL and the
  tool), so ``/discovery/resources?type=mcp`` lists them before any call.
* ``serve_mcp_http`` starts only the tool server, settling through a facilitator at a URL; that
  facilitator learns each listed tool from its first settled call (the payment echoes the listing).
* ``stdio_tool_server`` builds the tool server for stdin/stdout (``--stdio``): the 402s name
  ``mcp://tool/<name>``; the caller runs ``PaidToolServer.run_stdio``.

Each tool server asks its facilitator's ``/supported`` first (upto's facilitator address, the
batch-settlement receiver authorizer, gas sponsoring), as the HTTP resource server does. Each serving
function returns an ``x402sim.http.serve.Running`` whose ``info`` the CLI prints as one JSON line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..http.client import DEFAULT_TIMEOUT
from ..http.runner import LOOPBACK, Services
from ..http.serve import (
    DEFAULT_CHANNEL_WORK_EVERY,
    ChainSetup,
    Running,
    fetch_supported,
    local_stack,
    register_listings,
    resource_server,
)
from .mcp import PaidToolServer
from .mcp_carry import TOOL_BASE_URL
from .mcp_tools import PaidTool, ToolSellingServer
from .mcp_tools_file import ToolsConfig, demo_tools
from .mcp_wire import MCP_PATH

__all__ = ["DEFAULT_MCP_PORT", "serve_mcp_all", "serve_mcp_http", "stdio_tool_server"]

DEFAULT_MCP_PORT = 4023
DEFAULT_PORTS = {"chain": 8545, "facilitator": 4022, "mcp": DEFAULT_MCP_PORT}


def _tools(config: ToolsConfig | None) -> tuple[list[PaidTool], Any]:
    from ..http.routes_file import RoutesConfig
    from .mcp_tools import tool_routes

    if config is not None:
        return config.tools, config.routes
    tools = demo_tools()
    return tools, RoutesConfig(routes=tool_routes(tools), source="demo tools")


def _facts(role: ToolSellingServer, tools: Iterable[PaidTool]) -> dict[str, Any]:
    return {
        "network": role.network,
        "asset": role.asset,
        "asset_name": role.asset_name,
        "asset_version": role.asset_version,
        "payee": role.pay_to,
        "tools": [
            {
                "name": t.name,
                "price": None if t.route is None else t.route.price,
                "scheme": role.mechanism_of(t.route).scheme if t.route is not None else None,
            }
            for t in tools
        ],
    }


def serve_mcp_all(
    setup: ChainSetup,
    *,
    tools: ToolsConfig | None = None,
    host: str = LOOPBACK,
    ports: dict[str, int] | None = None,
    allow_public: bool = False,
    sponsoring: Iterable[str] = (),
    channel_work_every: float = DEFAULT_CHANNEL_WORK_EVERY,
) -> Running:
    """Chain RPC, facilitator and the tool server (``tools``, else the demo tools) on one loop."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    services = Services(host, allow_public=allow_public)
    stack = local_stack(setup, services, ports, sponsoring=sponsoring)
    chain, facilitator = stack.chain, stack.facilitator
    listed, config = _tools(tools)
    config.network = config.network or chain.network
    config.asset = config.asset or chain.usdc
    config.asset_name = config.asset_name or chain.token_name
    config.asset_version = config.asset_version or chain.token_version
    config.pay_to = config.pay_to or stack.payee
    role, client = resource_server(
        config,
        stack.facilitator_url,
        role_class=ToolSellingServer,
        switches={"supported": facilitator.supported()},
    )
    server = PaidToolServer(role, listed, client)
    base = services.add("mcp", server.http_app(channel_work_every=channel_work_every), ports["mcp"])
    role.base_url = mcp_url = base + MCP_PATH
    register_listings(stack, role)
    services.start()
    info = {
        "rpc_url": stack.rpc_url,
        "facilitator_url": stack.facilitator_url,
        "mcp_url": mcp_url,
        **stack.facts,
        "facilitator_address": facilitator.address,
        "sponsoring": facilitator.supported().extensions,
        **_facts(role, listed),
    }
    return Running(services, info)


def _tool_server(
    tools: ToolsConfig | None, facilitator_url: str, facilitator_timeout: float
) -> tuple[PaidToolServer, ToolSellingServer, list[PaidTool]]:
    listed, config = _tools(tools)
    supported = fetch_supported(facilitator_url, timeout=min(facilitator_timeout, 10.0))
    role, client = resource_server(
        config,
        facilitator_url,
        facilitator_timeout=facilitator_timeout,
        role_class=ToolSellingServer,
        switches={"supported": supported},
    )
    return PaidToolServer(role, listed, client), role, listed


def serve_mcp_http(
    tools: ToolsConfig | None,
    facilitator_url: str,
    *,
    host: str = LOOPBACK,
    port: int = DEFAULT_MCP_PORT,
    allow_public: bool = False,
    facilitator_timeout: float = DEFAULT_TIMEOUT,
    channel_work_every: float = DEFAULT_CHANNEL_WORK_EVERY,
) -> Running:
    """The tool server alone over streamable HTTP, settling at ``facilitator_url``. ``tools`` must
    name network, asset and payee (the CLI fills them from ``--rpc-url``)."""
    server, role, listed = _tool_server(tools, facilitator_url, facilitator_timeout)
    services = Services(host, allow_public=allow_public)
    base = services.add("mcp", server.http_app(channel_work_every=channel_work_every), port)
    role.base_url = mcp_url = base + MCP_PATH
    services.start()
    return Running(services, {"mcp_url": mcp_url, "facilitator_url": facilitator_url, **_facts(role, listed)})


def stdio_tool_server(
    tools: ToolsConfig | None, facilitator_url: str, *, facilitator_timeout: float = DEFAULT_TIMEOUT
) -> tuple[PaidToolServer, dict[str, Any]]:
    """The tool server for stdin/stdout (its 402s name ``mcp://tool/<name>``) and its facts."""
    server, role, listed = _tool_server(tools, facilitator_url, facilitator_timeout)
    role.base_url = TOOL_BASE_URL
    return server, {"mcp": "stdio", "facilitator_url": facilitator_url, **_facts(role, listed)}
