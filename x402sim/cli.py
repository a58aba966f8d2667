"""The ``x402sim`` command line. Only this module imports every layer.

Exit codes: 0 success, 1 the run found a broken invariant (or, for ``pay``, an HTTP error), 2 bad
usage or input, 3 (``pay --policy``) a payment denied by the spend policy. The HTTP layer is
imported inside the commands that use it, so ``demo`` and ``--help`` start without loading the web
stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .demo import DemoReport, run_demo
from .evm.presets import DEFAULT_PRESET, PRESETS
from .money import UNIT, format_usdc_exact, format_usdc_fixed

try:
    import fcntl  # audit files are locked while `pay` uses them (POSIX; elsewhere they are not)
except ImportError:  # pragma: no cover
    fcntl = None

app = typer.Typer(
    name="x402sim",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"x402sim {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """x402sim: agents paying per request over HTTP 402, on an embedded EIP-3009 chain.

    Examples:

      x402sim demo                    # paid requests, balances, gas

      x402sim demo --seed 3 --json out/demo.json
    """


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of every key, nonce and block: same seed, same run.")] = 7,
    requests: Annotated[int, typer.Option(min=1, max=1000, help="Rounds of paid requests per agent.")] = 5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")
    ] = None,
) -> None:
    """Run agents paying resource servers on the embedded chain and report what happened.

    Example: x402sim demo --requests 10
    """
    with console.status("starting the embedded chain and paying…"):
        report = run_demo(seed=seed, requests=requests)
    _render(report)
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"report written to {json_out}")
    if not report.supply_constant or report.transfers_on_chain != report.settlements:
        console.print("[red]invariant broken: supply changed or transfers do not match settlements[/red]")
        raise typer.Exit(1)


def _render(report: DemoReport) -> None:
    console.rule(f"x402sim demo (seed {report.seed})")
    for event in report.events:
        console.print("  " + event)
    table = Table(title="USDC balances (on chain)")
    for col in ("who", "address", "before", "after", "change"):
        table.add_column(col, justify="right" if col in ("before", "after", "change") else "left")
    for name, address, before, after in report.balances:
        table.add_row(
            name,
            address[:10] + "…" + address[-4:],
            format_usdc_fixed(before),
            format_usdc_fixed(after),
            format_usdc_fixed(after - before, plus=True),
        )
    console.print(table)
    gas = report.gas_used
    mean_gas = sum(gas) / len(gas) if gas else 0
    console.print(
        f"paid requests: {report.paid_requests}   settlements: {report.settlements}   "
        f"Transfer logs on chain: {report.transfers_on_chain}"
    )
    console.print(
        f"gas per settlement: mean {mean_gas:,.0f}, "
        f"first {gas[0] if gas else 0:,}, last {gas[-1] if gas else 0:,}"
    )
    console.print(
        f"replayed payment refused with [bold]{report.replay_reason}[/bold] (class {report.replay_class})"
    )
    ok = "[green]constant[/green]" if report.supply_constant else "[red]CHANGED[/red]"
    supply = f"{format_usdc_fixed(report.supply_before)} -> {format_usdc_fixed(report.supply_after)}"
    console.print(f"token supply: {supply} ({ok})")


def _write_json(path: Path, report: DemoReport) -> None:
    data = dataclasses.asdict(report)
    data["balances"] = [
        dict(zip(("who", "address", "before", "after"), row, strict=True)) for row in report.balances
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # no half-written report if we are interrupted


# -- serve ----------------------------------------------------------------------------------------

serve_app = typer.Typer(
    name="serve",
    help="Run the chain, the facilitator and a resource server as local services (127.0.0.1).",
    no_args_is_help=False,
)
app.add_typer(serve_app)
err = Console(stderr=True)
DEFAULT_RPC_URL = "http://127.0.0.1:8545"

HostOpt = Annotated[str, typer.Option(help="Address to bind. Anything but loopback prints a warning.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the chain's keys.")]
AccountsOpt = Annotated[int, typer.Option(min=1, max=1000, help="Funded test accounts to create.")]
UsdcOpt = Annotated[int, typer.Option(min=0, help="USDC (whole units) given to each test account.")]
AllowRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-remote", help="Allow URLs that are not on this machine (loopback only by default)."
    ),
]
BlockTimeOpt = Annotated[
    float | None, typer.Option(help="Mine every N seconds instead of on every transaction.", min=0.01)
]
# The network presets as choices (typer takes choices from an Enum).
NetworkName = enum.Enum("NetworkName", {name: name for name in PRESETS}, type=str)
LOCAL_NETWORK = NetworkName(DEFAULT_PRESET)
NetworkOpt = Annotated[
    NetworkName,
    typer.Option(
        help="Network preset: its chain id, and the token at its canonical USDC address with its EIP-712 "
        "name and version (as the SDKs' default asset tables), e.g. --network base-sepolia.",
    ),
]
# The request-signing profiles of x402sim.trust.signatures.PROTOCOLS (named here so --help loads no crypto).
SignProtocol = enum.Enum(
    "SignProtocol", {p: p for p in ("web-bot-auth", "agent-browser-auth", "agent-payer-auth")}, type=str
)
FromEnvOpt = Annotated[
    bool,
    typer.Option(
        "--from-env",
        help="Configure from the environment variables of the x402 e2e harness (see the README); "
        "print 'Server listening on URL' / 'Facilitator listening on URL' when ready; POST /close stops.",
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _urls_ok(allow_remote: bool, urls: dict[str, str | None]) -> None:
    """Refuse, with one message, any URL (by its option name) that leaves this machine, unless
    --allow-remote."""
    from .http.runner import ServiceError, check_loopback_url

    for what, url in urls.items():
        if url is not None:
            try:
                check_loopback_url(url, what, allow_remote=allow_remote)
            except ServiceError as exc:
                raise _fail(str(exc)) from None


def _host_ok(host: str) -> bool:
    from .http.runner import is_loopback

    if not is_loopback(host):
        err.print(f"[yellow]warning:[/yellow] binding {host}: the services are reachable from other machines")
        return True
    return False


def _run_until_signalled(start, *, ready: str | None = None) -> None:
    """Start services, print their JSON line, wait for Ctrl-C, SIGTERM or a POST /close (of services
    started with control), stop cleanly. With ``ready`` (``"Server listening on"``), stdout gets only
    that line and the service's URL, and the JSON line goes to stderr."""
    from .evm.chain import ChainError
    from .http.routes_file import RoutesFileError
    from .http.runner import ServiceError

    try:
        running = start()
    except (ServiceError, ChainError, RoutesFileError, ValueError) as exc:
        raise _fail(str(exc)) from None
    stop = running.stop_requested
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if ready is None:
        print(json.dumps(running.info), flush=True)
    else:
        print(json.dumps(running.info), file=sys.stderr, flush=True)
        print(f"{ready} {next(iter(running.services.urls.values()))}", flush=True)
    err.print("ready; Ctrl-C or SIGTERM to stop")
    try:
        while not stop.wait(0.5):  # a timed wait lets Ctrl-C through to the main thread
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        running.stop()
        err.print("stopped")


