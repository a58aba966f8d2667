"""The A2A commands: ``x402sim serve a2a`` and the sending half of ``x402sim pay --a2a``.

Job: ``serve a2a``'s options and their wiring to ``x402sim.transports.a2a_serve``, and how ``pay
--a2a`` sends (an ``A2aPayingClient`` under ``pay``'s governor); ``register(app)`` adds the command to
``x402sim serve`` and the sender to ``x402sim.http.cli.PAY_OVER``. ``pay`` itself (its options, the
payer, the output, the exit codes) stays in ``x402sim.http.cli``, which never imports this package.

Rules: as ``x402sim.http.cli``: the SDK-backed modules are imported inside the commands, and a missing
``x402sim[agents]`` ends the command with one line saying what to install (exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import httpx
import typer

from ..cli_errors import fail, needs_extra
from ..governance.cli import audit_lock
from ..http.cli import (
    LOCAL_NETWORK,
    PAY_OVER,
    AccountsOpt,
    BlockTimeOpt,
    HostOpt,
    NetworkOpt,
    SeedOpt,
    SponsorOpt,
    UsdcOpt,
    approver,
    chain_setup,
    host_ok,
    open_governor,
    routes_option,
    run_until_signalled,
    serve_app,
    sponsoring_option,
)


def serve_a2a_cmd(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="0 picks free ports for all three services.")] = None,
    chain_port: Annotated[int, typer.Option(help="Chain JSON-RPC port.")] = 8545,
    facilitator_port: Annotated[int, typer.Option(help="Facilitator port.")] = 4022,
    agent_port: Annotated[int, typer.Option(help="A2A agent port.")] = 4023,
    routes: Annotated[
        Path | None,
        typer.Option(help="Routes file (TOML or JSON) whose routes, keyed 'POST /<skill>', are the skills."),
    ] = None,
    accounts: AccountsOpt = 10,
    usdc: UsdcOpt = 1000,
    seed: SeedOpt = 0,
    block_time: BlockTimeOpt = None,
    network: NetworkOpt = LOCAL_NETWORK,
    sponsor: SponsorOpt = None,
) -> None:
    """Start chain RPC, facilitator and a paid A2A agent together; print one JSON line.

    The agent (a2a-sdk, JSON-RPC at its URL, card at /.well-known/agent-card.json) declares the x402
    extension and answers a message for a paid skill with a task asking for payment
    (input-required, x402.payment.required); the paid message on that task is settled and the task
    completed with its receipt. Without --routes it sells the demo skill 'weather' for 1000 atomic
    units (0.001 USDC).

    Examples:

      x402sim serve a2a --port 0

      x402sim serve a2a --routes skills.toml    # routes keyed "POST /<skill>", any scheme

      x402sim pay --a2a http://127.0.0.1:4023 --message "weather in Oslo"
    """
    public = host_ok(host)
    ports = {"chain": chain_port, "facilitator": facilitator_port, "agent": agent_port}
    if port is not None:
        if port != 0:
            raise fail("--port other than 0 would give the three services one port; use --agent-port etc.")
        ports = dict.fromkeys(ports, 0)
    config = routes_option(routes)
    offered = sponsoring_option(sponsor)
    setup = chain_setup(accounts, usdc, seed, block_time, network.value)
    with needs_extra("x402sim serve a2a", "agents"):
        from .a2a_serve import serve_a2a
    run_until_signalled(
        lambda: serve_a2a(
            setup, routes=config, host=host, ports=ports, allow_public=public, sponsoring=offered
        )
    )


def pay_a2a(key: bytes, client_options: dict, governance, audit: Path | None, approve: bool, asked):
    """``pay --a2a``: ``asked`` (agent URL, text, skill) sent by an ``A2aPayingClient``, under a
    governor when ``governance`` is set; the result and the governor (or None)."""
    with needs_extra("x402sim pay --a2a", "agents"):
        from a2a.utils.errors import A2AError

        from .a2a import A2aPayingClient
    agent_url, text, skill = asked

    async def send(governor):
        async with A2aPayingClient(key, governor=governor, **client_options) as client:
            return await client.send_message(agent_url, text, skill=skill)

    governor = None
    try:
        with contextlib.ExitStack() as stack:
            if governance is not None:
                stack.enter_context(audit_lock(audit))
                governor = open_governor(governance, audit, approver(approve))
                stack.callback(governor.close)
            result = asyncio.run(send(governor))
    except (A2AError, ValueError, httpx.HTTPError) as exc:  # httpx: the agent could not be reached
        raise fail(f"--a2a {agent_url}: {exc.__class__.__name__}: {exc}") from None
    return result, governor


def register(app: typer.Typer) -> None:
    """Add ``serve a2a`` to the ``serve`` group and the A2A sender to ``pay`` (after
    ``x402sim.http.cli.register``)."""
    serve_app.command("a2a")(serve_a2a_cmd)
    PAY_OVER["a2a"] = pay_a2a
