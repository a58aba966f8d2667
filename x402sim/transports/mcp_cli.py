"""The MCP commands: ``x402sim serve mcp`` (paid tools over streamable HTTP or stdio) and the sending
half of ``x402sim pay --mcp TARGET TOOL --args JSON``.

Job: options and wiring only. ``serve mcp`` is added to the ``serve`` group of ``x402sim.http.cli``,
with that group's option checks and service runner. ``pay`` stays that module's command (its
options, the payer, the output, the exit codes); ``pay_mcp`` is how it sends a tool call, registered
in ``x402sim.http.cli.PAY_OVER`` because ``x402sim.transports`` builds on ``x402sim.http`` and not
the other way round (as ``a2a_cli`` does for ``pay --a2a``). The MCP SDK is imported inside the
commands, so they register on a core install and say which extra to install when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..cli_errors import fail, fail_with, needs_extra, say
from ..governance.cli import audit_lock
from ..http import cli as http_cli

__all__ = ["pay_mcp", "register", "serve_mcp_cmd"]


def _tools_file(path: Path | None):
    from .mcp_tools_file import ToolsFileError, load_tools

    if path is None:
        return None
    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise fail_with(exc) from None


def serve_mcp_cmd(
    tools: Annotated[
        Path | None,
        typer.Option(
            help="Tools file (TOML or JSON): name, price, description, schemas, answer. Default: demo tools."
        ),
    ] = None,
    stdio: Annotated[
        bool,
        typer.Option(
            "--stdio", help="Serve the tools on stdin/stdout (needs --facilitator-url and --rpc-url)."
        ),
    ] = False,
    facilitator_url: Annotated[
        str | None,
        typer.Option(
            help="Settle through this facilitator and serve only the tools (no chain, no facilitator)."
        ),
    ] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(help="With --facilitator-url: an x402sim chain RPC URL to read network and asset from."),
    ] = None,
    host: http_cli.HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MCP endpoint; 0 picks a free one.")] = 4023,
    chain_port: Annotated[int, typer.Option(help="Chain JSON-RPC port (without --facilitator-url).")] = 8545,
    facilitator_port: Annotated[
        int, typer.Option(help="Facilitator port (without --facilitator-url).")
    ] = 4022,
    accounts: http_cli.AccountsOpt = 10,
    usdc: http_cli.UsdcOpt = 1000,
    seed: http_cli.SeedOpt = 0,
    block_time: http_cli.BlockTimeOpt = None,
    network: http_cli.NetworkOpt = http_cli.LOCAL_NETWORK,
    sponsor: http_cli.SponsorOpt = None,
    facilitator_timeout: Annotated[
        float, typer.Option(help="Seconds each facilitator call may take (with --facilitator-url).")
    ] = 30.0,
    channel_work_every: Annotated[
        float,
        typer.Option(
            "--channel-work-every", metavar="SECONDS", help="How often due batch-settlement claims are sent."
        ),
    ] = 5.0,
    allow_remote: http_cli.AllowRemoteOpt = False,
) -> None:
    """Serve paid MCP tools: over streamable HTTP at http://127.0.0.1:PORT/mcp beside a chain and a
    facilitator (one JSON line when ready), or alone with --facilitator-url, or on stdin/stdout with
    --stdio.

    Without --tools: weather (1000 atomic units), forecast (2500) and echo (free). A tool's 402 names
    the MCP endpoint URL over HTTP, mcp://tool/<name> over stdio.

    Priced tools are listed in the Bazaar (unless listed = false): served beside the facilitator, at
    start-up; with --facilitator-url, that facilitator learns each from its first settled call.

    Examples:

      x402sim serve mcp --port 0

      x402sim serve mcp --tools tools.toml

      x402sim serve mcp --facilitator-url http://127.0.0.1:4022 --rpc-url http://127.0.0.1:8545 --port 4023

      x402sim pay --mcp "x402sim serve mcp --stdio --facilitator-url http://127.0.0.1:4022
      --rpc-url http://127.0.0.1:8545" weather --args '{"city": "Oslo"}'
    """
    if not (math.isfinite(channel_work_every) and channel_work_every > 0):
        raise fail(f"--channel-work-every {channel_work_every}: expected a positive number of seconds")
    if not (math.isfinite(facilitator_timeout) and facilitator_timeout > 0):
        raise fail(f"--facilitator-timeout {facilitator_timeout}: expected a positive number of seconds")
    if stdio and facilitator_url is None:
        raise fail("--stdio serves only the tools: give --facilitator-url (and --rpc-url)")
    if rpc_url is not None and facilitator_url is None:
        raise fail("--rpc-url goes with --facilitator-url (without it the chain is served here)")
    config = _tools_file(tools)
    with needs_extra("x402sim serve mcp", "agents"):
        from .mcp_serve import serve_mcp_all, serve_mcp_http
        from .mcp_tools_file import ToolsConfig
    if facilitator_url is None:
        public = http_cli.host_ok(host)
        offered = http_cli.sponsoring_option(sponsor)
        setup = http_cli.chain_setup(accounts, usdc, seed, block_time, network.value)
        ports = {"chain": chain_port, "facilitator": facilitator_port, "mcp": port}
        http_cli.run_until_signalled(
            lambda: serve_mcp_all(
                setup,
                tools=config,
                host=host,
                ports=ports,
                allow_public=public,
                sponsoring=offered,
                channel_work_every=channel_work_every,
            )
        )
        return
    http_cli.urls_ok(allow_remote, {"--facilitator-url": facilitator_url, "--rpc-url": rpc_url})
    config = _with_token(config, rpc_url)
    if stdio:
        _serve_stdio(config, facilitator_url, facilitator_timeout, channel_work_every)
        return
    public = http_cli.host_ok(host)
    assert isinstance(config, ToolsConfig)
    http_cli.run_until_signalled(
        lambda: serve_mcp_http(
            config,
            facilitator_url,
            host=host,
            port=port,
            allow_public=public,
            facilitator_timeout=facilitator_timeout,
            channel_work_every=channel_work_every,
        )
    )


def _with_token(config, rpc_url: str | None):
    """The tools (the demo's without a file) with network, asset and payee filled from the chain at
    ``rpc_url`` where the file names none; exit 2 naming what is still missing."""
    from ..errors import ChainError
    from ..evm.rpc_chain import RpcChain
    from .mcp_tools import tool_routes
    from .mcp_tools_file import ToolsConfig, demo_tools

    if config is None:
        from ..http.routes_file import RoutesConfig

        tools = demo_tools()
        config = ToolsConfig(
            tools, RoutesConfig(routes=tool_routes(tools), source="demo tools"), "demo tools"
        )
    routes = config.routes
    if rpc_url is not None:
        try:
            chain = RpcChain(rpc_url, timeout=5)
            try:
                info = chain.rpc("x402sim_info")
                accounts = chain.rpc("x402sim_accounts") if routes.pay_to is None else None
            finally:
                chain.close()
        except ChainError as exc:
            raise fail(f"--rpc-url {rpc_url}: {exc}") from None
        routes.network = routes.network or info["network"]
        routes.asset = routes.asset or info["token"]
        routes.asset_name = routes.asset_name or info["tokenName"]
        routes.asset_version = routes.asset_version or info["tokenVersion"]
        if routes.pay_to is None and isinstance(accounts, list) and accounts:
            routes.pay_to = accounts[-1]["address"]  # a test account of that chain is paid
    missing = [
        k for k in ("network", "asset", "asset_name", "asset_version", "pay_to") if not getattr(routes, k)
    ]
    if missing:
        raise fail(
            f"{config.source}: missing {', '.join(missing)} (name them in the tools file, or give --rpc-url)"
        )
    return config


def _serve_stdio(config, facilitator_url: str, facilitator_timeout: float, channel_work_every: float) -> None:
    """Serve on stdin/stdout until stdin closes; the facts go to stderr as one JSON line."""
    from ..http.runner import ServiceError
    from .mcp_serve import stdio_tool_server

    try:
        server, facts = stdio_tool_server(config, facilitator_url, facilitator_timeout=facilitator_timeout)
    except (ServiceError, ValueError) as exc:
        raise fail_with(exc) from None
    print(json.dumps(facts), file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.run_stdio(channel_work_every=channel_work_every))


# -- pay --mcp ------------------------------------------------------------------------------------


def _problem(exc: BaseException) -> str:
    """One line for an error met reaching a target (the SDK's transports raise exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def pay_mcp(key: bytes, client_options: dict, governance, audit: Path | None, approve: bool, asked):
    """``pay --mcp``: ``asked`` (target, tool, arguments) called by an ``McpPayingClient`` under a
    governor when ``governance`` is set; the result and the governor (or None). A stdio target is a
    command the user gave: it runs with this shell's environment. The settlement goes to stderr."""
    target, tool, arguments = asked
    with needs_extra("x402sim pay --mcp", "agents"):
        from .mcp import McpPayingClient, is_unknown_tool
        from .mcp_carry import valid_tool_name
    if not valid_tool_name(tool):
        raise fail(f"TOOL {tool!r}: not an MCP tool name (1-128 of A-Z a-z 0-9 _ . -)")
    governor = None
    with contextlib.ExitStack() as stack:
        if governance is not None:
            stack.enter_context(audit_lock(audit))
            governor = http_cli.open_governor(governance, audit, http_cli.approver(approve))
            stack.callback(governor.close)
        client = McpPayingClient(key, governor=governor, env=dict(os.environ), **client_options)
        try:
            result = client.call_tool_sync(target, tool, arguments)
        except Exception as exc:  # the SDK's transports: connection, process and JSON-RPC errors
            raise fail(f"--mcp {target}: tool {tool!r}: {_problem(exc)}") from None
    if is_unknown_tool(result):
        raise fail(f"--mcp {target}: the server has no tool {tool!r}")
    if result.settlement is not None:
        say(f"settlement: {json.dumps(result.settlement.to_wire())}")
    elif result.payment is not None and result.status >= 400:
        say("tool error: nothing was settled")
    return result, governor


def register(app: typer.Typer) -> None:
    """Add ``serve mcp`` to the ``serve`` group and the MCP sender to ``pay`` (after
    ``x402sim.http.cli.register``)."""
    http_cli.serve_app.command("mcp")(serve_mcp_cmd)
    http_cli.PAY_OVER["mcp"] = pay_mcp