def _setup(accounts: int, usdc: int, seed: int, block_time: float | None, network: str):
    from .http.serve import ChainSetup

    return ChainSetup(accounts=accounts, usdc=usdc * UNIT, seed=seed, block_time=block_time, network=network)


def _from_env(read, allow_remote: bool, urls: tuple[str, ...]):
    """The settings ``read`` (``server_env`` etc.) takes from the environment, after the URL variables
    ``urls`` passed the loopback rule (before anything is contacted); exit 2 naming the variable when
    one is missing or wrong."""
    import os

    from .evm.chain import ChainError
    from .http.serve import EnvError

    _urls_ok(allow_remote, {name: os.environ.get(name, "").strip() or None for name in urls})
    try:
        return read(os.environ)
    except (EnvError, ChainError) as exc:
        raise _fail(str(exc)) from None


def _routes(path: Path | None):
    from .http.routes_file import RoutesFileError, load_routes

    if path is None:
        return None
    try:
        return load_routes(path)
    except RoutesFileError as exc:
        raise _fail(str(exc)) from None


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port for all three services; 0 picks free ports.")] = None,
    chain_port: Annotated[int, typer.Option(help="Chain JSON-RPC port.")] = 8545,
    facilitator_port: Annotated[int, typer.Option(help="Facilitator port.")] = 4022,
    server_port: Annotated[int, typer.Option(help="Resource server port.")] = 4021,
    routes: Annotated[
        Path | None, typer.Option(help="Routes file (TOML or JSON) for the resource server.")
    ] = None,
    accounts: AccountsOpt = 10,
    usdc: UsdcOpt = 1000,
    seed: SeedOpt = 0,
    block_time: BlockTimeOpt = None,
    network: NetworkOpt = LOCAL_NETWORK,
) -> None:
    """Start chain RPC, facilitator and a demo resource server together; print one JSON line.

    Without --routes the demo server charges 1000 atomic units (0.001 USDC) for GET /weather.

    Examples:

      x402sim serve --port 0

      x402sim serve --network base-sepolia    # chain 84532, its USDC address and domain

      x402sim serve chain --port 8545

      x402sim serve facilitator --rpc-url http://127.0.0.1:8545

      x402sim serve server --facilitator-url http://127.0.0.1:4022 --routes routes.toml --rpc-url http://127.0.0.1:8545
    """
    if ctx.invoked_subcommand is not None:
        return
    from .http.serve import serve_all

    public = _host_ok(host)
    ports = {"chain": chain_port, "facilitator": facilitator_port, "server": server_port}
    if port is not None:
        ports = dict.fromkeys(ports, port)
        if port != 0:
            raise _fail("--port other than 0 would give the three services one port; use --chain-port etc.")
    config = _routes(routes)
    setup = _setup(accounts, usdc, seed, block_time, network.value)
    _run_until_signalled(lambda: serve_all(setup, routes=config, host=host, ports=ports, allow_public=public))


@serve_app.command("chain")
def serve_chain_cmd(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="JSON-RPC port; 0 picks a free one.")] = 8545,
    accounts: AccountsOpt = 10,
    usdc: UsdcOpt = 1000,
    seed: SeedOpt = 0,
    block_time: BlockTimeOpt = None,
    network: NetworkOpt = LOCAL_NETWORK,
) -> None:
    """Serve the embedded chain over Ethereum JSON-RPC, with funded test accounts.

    Example: x402sim serve chain --port 8545 --network base-sepolia
    """
    from .http.serve import serve_chain

    public = _host_ok(host)
    setup = _setup(accounts, usdc, seed, block_time, network.value)
    _run_until_signalled(lambda: serve_chain(setup, host=host, port=port, allow_public=public))


@serve_app.command("facilitator")
def serve_facilitator_cmd(
    rpc_url: Annotated[
        str, typer.Option(help="JSON-RPC URL of the chain to settle on.")
    ] = "http://127.0.0.1:8545",
    key: Annotated[
        str | None, typer.Option(help="Hex private key paying gas (default: a fresh funded test key).")
    ] = None,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 4022,
    settle_timeout: Annotated[float, typer.Option(help="Seconds to wait for a settlement's receipt.")] = 30.0,
    allow_remote: AllowRemoteOpt = False,
    from_env: FromEnvOpt = False,
) -> None:
    """Serve the reference facilitator (/verify, /settle, /supported, /health) for a chain by RPC URL.

    With --from-env: PORT, EVM_RPC_URL, EVM_NETWORK (checked against the chain), and
    FACILITATOR_EVM_PRIVATE_KEY or EVM_PRIVATE_KEY.

    Example: PORT=4022 EVM_RPC_URL=http://127.0.0.1:8545 EVM_NETWORK=eip155:84532 EVM_PRIVATE_KEY=0x...
    x402sim serve facilitator --from-env
    """
    from .http.serve import facilitator_env, serve_facilitator, serve_facilitator_env

    if from_env:
        env = _from_env(facilitator_env, allow_remote, ("EVM_RPC_URL",))
        public = _host_ok(host)
        _run_until_signalled(
            lambda: serve_facilitator_env(env, host=host, allow_public=public, settle_timeout=settle_timeout),
            ready="Facilitator listening on",
        )
        return
    _urls_ok(allow_remote, {"--rpc-url": rpc_url})
    public = _host_ok(host)
    key_bytes = _parse_key(key) if key else None
    _run_until_signalled(
        lambda: serve_facilitator(
            rpc_url, key=key_bytes, host=host, port=port, allow_public=public, settle_timeout=settle_timeout
        )
    )


@serve_app.command("server")
def serve_server_cmd(
    facilitator_url: Annotated[
        str | None, typer.Option(help="URL of the facilitator to verify and settle with (required).")
    ] = None,
    routes: Annotated[
        Path | None, typer.Option(help="Routes file (TOML or JSON): method, path, price, pay_to (required).")
    ] = None,
    rpc_url: Annotated[
        str | None, typer.Option(help="An x402sim chain RPC URL to read network and asset from.")
    ] = None,
    origin: Annotated[
        str | None, typer.Option(help="Paywall proxy mode: forward paid requests here.")
    ] = None,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 4021,
    facilitator_timeout: Annotated[float, typer.Option(help="Seconds to wait for the facilitator.")] = 30.0,
    allow_remote: AllowRemoteOpt = False,
    from_env: FromEnvOpt = False,
    crawl_policy: Annotated[
        bool,
        typer.Option(
            "--crawl-policy",
            help="Pay per crawl: admit requests by their RFC 9421 signature (Web Bot Auth, Visa TAP). "
            "Unsigned or badly signed requests get 403, signed agents pay the route's price by x402, "
            "--crawl-allow agents are served free. Keys come from the directory each request names in "
            "Signature-Agent (this machine only unless --allow-remote).",
        ),
    ] = False,
    crawl_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--crawl-allow",
            metavar="KEYID_OR_URL",
            help="With --crawl-policy: an agent served free, by keyid or by its key directory's URL "
            "(repeatable).",
        ),
    ] = None,
    crawl_charge_unsigned: Annotated[
        bool,
        typer.Option(
            "--crawl-charge-unsigned",
            help="With --crawl-policy: let unsigned requests pay like anyone instead of refusing them.",
        ),
    ] = False,
    sign_responses: Annotated[
        bool,
        typer.Option(
            "--sign-responses",
            help="Sign answers carrying PAYMENT-REQUIRED or PAYMENT-RESPONSE (RFC 9421, the x402 "
            "http-message-signatures extension); the key is served at "
            "/.well-known/http-message-signatures-directory.",
        ),
    ] = False,
) -> None:
    """Serve priced routes (or a paywall proxy in front of --origin), settling through a facilitator.

    With --from-env (instead of --facilitator-url and --routes): PORT, FACILITATOR_URL, EVM_NETWORK,
    SERVER_EVM_ADDRESS or EVM_PAYEE_ADDRESS, EVM_ASSET, EVM_ASSET_NAME, EVM_ASSET_VERSION (default: the
    network preset's USDC), PRICE_ATOMIC (1000), PROTECTED_PATH (/protected), EVM_RPC_URL (optional).

    Example: PORT=4021 FACILITATOR_URL=http://127.0.0.1:4022 EVM_NETWORK=eip155:84532
    EVM_PAYEE_ADDRESS=0x... x402sim serve server --from-env

    Pay per crawl in front of an origin, one agent free (its keyid is printed by x402sim serve chain):

      x402sim serve server --facilitator-url http://127.0.0.1:4022 --routes routes.toml
      --rpc-url http://127.0.0.1:8545 --origin http://127.0.0.1:8000 --crawl-policy --crawl-allow KEYID
    """
    from .evm.chain import ChainError
    from .http.serve import serve_server, serve_server_env, server_env

    if not crawl_policy and (crawl_allow or crawl_charge_unsigned):
        raise _fail("--crawl-allow and --crawl-charge-unsigned need --crawl-policy")
    if from_env:
        if routes is not None or origin is not None or rpc_url is not None or facilitator_url is not None:
            raise _fail("--from-env reads its settings from the environment; drop the other options")
        if crawl_policy or sign_responses:
            raise _fail("--from-env serves the e2e contract; drop --crawl-policy and --sign-responses")
        env = _from_env(server_env, allow_remote, ("FACILITATOR_URL", "EVM_RPC_URL"))
        public = _host_ok(host)
        _run_until_signalled(
            lambda: serve_server_env(
                env, host=host, allow_public=public, facilitator_timeout=facilitator_timeout
            ),
            ready="Server listening on",
        )
        return
    for option, value in (("--facilitator-url", facilitator_url), ("--routes", routes)):
        if value is None:
            raise _fail(f"missing option {option} (or use --from-env)")
    _urls_ok(allow_remote, {"--facilitator-url": facilitator_url, "--rpc-url": rpc_url, "--origin": origin})
    public = _host_ok(host)
    config = _routes(routes)
    if rpc_url:
        try:
            _fill_from_chain(config, rpc_url)
        except ChainError as exc:
            raise _fail(str(exc)) from None
    _run_until_signalled(
        lambda: serve_server(
            config,
            facilitator_url,
            origin=origin,
            host=host,
            port=port,
            allow_public=public,
            facilitator_timeout=facilitator_timeout,
            crawl=crawl_policy,
            crawl_allow=tuple(crawl_allow or ()),
            crawl_block_unsigned=not crawl_charge_unsigned,
            allow_remote_directories=allow_remote,
            sign_responses=sign_responses,
        )
    )


def _fill_from_chain(config, rpc_url: str) -> None:
    from .evm.rpc_chain import RpcChain

    info = RpcChain(rpc_url).rpc("x402sim_info")
    config.network = config.network or info["network"]
    config.asset = config.asset or info["token"]
    config.asset_name = config.asset_name or info["tokenName"]
    config.asset_version = config.asset_version or info["tokenVersion"]


def _parse_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key.removeprefix("0x"))
    except ValueError:
        raise _fail("--key: not hex") from None
    if len(raw) != 32:
        raise _fail(f"--key: a private key is 32 bytes, got {len(raw)}")
    return raw


# -- pay ------------------------------------------------------------------------------------------


@app.command()
def pay(
    url: Annotated[
        str | None,
        typer.Argument(help="The URL to request (paid once if it answers 402).", show_default=False),
    ] = None,
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method.")] = "GET",
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header 'Name: value'.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Hex private key of the paying wallet.")] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="The chain to pay on: only its network is paid, signed with its clock; without --key "
            f"its first funded account pays. Default {DEFAULT_RPC_URL} when --key is not given."
        ),
    ] = None,
    network: Annotated[
        list[str] | None,
        typer.Option(
            help="Without --rpc-url: a CAIP-2 network to pay on (repeatable); nothing else is paid."
        ),
    ] = None,
    max_price: Annotated[
        int | None, typer.Option(help="Refuse to pay more than this (atomic units).")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the 402, the payment and the settlement.")
    ] = False,
    allow_remote: AllowRemoteOpt = False,
    from_env: Annotated[
        bool,
        typer.Option(
            "--from-env",
            help="Configure from the x402 e2e harness's environment variables (see the README) and print "
            "one JSON verdict line {success, data, status_code, payment_response}.",
        ),
    ] = False,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy file (TOML, e.g. examples/policy.toml): a governor judges the payment by its rules "
            "and triggers before anything is signed.",
        ),
    ] = None,
    policy_name: Annotated[
        str | None,
        typer.Option("--policy-name", help="Which policy of the --policy file (needed when it has several)."),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="This agent's name in the policy and the audit log (default: the payer's address).",
        ),
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            "--audit",
            help="Append-only, hash-chained audit log (JSON Lines). An existing one is verified and "
            "continued, so spend limits and freezes carry over between invocations.",
        ),
    ] = None,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve",
            help="Grant a payment the policy says needs approval (without it: asked on a terminal, "
            "refused otherwise).",
        ),
    ] = False,
    sign: Annotated[
        SignProtocol | None,
        typer.Option(
            "--sign",
            help="Sign every request (RFC 9421) with the account's agent key: web-bot-auth (IETF Web Bot "
            "Auth), agent-browser-auth or agent-payer-auth (Visa Trusted Agent Protocol).",
        ),
    ] = None,
    signature_agent: Annotated[
        str | None,
        typer.Option(
            "--signature-agent",
            help="With --sign: the origin of the agent's key directory, sent in Signature-Agent "
            "(default: the origin of --rpc-url, whose chain serves the test accounts' directory).",
        ),
    ] = None,
) -> None:
    """A curl-like paying client: request URL, pay a 402 once, print the response body.

    It signs only for a chain it is told about: the network of --rpc-url, else those of --network.

    Without --key, the first funded account of the chain at --rpc-url pays.

    Exit code 0 for a 2xx/3xx answer, 1 for an HTTP error or a refused payment, 2 for bad input,
    3 for a payment denied by the --policy (one line on stderr: payment denied by policy: RULE: REASON).

    Only URLs on this machine are contacted unless --allow-remote is given.

    With --policy, a governor judges the payment before it is signed (spend, usage and rate limits,
    caps, allowed payees and hosts, approvals, anomaly triggers that freeze the agent); with --audit,
    its decision and what became of the payment are appended to a hash-chained log (check it with
    x402sim audit verify). A payment that needs approval is granted by --approve, else asked on a
    terminal, else refused.

    With --sign, every request is signed (RFC 9421) with an Ed25519 key derived from the paying
    account's key, whose public half the x402sim chain publishes at
    /.well-known/http-message-signatures-directory; a server started with --crawl-policy then knows
    the agent (and charges it, or serves it free).

    With --from-env (instead of URL, --key, --rpc-url, --network, --max-price): RESOURCE_SERVER_URL
    and ENDPOINT_PATH (joined), CLIENT_EVM_PRIVATE_KEY or EVM_PRIVATE_KEY, EVM_NETWORK (the only network
    paid), EVM_RPC_URL (optional: its clock is used, its chain must be EVM_NETWORK), MAX_AMOUNT_ATOMIC
    (the most one payment may cost, default 1000000).

    Examples:

      x402sim pay http://127.0.0.1:4021/weather

      x402sim pay http://127.0.0.1:4021/weather -v --max-price 5000

      x402sim pay http://127.0.0.1:4021/weather --key 0x... --network eip155:31337

      x402sim pay http://127.0.0.1:4021/weather --policy examples/policy.toml --audit audit.jsonl

      x402sim pay http://127.0.0.1:4021/weather --rpc-url http://127.0.0.1:8545 --sign web-bot-auth

      x402sim pay http://127.0.0.1:4021/weather --policy team.toml --policy-name strict --agent researcher
      --audit audit.jsonl --approve

      RESOURCE_SERVER_URL=http://127.0.0.1:4021 ENDPOINT_PATH=/protected EVM_NETWORK=eip155:84532
      EVM_PRIVATE_KEY=0x... x402sim pay --from-env
    """
    import httpx

    from .actors.client import SpendPolicy, check_networks
    from .evm.chain import ChainError
    from .http.client import PayingClient

    if from_env:
        if any(v is not None for v in (url, key, rpc_url, network, max_price)):
            raise _fail("--from-env reads URL, key, network and price cap from the environment; drop them")
        if policy_file is not None:
            raise _fail("--from-env pays without a governor; drop --policy")
        if sign is not None:
            raise _fail("--from-env does not sign requests; drop --sign")
    elif url is None:
        raise _fail("missing argument URL (or use --from-env)")
    governance = _load_governance(policy_file, policy_name, agent, audit, approve)
    if key is None and rpc_url is None and not from_env:
        rpc_url = DEFAULT_RPC_URL
    _urls_ok(allow_remote, {"URL": url, "--rpc-url": rpc_url})
    headers = []
    for h in header or []:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise _fail(f"--header {h!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    if from_env:
        _pay_from_env(method, headers, (data or "").encode(), allow_remote)
        return
    clock = time.time
    if rpc_url is not None:
        try:
            chain_network, offset, first_key = _chain_facts(rpc_url, need_key=key is None)
        except ChainError as exc:
            raise _fail(f"--rpc-url {rpc_url}: {exc}") from None
        stray = [n for n in network or [] if n != chain_network]
        if stray:
            raise _fail(f"--network {stray[0]} is not the network of --rpc-url {rpc_url} ({chain_network})")
        networks, key = (chain_network,), key or first_key
        clock = lambda: time.time() + offset  # noqa: E731 - sign with the chain's clock
    elif not network:
        raise _fail("say which network to pay on: --rpc-url URL or --network eip155:<chain id>")
    else:
        try:
            networks = check_networks(network)
        except ValueError as exc:
            raise _fail(f"--network: {exc}") from None
    policy = SpendPolicy(max_price=max_price)
    key_bytes = _parse_key(key)
    signer = _agent_signer(sign, key_bytes, signature_agent, rpc_url)
    governor = None
    try:
        with contextlib.ExitStack() as stack:
            if governance is not None:
                stack.enter_context(_audit_lock(audit))
                governor = _open_governor(governance, audit, _approver(approve))
                stack.callback(governor.close)
            client = stack.enter_context(
                PayingClient(
                    key_bytes,
                    networks=networks,
                    policy=policy,
                    clock=clock,
                    governor=governor,
                    agent=agent,
                    signer=signer,
                )
            )
            result = client.request(method, url, headers=headers, content=(data or "").encode())
    except httpx.HTTPError as exc:
        raise _fail(f"{url}: {exc.__class__.__name__}: {exc}") from None
    if verbose:
        _show_payment(result)
        if governor is not None:
            _show_governance(result, governor, audit)
    sys.stdout.buffer.write(result.body)
    if result.body and not result.body.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    if result.decision is not None and not result.decision.allowed:
        hint = _approval_hint(result.decision, approve)
        _say(f"payment denied by policy: {result.decision.explain()}{hint}")
        raise typer.Exit(3)
    if result.refused:
        err.print(f"payment refused: {result.refused}")
    if result.status >= 400:
        raise typer.Exit(1)


def _agent_signer(sign, key: bytes, signature_agent: str | None, rpc_url: str | None):
    """The RFC 9421 signer for ``pay --sign``: the account's agent key, pointing at its directory."""
    if sign is None:
        if signature_agent is not None:
            raise _fail("--signature-agent needs --sign")
        return None
    from .http.serve import account_agent_key, origin_of
    from .trust.signatures import WEB_BOT_AUTH, AgentSigner

    agent_url = signature_agent or (origin_of(rpc_url) if rpc_url else None)
    if agent_url is None and sign.value == WEB_BOT_AUTH:
        raise _fail("--sign web-bot-auth needs the agent's key directory: --rpc-url or --signature-agent URL")
    try:
        return AgentSigner(account_agent_key(key), protocol=sign.value, signature_agent=agent_url)
    except ValueError as exc:
        raise _fail(f"--signature-agent: {exc}") from None


# Governance for `pay`: the policy is read before anything else (a bad one writes nothing), the audit
# file is locked for the whole invocation (concurrent `pay`s sharing it take turns, so two cannot both
# pass a limit only one fits, and its chain stays one chain), and the governor resumes from it.


def _say(message: str) -> None:
    """One line on stderr, as written (no markup, no wrapping)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def _error(message: str, code: int = 2) -> typer.Exit:
    """``_fail`` for messages holding paths and hashes: never wrapped, never read as markup."""
    err.print("[red]error:[/red] ", end="")
    _say(message)
    return typer.Exit(code)


def _load_governance(policy_file: Path | None, policy_name, agent, audit, approve: bool):
    """The policy file and the chosen policy of ``pay --policy`` (None without --policy); exit 2 naming
    the file, key path and problem of a bad one, or the policies of a file when the name is wrong."""
    from .governance import PolicyError, load_policies

    if policy_file is None:
        stray = [
            option
            for option, value in (
                ("--policy-name", policy_name),
                ("--agent", agent),
                ("--audit", audit),
                ("--approve", approve or None),
            )
            if value is not None
        ]
        if stray:
            raise _error(f"{stray[0]} needs --policy FILE (the policy a governor enforces)")
        return None
    try:
        policies = load_policies(policy_file)
    except PolicyError as exc:
        raise _error(str(exc)) from None
    try:
        chosen = policies.policy(policy_name)
    except KeyError as exc:
        raise _error(f"--policy-name: {policy_file}: {exc.args[0]}") from None
    return policies, chosen


@contextlib.contextmanager
def _audit_lock(path: Path | None):
    """Hold an exclusive lock on the audit file ``path`` (created if missing) while the body runs."""
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise _error(f"--audit {path}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_governor(governance, audit: Path | None, approver):
    """A governor enforcing the chosen policy, resumed from the audit file (exit 2 when it is broken)."""
    from .governance import AuditError, AuditLog, Governor

    policies, chosen = governance
    log = None
    if audit is not None:
        try:
            log = AuditLog(audit)
        except AuditError as exc:
            raise _error(f"--audit {exc} (x402sim audit verify {audit} says more)") from None
    try:
        return Governor(chosen, projects=policies.projects, audit=log, approver=approver)
    except (KeyError, TypeError, ValueError) as exc:
        raise _error(f"--audit {audit}: not a log of governance events ({exc!r})") from None


def _interactive() -> bool:
    """Whether a person can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def _approver(approve: bool):
    """What answers a payment that needs approval: yes with --approve, a person on a terminal, or
    nobody (None: the governor refuses it)."""
    if approve:
        return lambda decision: True
    if not _interactive():
        return None

    def ask(decision) -> bool:
        a = decision.attempt
        question = (
            f"Pay {format_usdc_exact(a.amount)} USDC to {a.pay_to} for {a.resource}? "
            f"(needs approval: {decision.rule}: {decision.reason})"
        )
        try:
            return typer.confirm(question, default=False, err=True)
        except click.exceptions.Abort:  # Ctrl-C or end of input: refused, and logged as refused
            return False

    return ask


def _approval_hint(decision, approve: bool) -> str:
    if decision.reason == "refused by no approver" and not approve:
        return " (pass --approve, or run on a terminal to be asked)"
    return ""


def _show_governance(result, governor, audit: Path | None) -> None:
    if result.decision is not None:
        d = result.decision
        _say(f"governance: {d.verdict}" + (f" ({d.explain()})" if d.explain() else ""))
    if audit is not None:
        _say(f"audit: {audit}, {governor.audit.count} entries, head {governor.head}")


def _pay_from_env(method: str, headers: list[tuple[str, str]], body: bytes, allow_remote: bool) -> None:
    """``pay --from-env``: one request paid on EVM_NETWORK only, one JSON verdict line on stdout, exit 0
    for a 2xx answer and 1 otherwise (2 for a missing or wrong variable)."""
    import httpx

    from .actors.client import SpendPolicy
    from .evm.chain import ChainError
    from .http.client import PayingClient
    from .http.serve import EnvError, check_rpc_network, client_env, client_verdict

    env = _from_env(client_env, allow_remote, ("RESOURCE_SERVER_URL", "EVM_RPC_URL"))
    clock = time.time
    if env.rpc_url is not None:
        try:
            chain = check_rpc_network(env.rpc_url, env.network)
            try:
                wall = int(time.time())
                offset = chain.time(wall) - wall
            finally:
                chain.close()
        except (EnvError, ChainError) as exc:
            raise _fail(str(exc)) from None
        clock = lambda: time.time() + offset  # noqa: E731 - sign with the chain's clock
    policy = SpendPolicy(max_price=env.max_amount)
    try:
        with PayingClient(env.key, networks=(env.network,), policy=policy, clock=clock) as client:
            result = client.request(method, env.url, headers=headers, content=body)
    except httpx.HTTPError as exc:
        problem = f"{env.url}: {exc.__class__.__name__}: {exc}"
        verdict = {"success": False, "data": problem, "status_code": None, "payment_response": None}
    else:
        verdict = client_verdict(result)
        if result.refused:
            err.print(f"payment refused: {result.refused}")
    print(json.dumps(verdict), flush=True)
    if not verdict["success"]:
        raise typer.Exit(1)


def _chain_facts(rpc_url: str, *, need_key: bool) -> tuple[str, int, str | None]:
    """The network of the chain at ``rpc_url``, how far its clock is ahead of ours, and (if asked
    for) the key of its first funded test account."""
    from .evm.chain import ChainError
    from .evm.rpc_chain import RpcChain

    chain = RpcChain(rpc_url, timeout=5)
    try:
        wall = int(time.time())
        offset = chain.time(wall) - wall
        if not need_key:
            return chain.network, offset, None
        accounts = chain.rpc("x402sim_accounts")
        if not isinstance(accounts, list) or not accounts:
            raise ChainError("no --key given and the chain has no funded test accounts")
        return chain.network, offset, accounts[0]["private_key"]
    finally:
        chain.close()


def _show_payment(result) -> None:
    if result.challenge is not None:
        err.print("[bold]402 payment required[/bold]")
        err.print_json(data=result.challenge.to_wire())
    if result.payment is not None:
        err.print("[bold]payment sent[/bold]")
        err.print_json(data=result.payment.to_wire())
    if result.settlement is not None:
        err.print("[bold]settlement[/bold]")
        err.print_json(data=result.settlement.to_wire())
    err.print(f"HTTP {result.status}")


# -- audit ------------------------------------------------------------------------------------------

audit_app = typer.Typer(
    name="audit",
    help="Check, summarise and act on the audit logs of governed payments (pay --policy --audit).",
    no_args_is_help=True,
)
app.add_typer(audit_app)
AuditFileArg = Annotated[
    Path, typer.Argument(help="The audit log (JSON Lines, written by pay --audit).", show_default=False)
]


def _broken(path: Path, report) -> str:
    """``FILE: line N: problem`` for a chain that does not verify (``FILE: problem`` when no line is
    to blame, e.g. a missing file)."""
    problem = report.problem
    if report.line is not None and not problem.startswith(f"line {report.line}:"):
        problem = f"line {report.line}: {problem}"
    return f"{path}: {problem}"


def _verified(path: Path):
    """The entries of the audit file at ``path``; exit 1 naming the first broken line."""
    from .governance import verify

    report = verify(path)
    if not report.ok:
        raise _error(_broken(path, report), 1)
    return report


@audit_app.command("verify")
def audit_verify(
    file: AuditFileArg,
    head: Annotated[
        str | None,
        typer.Option(
            help="The hash the last entry must have (a head printed earlier): catches entries deleted at "
            "the end, which leave a shorter valid chain."
        ),
    ] = None,
) -> None:
    """Check the audit log's hash chain; exit 1 at the first broken link, naming its line.

    Prints 'FILE: ok, N entries, head HASH', or 'FILE: line N: PROBLEM' (an edited entry, a
    deleted, added or moved one, a truncated line). Keep the head somewhere else to catch entries
    deleted at the end.

    Exit code 0 when the chain holds, 1 when it is broken or the file cannot be read, 2 for bad usage.

    Examples:

      x402sim audit verify audit.jsonl

      x402sim audit verify audit.jsonl --head 3f5a...e1
    """
    from .governance import verify

    if head is not None:
        head = head.strip().lower().removeprefix("0x")
        if len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
            raise _error("--head: expected a 64-hex-digit hash, as audit verify prints it")
    report = verify(file, head=head)
    if not report.ok:
        print(_broken(file, report), flush=True)
        raise typer.Exit(1)
    print(f"{file}: ok, {len(report.entries)} entries, head {report.head}", flush=True)


@audit_app.command("summary")
def audit_summary(
    file: AuditFileArg,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (amounts in atomic units).")
    ] = False,
) -> None:
    """Spend per agent, project and payee (settled payments), denials by rule, approvals and freezes.

    The chain is verified first: a broken log is refused (exit 1), naming the line.

    Examples:

      x402sim audit summary audit.jsonl

      x402sim audit summary audit.jsonl --json | jq .spend.agents
    """
    from .governance import summarize

    report = _verified(file)
    try:
        summary = summarize(report.entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise _error(f"{file}: not a log of governance events ({exc!r})", 1) from None
    if json_out:
        print(json.dumps(summary, indent=2), flush=True)
        return
    _render_summary(file, report, summary)


def _render_summary(path: Path, report, s: dict) -> None:
    def counts(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    console.print(
        f"{path}: {s.get('entries', len(report.entries))} entries, head {report.head}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(f"decisions: {counts(s.get('decisions', {}))}", highlight=False, markup=False)
    console.print(f"outcomes: {counts(s.get('outcomes', {}))}", highlight=False, markup=False)
    spend = s.get("spend", {})
    for key, who in (("agents", "agent"), ("projects", "project"), ("payees", "payee")):
        rows = spend.get(key) or {}
        if not rows:
            console.print(f"spend per {who}: none", highlight=False)
            continue
        table = Table(title=f"Spend per {who}", title_justify="left")
        table.add_column(who, overflow="fold")
        table.add_column("settled USDC", justify="right", no_wrap=True)
        for name, amount in rows.items():
            table.add_row(Text(str(name)), format_usdc_exact(amount))
        table.add_section()
        table.add_row("total", format_usdc_exact(sum(rows.values())), style="bold")
        console.print(table)
    denials = s.get("denials") or {}
    if denials:
        table = Table(title="Denials by rule", title_justify="left")
        table.add_column("rule", overflow="fold")
        table.add_column("denied", justify="right")
        table.add_column("USDC", justify="right", no_wrap=True)
        for rule, row in denials.items():
            table.add_row(Text(str(rule)), str(row["denied"]), format_usdc_exact(row["amount"]))
        console.print(table)
    else:
        console.print("denials: none", highlight=False)
    console.print(f"approvals: {counts(s.get('approvals', {}))}", highlight=False, markup=False)
    freezes = s.get("freezes") or []
    if freezes:
        table = Table(title="Freezes", title_justify="left")
        for col in ("agent", "time (UTC)", "trigger", "reason", "now"):
            table.add_column(col, no_wrap=col == "time (UTC)", overflow="fold")
        for f, lifted in zip(freezes, _lifted(report.entries), strict=False):
            table.add_row(
                Text(str(f["agent"])),
                _utc(f["time"]),
                Text(str(f["trigger"])),
                Text(str(f["reason"])),
                "lifted" if lifted else "frozen",
            )
        console.print(table)
    else:
        console.print("freezes: none", highlight=False)
    console.print(f"unfreezes: {s.get('unfreezes', 0)}", highlight=False)


def _lifted(entries: list[dict]) -> list[bool]:
    """For each freeze entry in order, whether a later unfreeze of its agent lifted it (the fold the
    governor makes: an unfreeze lifts the agent's current freeze)."""
    lifted: list[bool] = []
    current: dict[str, int] = {}  # agent -> index in lifted of its freeze not yet lifted
    for e in entries:
        if e.get("event") == "freeze":
            current[e["agent"]] = len(lifted)
            lifted.append(False)
        elif e.get("event") == "unfreeze" and e.get("agent") in current:
            lifted[current.pop(e["agent"])] = True
    return lifted


def _utc(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@audit_app.command("unfreeze")
def audit_unfreeze(
    file: AuditFileArg,
    agent: Annotated[str, typer.Option("--agent", help="The frozen agent.", show_default=False)],
    by: Annotated[str, typer.Option("--by", help="Who lifts the freeze (recorded).", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Let a frozen agent pay again: append an 'unfreeze' entry to its audit log.

    The agent's last freeze must not be lifted yet; its trigger history starts afresh (its spend
    does not). The log is verified first and locked while the entry is appended.

    Exit code 0 when the entry was appended, 1 when the log is missing or broken or the agent is not
    frozen, 2 for bad usage.

    Example: x402sim audit unfreeze audit.jsonl --agent researcher --by alice --reason "checked the burst"
    """
    from .governance import AuditError, AuditLog, Governor, Policy

    if not file.is_file():
        raise _error(f"{file}: no such file", 1)
    with _audit_lock(file):
        try:
            log = AuditLog(file)
        except AuditError as exc:
            raise _error(str(exc), 1) from None
        try:
            # No rules: the fold only replays what the log says (freezes are entries, not re-judged).
            governor = Governor(Policy(name="audit"), audit=log)
        except (KeyError, TypeError, ValueError) as exc:
            raise _error(f"{file}: not a log of governance events ({exc!r})", 1) from None
        try:
            if agent not in governor.frozen:
                others = ", ".join(sorted(governor.frozen)) or "none"
                raise _error(f"agent {agent!r} is not frozen in {file} (frozen agents: {others})", 1)
            governor.unfreeze(agent, time.time(), by, reason)
        finally:
            governor.close()
    print(f"{file}: {agent} unfrozen by {by}; {log.count} entries, head {log.head}", flush=True)


# -- fuzz -----------------------------------------------------------------------------------------


@app.command()
def fuzz(
    inputs: Annotated[int, typer.Option(min=1, help="How many inputs to send.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of every input: same seed, same inputs.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once.")] = 8,
) -> None:
    """Fuzz served x402sim processes (127.0.0.1 only) and reconcile what they served on chain.

    Starts `x402sim serve` and a paywall proxy, and sends seeded hostile inputs to every endpoint.

    Checks: no 5xx, every refusal names its problem, both processes survive, payee balance = served.

    Exit code 0 when all holds, 1 when anything failed, 2 when the services could not start.

    Example: x402sim fuzz --inputs 20000 --seed 7
    """
    from .fuzz.campaign import CampaignError, report, run_campaign

    try:
        outcome = run_campaign(inputs, seed=seed, concurrency=concurrency, console=err)
    except CampaignError as exc:
        raise _fail(str(exc)) from None
    report(outcome, console)
    if not outcome.ok:
        raise typer.Exit(1)


# -- the simulator ----------------------------------------------------------------------------------

from .sim.cli import register as _register_sim  # noqa: E402

_register_sim(app)

# -- the conformance suite --------------------------------------------------------------------------

from .conformance.cli import register as _register_conformance  # noqa: E402

_register_conformance(app)
