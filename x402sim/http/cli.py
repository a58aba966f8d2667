"""The HTTP commands: ``x402sim serve`` (chain, facilitator, resource server as local services) and
``x402sim pay`` (a curl-like paying client).

Job: the commands' options and their wiring to ``x402sim.http.serve`` and ``x402sim.http.client``;
``pay`` is its option checks, the payer (networks, key, clock), an optional governor (policy file,
audit log, approvals), the request, and the output, each a small function below.

Rules: the services' wiring (``x402sim.http.serve``), the JSON-RPC chain client and the governance code
are imported inside the commands that use them. (Importing this module loads the ``x402sim.http``
package, whose ``__init__`` imports its apps, runner and clients.) Errors go through
``x402sim.cli_errors`` (exit 2 for bad input or services that cannot start, 1 for an HTTP error
answer, 3 for a payment denied by ``--policy``).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..cli_errors import EXIT_FAILED, EXIT_REFUSED, err, fail, fail_with, say
from ..evm.presets import DEFAULT_PRESET, PRESETS
from ..governance.cli import audit_lock
from ..money import UNIT, format_usdc_exact

# -- serve ----------------------------------------------------------------------------------------

serve_app = typer.Typer(
    name="serve",
    help="Run the chain, the facilitator and a resource server as local services (127.0.0.1).",
    no_args_is_help=False,
)
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
# Its members come from the presets at run time, so the type checker sees a str enum of unknown members.
if TYPE_CHECKING:

    class NetworkName(enum.StrEnum): ...

else:
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
    "SignProtocol",
    {
        "web-bot-auth": "web-bot-auth",
        "agent-browser-auth": "agent-browser-auth",
        "agent-payer-auth": "agent-payer-auth",
    },
    type=str,
)
SponsorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sponsor",
        metavar="EXTENSION[,EXTENSION]",
        help="Offer gas sponsoring for Permit2 payments, listed in /supported: eip2612GasSponsoring "
        "(the payer signs an EIP-2612 permit, settled with the payment) and/or erc20ApprovalGasSponsoring "
        "(the facilitator funds the payer's gas and relays its signed approve). Comma-separated or repeated.",
    ),
]
FromEnvOpt = Annotated[
    bool,
    typer.Option(
        "--from-env",
        help="Configure from the environment variables of the x402 e2e harness (listed in the docs); "
        "print 'Server listening on URL' / 'Facilitator listening on URL' when ready; POST /close stops.",
    ),
]


def urls_ok(allow_remote: bool, urls: dict[str, str | None]) -> None:
    """Refuse, with one message, any URL (by its option name) that leaves this machine, unless
    --allow-remote."""
    from .runner import ServiceError, check_loopback_url

    for what, url in urls.items():
        if url is not None:
            try:
                check_loopback_url(url, what, allow_remote=allow_remote)
            except ServiceError as exc:
                raise fail_with(exc) from None


def host_ok(host: str) -> bool:
    from .runner import is_loopback

    if not is_loopback(host):
        err.print(f"[yellow]warning:[/yellow] binding {host}: the services are reachable from other machines")
        return True
    return False


def run_until_signalled(start, *, ready: str | None = None) -> None:
    """Start services, print their JSON line, wait for Ctrl-C, SIGTERM or a POST /close (of services
    started with control), stop cleanly. With ``ready`` (``"Server listening on"``), stdout gets only
    that line and the service's URL, and the JSON line goes to stderr."""
    from ..errors import ChainError
    from .routes_file import RoutesFileError
    from .runner import ServiceError

    try:
        running = start()
    except (ServiceError, ChainError, RoutesFileError, ValueError) as exc:
        raise fail_with(exc) from None
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


def chain_setup(accounts: int, usdc: int, seed: int, block_time: float | None, network: str):
    from .serve import ChainSetup

    return ChainSetup(accounts=accounts, usdc=usdc * UNIT, seed=seed, block_time=block_time, network=network)


def _from_env(read, allow_remote: bool, urls: tuple[str, ...]):
    """The settings ``read`` (``server_env`` etc.) takes from the environment, after the URL variables
    ``urls`` passed the loopback rule (before anything is contacted); exit 2 naming the variable when
    one is missing or wrong."""
    import os

    from ..errors import ChainError
    from .serve import EnvError

    urls_ok(allow_remote, {name: os.environ.get(name, "").strip() or None for name in urls})
    try:
        return read(os.environ)
    except (EnvError, ChainError) as exc:
        raise fail_with(exc) from None


def sponsoring_option(sponsor: list[str] | None) -> frozenset[str]:
    """The ``--sponsor`` extensions; exit 2 naming an unknown one."""
    from .serve import sponsoring_extensions

    try:
        return sponsoring_extensions(sponsor or ())
    except ValueError as exc:
        raise fail(f"--sponsor: {exc}") from None


def routes_option(path: Path | None):
    from .routes_file import RoutesFileError, load_routes

    if path is None:
        return None
    try:
        return load_routes(path)
    except RoutesFileError as exc:
        raise fail_with(exc) from None


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
    sponsor: SponsorOpt = None,
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
    from .serve import serve_all

    public = host_ok(host)
    ports = {"chain": chain_port, "facilitator": facilitator_port, "server": server_port}
    if port is not None:
        ports = dict.fromkeys(ports, port)
        if port != 0:
            raise fail("--port other than 0 would give the three services one port; use --chain-port etc.")
    config = routes_option(routes)
    offered = sponsoring_option(sponsor)
    setup = chain_setup(accounts, usdc, seed, block_time, network.value)
    run_until_signalled(
        lambda: serve_all(
            setup, routes=config, host=host, ports=ports, allow_public=public, sponsoring=offered
        )
    )


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
    from .serve import serve_chain

    public = host_ok(host)
    setup = chain_setup(accounts, usdc, seed, block_time, network.value)
    run_until_signalled(lambda: serve_chain(setup, host=host, port=port, allow_public=public))


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
    sponsor: SponsorOpt = None,
) -> None:
    """Serve the reference facilitator (/verify, /settle, /supported, /health) for a chain by RPC URL.

    It settles exact (EIP-3009 and Permit2) and upto (Permit2); with --sponsor it also pays the gas
    of payers that have not approved Permit2 (the extensions are listed in /supported, and servers
    declare them in their 402s).

    With --from-env: PORT, EVM_RPC_URL, EVM_NETWORK (checked against the chain), and
    FACILITATOR_EVM_PRIVATE_KEY or EVM_PRIVATE_KEY.

    Examples:

      x402sim serve facilitator --rpc-url http://127.0.0.1:8545
      --sponsor eip2612GasSponsoring,erc20ApprovalGasSponsoring

      PORT=4022 EVM_RPC_URL=http://127.0.0.1:8545 EVM_NETWORK=eip155:84532 EVM_PRIVATE_KEY=0x...
      x402sim serve facilitator --from-env
    """
    from .serve import facilitator_env, serve_facilitator, serve_facilitator_env

    offered = sponsoring_option(sponsor)
    if from_env:
        env = _from_env(facilitator_env, allow_remote, ("EVM_RPC_URL",))
        public = host_ok(host)
        run_until_signalled(
            lambda: serve_facilitator_env(
                env, host=host, allow_public=public, settle_timeout=settle_timeout, sponsoring=offered
            ),
            ready="Facilitator listening on",
        )
        return
    urls_ok(allow_remote, {"--rpc-url": rpc_url})
    public = host_ok(host)
    key_bytes = _parse_key(key) if key else None
    run_until_signalled(
        lambda: serve_facilitator(
            rpc_url,
            key=key_bytes,
            host=host,
            port=port,
            allow_public=public,
            settle_timeout=settle_timeout,
            sponsoring=offered,
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
    facilitator_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds each facilitator call may take, its resend included; past it the buyer gets 502 "
            "(default 30, or FACILITATOR_TIMEOUT_SECONDS with --from-env). At startup the server waits up to "
            "this (at most 10 s) for the facilitator's /supported, and exits 2 without it."
        ),
    ] = None,
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
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            help="exact or upto: the scheme of the routes whose routes-file entry names none (upto: the "
            "price is the maximum, paid through Permit2).",
        ),
    ] = None,
    transfer_method: Annotated[
        str | None,
        typer.Option(
            "--transfer-method",
            help="eip3009 or permit2: how the exact routes that name none are paid.",
        ),
    ] = None,
    charge: Annotated[
        str | None,
        typer.Option(
            "--charge",
            help="What the upto routes that name none charge: atomic units, 'N%' of the maximum, '$D', "
            "or 'header' (the handler's or origin's Settlement-Overrides; the default).",
        ),
    ] = None,
    sign_responses: Annotated[
        bool,
        typer.Option(
            "--sign-responses",
            help="Sign answers carrying PAYMENT-REQUIRED or PAYMENT-RESPONSE (RFC 9421, the x402 "
            "http-message-signatures extension); the key is served at "
            "/.well-known/http-message-signatures-directory.",
        ),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="SQLite file of the batch-settlement channels (created if missing): every voucher is "
            "written there before it is served, and a restart on the same file claims them all. "
            "Without it, channels are kept in memory.",
        ),
    ] = None,
    channel_work_every: Annotated[
        float,
        typer.Option(
            "--channel-work-every",
            metavar="SECONDS",
            help="How often the batch-settlement claims and settlements that are due are sent (each "
            "route's claim_interval and settle_interval say when they are due).",
        ),
    ] = 5.0,
) -> None:
    """Serve priced routes (or a paywall proxy in front of --origin), settling through a facilitator.

    Routes are paid by exact (EIP-3009, or Permit2 with transfer_method = "permit2"), by upto
    (scheme = "upto": price is the maximum, charge says what is taken) or through payment channels
    (scheme = "batch-settlement": --state FILE keeps them across restarts); the server asks the
    facilitator's /supported at startup (its upto address, its receiver authorizer, the gas
    sponsoring it offers).

    With --from-env (instead of --facilitator-url and --routes): PORT, FACILITATOR_URL, EVM_NETWORK,
    SERVER_EVM_ADDRESS or EVM_PAYEE_ADDRESS, EVM_ASSET, EVM_ASSET_NAME, EVM_ASSET_VERSION (default: the
    network preset's USDC), PRICE_ATOMIC (1000), PROTECTED_PATH (/protected), EVM_RPC_URL (optional),
    FACILITATOR_TIMEOUT_SECONDS (30), EVM_PERMIT2_ASSET (optional: also the e2e Permit2/upto endpoints).

    Example: PORT=4021 FACILITATOR_URL=http://127.0.0.1:4022 EVM_NETWORK=eip155:84532
    EVM_PAYEE_ADDRESS=0x... x402sim serve server --from-env

    Pay per crawl in front of an origin, one agent free (its keyid is printed by x402sim serve chain):

      x402sim serve server --facilitator-url http://127.0.0.1:4022 --routes routes.toml
      --rpc-url http://127.0.0.1:8545 --origin http://127.0.0.1:8000 --crawl-policy --crawl-allow KEYID
    """
    from ..errors import ChainError
    from .client import DEFAULT_TIMEOUT
    from .serve import serve_server, serve_server_env, server_env

    if not crawl_policy and (crawl_allow or crawl_charge_unsigned):
        raise fail("--crawl-allow and --crawl-charge-unsigned need --crawl-policy")
    if not (math.isfinite(channel_work_every) and channel_work_every > 0):
        raise fail(f"--channel-work-every {channel_work_every}: expected a positive number of seconds")
    bound = facilitator_timeout
    if bound is not None and not (math.isfinite(bound) and bound > 0):
        raise fail(f"--facilitator-timeout {facilitator_timeout}: expected a positive number of seconds")
    if from_env:
        if routes is not None or origin is not None or rpc_url is not None or facilitator_url is not None:
            raise fail("--from-env reads its settings from the environment; drop the other options")
        if scheme or transfer_method or charge:
            raise fail(
                "--from-env serves the e2e contract's routes; drop --scheme, --transfer-method, --charge"
            )
        if crawl_policy or sign_responses:
            raise fail("--from-env serves the e2e contract; drop --crawl-policy and --sign-responses")
        env = _from_env(server_env, allow_remote, ("FACILITATOR_URL", "EVM_RPC_URL"))
        public = host_ok(host)
        run_until_signalled(
            lambda: serve_server_env(
                env, host=host, allow_public=public, facilitator_timeout=facilitator_timeout
            ),
            ready="Server listening on",
        )
        return
    for option, value in (("--facilitator-url", facilitator_url), ("--routes", routes)):
        if value is None:
            raise fail(f"missing option {option} (or use --from-env)")
    assert facilitator_url is not None  # checked just above
    urls_ok(allow_remote, {"--facilitator-url": facilitator_url, "--rpc-url": rpc_url, "--origin": origin})
    public = host_ok(host)
    config = _mechanisms(routes_option(routes), scheme, transfer_method, charge)
    if rpc_url:
        try:
            _fill_from_chain(config, rpc_url)
        except ChainError as exc:
            raise fail_with(exc) from None
    run_until_signalled(
        lambda: serve_server(
            config,
            facilitator_url,
            origin=origin,
            host=host,
            port=port,
            allow_public=public,
            facilitator_timeout=DEFAULT_TIMEOUT if facilitator_timeout is None else facilitator_timeout,
            crawl=crawl_policy,
            crawl_allow=tuple(crawl_allow or ()),
            crawl_block_unsigned=not crawl_charge_unsigned,
            allow_remote_directories=allow_remote,
            sign_responses=sign_responses,
            state=state,
            channel_work_every=channel_work_every,
        )
    )


def _mechanisms(config, scheme: str | None, transfer_method: str | None, charge: str | None):
    """``config`` with the ``--scheme/--transfer-method/--charge`` defaults; exit 2 naming a bad one."""
    from .routes_file import RoutesFileError, with_defaults

    value: str | int | None = int(charge) if charge is not None and charge.isdigit() else charge
    try:
        return with_defaults(config, scheme=scheme, transfer_method=transfer_method, charge=value)
    except RoutesFileError as exc:
        raise fail_with(exc) from None


def _fill_from_chain(config, rpc_url: str) -> None:
    from ..evm.rpc_chain import RpcChain

    info = RpcChain(rpc_url).rpc("x402sim_info")
    config.network = config.network or info["network"]
    config.asset = config.asset or info["token"]
    config.asset_name = config.asset_name or info["tokenName"]
    config.asset_version = config.asset_version or info["tokenVersion"]


def _parse_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key.removeprefix("0x"))
    except ValueError:
        raise fail("--key: not hex") from None
    if len(raw) != 32:
        raise fail(f"--key: a private key is 32 bytes, got {len(raw)}")
    return raw


# -- pay ------------------------------------------------------------------------------------------

# How ``pay --<transport>`` sends, by transport (``a2a``, ``mcp``): filled by the transports' command
# modules when the root command line registers them (x402sim.transports imports this package, never
# the reverse). A sender takes (key, client options, governance, audit, approve, what was asked) and
# returns the result and the governor (or None).
PAY_OVER: dict[str, Callable] = {}


def _pay_over(transport: str) -> Callable:
    try:
        return PAY_OVER[transport]
    except KeyError:
        raise fail(f"pay --{transport}: not available in this command line") from None


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
            help="Configure from the x402 e2e harness's environment variables (listed in the docs) and print "
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
    approve_permit2: Annotated[
        bool,
        typer.Option(
            "--approve-permit2",
            help="First approve Permit2 to spend the token of the x402sim chain at --rpc-url (an approve "
            "transaction from the paying wallet, which pays its gas), unless it is approved already; "
            "Permit2 and upto offers can then be paid without gas sponsoring.",
        ),
    ] = False,
    channel_state: Annotated[
        Path | None,
        typer.Option(
            "--channel-state",
            help="SQLite file keeping this payer's batch-settlement channels (created if absent): the next "
            "pay tops up the same channel instead of opening another. Default: in memory (with --rpc-url a "
            "channel is still found again on chain).",
        ),
    ] = None,
    refund: Annotated[
        bool,
        typer.Option(
            "--refund",
            help="Instead of paying: ask the server of URL for the unclaimed escrow of this payer's "
            "batch-settlement channel with it (a zero-charge voucher).",
        ),
    ] = False,
    refund_amount: Annotated[
        int | None,
        typer.Option("--refund-amount", min=1, help="With --refund: how much (atomic units; default all)."),
    ] = None,
    deposit: Annotated[
        int | None,
        typer.Option(
            "--deposit",
            min=1,
            help="batch-settlement: atomic units per deposit (default five prices; never below the "
            "server's minDeposit, the price, or what the voucher needs).",
        ),
    ] = None,
    top_up_below: Annotated[
        int,
        typer.Option(
            "--top-up-below",
            min=0,
            help="batch-settlement: top up when less than this would remain in the channel after the "
            "request (default 0: only when the balance does not cover it).",
        ),
    ] = 0,
    a2a: Annotated[
        str | None,
        typer.Option(
            "--a2a",
            metavar="AGENT_URL",
            help="Instead of URL: send --message to the A2A agent at AGENT_URL (its card at "
            "/.well-known/agent-card.json) and pay once when its task asks for payment; prints the "
            "final task.",
        ),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", help="With --a2a: the text of the message.")
    ] = None,
    skill: Annotated[
        str | None,
        typer.Option("--skill", help="With --a2a: the skill asked for (default: the agent's first)."),
    ] = None,
    discover: Annotated[
        str | None,
        typer.Option(
            "--discover",
            help="Instead of URL: search the facilitator's Bazaar (--facilitator-url) for QUERY and pay the "
            "best service found, an HTTP endpoint or an MCP tool served over streamable HTTP (--choose-by; "
            "--max-price and the payer's networks filter; the reputation rules read ERC-8004 feedback on "
            "the chain at --rpc-url). A tool is called with --args, else its listing's example.",
        ),
    ] = None,
    facilitator_url: Annotated[
        str,
        typer.Option("--facilitator-url", help="With --discover: the facilitator whose Bazaar is searched."),
    ] = "http://127.0.0.1:4022",
    choose_by: Annotated[
        str, typer.Option("--choose-by", help="With --discover: cheapest, reputation, value or first.")
    ] = "cheapest",
    mcp: Annotated[
        str | None,
        typer.Option(
            "--mcp",
            metavar="TARGET",
            help="Call a paid MCP tool instead: TARGET is the MCP endpoint URL (streamable HTTP, e.g. "
            "http://127.0.0.1:4023/mcp) or a command line serving MCP on stdio; the argument is the TOOL. "
            "Prints the tool's result (JSON); the settlement goes to stderr.",
        ),
    ] = None,
    args: Annotated[
        str | None,
        typer.Option(
            "--args",
            metavar="JSON",
            help="With --mcp, or --discover finding a tool: the tool's arguments, a JSON object.",
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

    Permit2 and upto offers are paid like exact ones. With --rpc-url the client reads its Permit2
    allowance there and, when it is short, signs the gas-sponsoring extension the 402 declares
    (EIP-2612 first); --approve-permit2 approves Permit2 on chain instead. For upto the charge (the
    settlement's amount) is printed on stderr.

    A batch-settlement offer is paid through this payer's channel with the server: a deposit when the
    channel's balance is short (--deposit, --top-up-below), else the next cumulative voucher; the
    channel's life (deposits with their transaction, each voucher's cumulative amount, the balance,
    refunds) is printed on stderr. --channel-state FILE keeps the channels between invocations;
    --refund asks for the unclaimed escrow back.

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

      x402sim pay --discover "weather forecast" --facilitator-url http://127.0.0.1:4022 --max-price 5000

      x402sim pay http://127.0.0.1:4021/weather --key 0x... --network eip155:31337

      x402sim pay http://127.0.0.1:4021/weather --policy examples/policy.toml --audit audit.jsonl

      x402sim pay http://127.0.0.1:4021/weather --rpc-url http://127.0.0.1:8545 --sign web-bot-auth

      x402sim pay http://127.0.0.1:4021/llm --rpc-url http://127.0.0.1:8545 --approve-permit2

      x402sim pay http://127.0.0.1:4021/weather --policy team.toml --policy-name strict --agent researcher
      --audit audit.jsonl --approve

      x402sim pay http://127.0.0.1:4021/stream --rpc-url http://127.0.0.1:8545 --channel-state agent.sqlite

      x402sim pay http://127.0.0.1:4021/stream --rpc-url http://127.0.0.1:8545 --channel-state agent.sqlite
      --refund

      RESOURCE_SERVER_URL=http://127.0.0.1:4021 ENDPOINT_PATH=/protected EVM_NETWORK=eip155:84532
      EVM_PRIVATE_KEY=0x... x402sim pay --from-env

      x402sim pay --mcp http://127.0.0.1:4023/mcp weather --args '{"city": "Oslo"}' -v

      x402sim pay --discover "weather tool" --facilitator-url http://127.0.0.1:4022 --args '{"city": "Oslo"}'
    """
    from ..actors.client import SpendPolicy

    if a2a is not None or message is not None or skill is not None:
        _pay_a2a_checks(a2a, message, url, from_env, refund)
    arguments = None
    if discover is not None and mcp is None:
        arguments = None if args is None else _tool_arguments(args)
    elif mcp is not None or args is not None:
        given = locals()
        arguments = _pay_mcp_checks(mcp, url, args, [o for k, o in HTTP_ONLY.items() if given[k]])

    if from_env:
        _check_from_env_options(url, key, rpc_url, network, max_price, policy_file, sign)
        if approve_permit2:
            raise fail("--from-env pays as the e2e harness's clients do; drop --approve-permit2")
        if channel_state is not None or refund:
            raise fail("--from-env pays as the e2e harness's clients do; drop --channel-state and --refund")
    elif discover is not None:
        if url is not None or a2a is not None:
            raise fail("give URL, --a2a or --discover QUERY, not two of them")
    elif url is None and a2a is None:
        raise fail("missing argument URL (or use --from-env, --discover QUERY or --a2a AGENT_URL)")
    if refund_amount is not None and not refund:
        raise fail("--refund-amount needs --refund")
    governance = _load_governance(policy_file, policy_name, agent, audit, approve)
    if key is None and rpc_url is None and not from_env:
        rpc_url = DEFAULT_RPC_URL
    mcp_url = mcp if mcp is not None and mcp.startswith(("http://", "https://")) else None
    urls_ok(allow_remote, {"URL": None if mcp else url, "--a2a": a2a, "--mcp": mcp_url, "--rpc-url": rpc_url})
    headers = _parse_headers(header or [])
    body = (data or "").encode()
    if from_env:
        _pay_from_env(method, headers, body, allow_remote)
        return
    if approve_permit2 and rpc_url is None:
        raise fail("--approve-permit2 needs --rpc-url (the chain to send the approval to)")
    networks, key, clock = _payer(rpc_url, key, network)
    if discover is not None:
        best = _discovered(discover, facilitator_url, choose_by, networks, max_price, allow_remote, rpc_url)
        if best.tool is not None:  # an MCP tool: called over streamable HTTP at its listed URL
            mcp, url = best.resource, best.tool
            arguments = arguments if arguments is not None else dict(best.example or {})
        elif arguments is not None:
            raise fail(
                f"--args is for an MCP tool; the best service found is {best.method or 'GET'} {best.resource}"
            )
        else:
            url, method = best.resource, best.method or "GET"
    key_bytes = _parse_key(key)
    signer = _agent_signer(sign, key_bytes, signature_agent, rpc_url)
    with _chain_reads(rpc_url) as chain, _channel_store(channel_state) as store:
        if approve_permit2:
            assert chain is not None  # rpc_url is set
            _approve_permit2(chain, key_bytes)
        client_options = {
            "networks": networks,
            "policy": SpendPolicy(max_price=max_price),
            "clock": clock,
            "agent": agent,
            "signer": signer,
            "chain": chain,
            "channel_store": store,
            "deposit_policy": _deposit_policy(deposit, top_up_below),
        }
        if a2a is not None:
            result, governor = _pay_over("a2a")(
                key_bytes, client_options, governance, audit, approve, (a2a, message, skill)
            )
        elif mcp is not None:
            result, governor = _pay_over("mcp")(
                key_bytes, client_options, governance, audit, approve, (mcp, url, arguments)
            )
        else:
            result, governor = _governed_request(
                key_bytes,
                client_options,
                governance,
                audit,
                approve,
                (method, url, headers, body),
                refund=(refund, refund_amount),
            )
        if verbose:
            _show_payment(result)
            if governor is not None:
                _show_governance(result, governor, audit)
        _show_charge(result)
        _show_channel(result, store)
    _write_body(result.body)
    _exit_for_result(result, approve)


def _discovered(
    query: str,
    facilitator_url: str,
    rule: str,
    networks,
    max_price: int | None,
    allow_remote: bool,
    rpc_url: str | None,
):
    """The best service (a ``Candidate``) the facilitator's Bazaar lists for ``query``: an HTTP
    endpoint, or an MCP tool served over streamable HTTP (a tool listed at an ``mcp://`` resource,
    in process or on stdio, cannot be reached from here and is left out); ranked by ``rule``, the
    reputation rules reading ERC-8004 on the chain at ``rpc_url``. What was chosen and why goes to
    stderr."""
    from .discovery import DiscoveryError, discover

    urls_ok(allow_remote, {"--facilitator-url": facilitator_url})
    try:
        with _chain_reads(rpc_url if rule in ("reputation", "value") else None) as chain:
            found = discover(
                facilitator_url,
                query,
                rule=rule,
                max_price=max_price,
                networks=networks,
                chain=chain,
                allowed=lambda c: c.tool is None or c.resource.startswith(("http://", "https://")),
            )
    except (DiscoveryError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not found:
        limits = [f"payable on {', '.join(networks)}"]
        if max_price is not None:
            limits.append(f"at most {max_price} atomic units")
        raise fail(f"no service found for {query!r} at {facilitator_url} ({', '.join(limits)})", EXIT_FAILED)
    best = found[0]
    urls_ok(allow_remote, {"the discovered URL": best.resource})
    what = (
        f"MCP tool {best.tool} at {best.resource}"
        if best.tool is not None
        else f"{best.method or 'GET'} {best.resource}"
    )
    say(
        f"discovered {len(found)} service(s) for {query!r}; chose {what} "
        f"by {rule}: price {best.price}, mechanisms {', '.join(best.mechanisms)}"
        + (f", reputation {best.reputation:.2f}" if best.reputation is not None else "")
    )
    return best


@contextlib.contextmanager
def _channel_store(path: Path | None):
    """The payer's batch-settlement channel store: the SQLite file at ``path`` (exit 2 when it is not
    one), else in memory; closed after."""
    from ..actors.client_channels import ChannelStore

    try:
        store = ChannelStore(path)
    except (ValueError, OSError) as exc:
        raise fail(f"--channel-state {path}: {exc}") from None
    try:
        yield store
    finally:
        store.close()


def _deposit_policy(deposit: int | None, top_up_below: int):
    from ..actors.client_channels import DepositPolicy

    return DepositPolicy(size=deposit, top_up_below=top_up_below)


def _show_channel(result, store) -> None:
    """For a batch-settlement payment or refund: the channel's life, from the store (stderr)."""
    payment = result.payment
    accepted = getattr(payment, "accepted", None)
    if accepted is None or accepted.scheme != "batch-settlement":
        if result.channel_problem:
            say(f"channel: {result.channel_problem}")
        return
    voucher = payment.payload.get("voucher") or {}
    try:
        channel = bytes.fromhex(str(voucher.get("channelId", ""))[2:])
    except ValueError:
        return
    record = store.by_id(channel)
    if record is None:
        return
    config = record.config
    say(
        f"channel 0x{channel.hex()}: payer {config.payer}, receiver {config.receiver}, token {config.token}, "
        f"withdraw delay {config.withdraw_delay} s"
    )
    for event in store.life(channel):
        say(f"  {event.describe()}")
    tail = f"; stopped: {record.stopped}" if record.stopped else ""
    say(
        f"  now: balance {record.balance}, charged {record.charged}, available {record.available}, "
        f"deposited {record.deposited}, refunded {record.refunded}{tail}"
    )
    if result.channel_problem:
        say(f"channel: {result.channel_problem}")


@contextlib.contextmanager
def _chain_reads(rpc_url: str | None):
    """The chain at ``rpc_url`` for the client's Permit2 reads (None without a URL), closed after."""
    if rpc_url is None:
        yield None
        return
    from ..evm.rpc_chain import RpcChain

    chain = RpcChain(rpc_url, timeout=10)
    try:
        yield chain
    finally:
        chain.close()


APPROVAL_WAIT_SECONDS = 30.0


def _approve_permit2(chain, key: bytes) -> None:
    """``pay --approve-permit2``: the wallet of ``key`` approves Permit2 for the token of the x402sim
    chain ``chain`` (MaxUint, as the SDKs' approval helpers do), paying the gas itself, and waits for
    the receipt; nothing is sent when the allowance is already past half of that (a token may spend
    from even a MaxUint allowance). Exit 2 when it fails."""
    from ..errors import ChainError
    from ..evm.eip712 import address_of_key
    from ..evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, allowance, approve_call
    from ..evm.txsign import GWEI, sign_eip1559
    from ..mechanisms.sponsoring import APPROVAL_GAS

    owner = address_of_key(key)
    try:
        info = chain.rpc("x402sim_info")
        token = info["token"]
        if allowance(chain, token, owner, PERMIT2_ADDRESS) > UINT256_MAX // 2:
            say(f"Permit2 is already approved for {token} by {owner}")
            return
        signed = sign_eip1559(
            key,
            chain_id=chain.chain_id,
            nonce=chain.pending_nonce(owner),
            gas=APPROVAL_GAS,
            max_fee_per_gas=2 * chain.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=token,
            data=approve_call(PERMIT2_ADDRESS, UINT256_MAX),
        )
        tx_hash = chain.send_raw_transaction(signed.raw)
        deadline = time.monotonic() + APPROVAL_WAIT_SECONDS
        while (receipt := chain.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise ChainError(f"approval 0x{tx_hash.hex()} not mined within {APPROVAL_WAIT_SECONDS} s")
            time.sleep(0.1)  # waiting on a chain's block
    except (ChainError, KeyError, TypeError) as exc:
        raise fail(f"--approve-permit2: {exc}") from None
    if not receipt.success:
        raise fail(f"--approve-permit2: approval 0x{tx_hash.hex()} reverted")
    say(f"approved Permit2 for {token} by {owner}: 0x{tx_hash.hex()}")


def _show_charge(result) -> None:
    """For an upto payment: what the settlement charged, of the maximum signed (stderr)."""
    settlement, payment = result.settlement, result.payment
    if settlement is None or not settlement.success or settlement.amount is None:
        return
    accepted = getattr(payment, "accepted", None)
    if accepted is not None and accepted.scheme == "upto":
        say(f"charged {settlement.amount} of at most {accepted.amount} (upto)")


def _check_from_env_options(url, key, rpc_url, network, max_price, policy_file, sign) -> None:
    """Refuse (exit 2) the options ``pay --from-env`` takes from the environment or does not support."""
    if any(v is not None for v in (url, key, rpc_url, network, max_price)):
        raise fail("--from-env reads URL, key, network and price cap from the environment; drop them")
    if policy_file is not None:
        raise fail("--from-env pays without a governor; drop --policy")
    if sign is not None:
        raise fail("--from-env does not sign requests; drop --sign")


def _parse_headers(header: list[str]) -> list[tuple[str, str]]:
    """The ``--header 'Name: value'`` options as (name, value) pairs; exit 2 on a malformed one."""
    headers = []
    for h in header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise fail(f"--header {h!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    return headers


def _payer(rpc_url: str | None, key: str | None, network: list[str] | None):
    """The networks ``pay`` may pay on, the paying key (the chain's first funded account without
    --key) and the clock it signs with (the chain's, with --rpc-url); exit 2 on a bad combination."""
    from ..actors.client import check_networks
    from ..errors import ChainError

    if rpc_url is not None:
        try:
            chain_network, offset, first_key = _chain_facts(rpc_url, need_key=key is None)
        except ChainError as exc:
            raise fail(f"--rpc-url {rpc_url}: {exc}") from None
        stray = [n for n in network or [] if n != chain_network]
        if stray:
            raise fail(f"--network {stray[0]} is not the network of --rpc-url {rpc_url} ({chain_network})")
        return (chain_network,), key or first_key, lambda: time.time() + offset  # the chain's clock
    if not network:
        raise fail("say which network to pay on: --rpc-url URL or --network eip155:<chain id>")
    try:
        return check_networks(network), key, time.time
    except ValueError as exc:
        raise fail(f"--network: {exc}") from None


def _governed_request(
    key: bytes,
    client_options: dict,
    governance,
    audit: Path | None,
    approve: bool,
    request,
    refund: tuple[bool, int | None] = (False, None),
):
    """Send ``request`` (method, url, headers, body) with a paying client, under a governor when
    ``governance`` is set (the audit file locked meanwhile); or, with ``refund`` (wanted, amount), ask
    for the batch-settlement escrow back instead. The result and the governor (or None)."""
    import httpx

    from .client import PayingClient

    method, url, headers, body = request
    governor = None
    try:
        with contextlib.ExitStack() as stack:
            if governance is not None:
                stack.enter_context(audit_lock(audit))
                governor = open_governor(governance, audit, approver(approve))
                stack.callback(governor.close)
            client = stack.enter_context(PayingClient(key, governor=governor, **client_options))
            if refund[0]:
                result = client.refund(url, refund[1], method=method, headers=headers)
            else:
                result = client.request(method, url, headers=headers, content=body)
    except httpx.HTTPError as exc:
        raise fail(f"{url}: {exc.__class__.__name__}: {exc}") from None
    return result, governor


def _write_body(body: bytes) -> None:
    """The response body on stdout, ending with a newline."""
    sys.stdout.buffer.write(body)
    if body and not body.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def _exit_for_result(result, approve: bool) -> None:
    """Exit 3 for a payment the policy denied (one line on stderr), 1 for an HTTP error answer (saying
    why a payment was refused, if it was), else return (exit 0)."""
    if result.decision is not None and not result.decision.allowed:
        hint = _approval_hint(result.decision, approve)
        say(f"payment denied by policy: {result.decision.explain()}{hint}")
        raise typer.Exit(EXIT_REFUSED)
    if result.refused:
        err.print(f"payment refused: {result.refused}")
    if result.status >= 400:
        raise typer.Exit(EXIT_FAILED)


def _agent_signer(sign, key: bytes, signature_agent: str | None, rpc_url: str | None):
    """The RFC 9421 signer for ``pay --sign``: the account's agent key, pointing at its directory."""
    if sign is None:
        if signature_agent is not None:
            raise fail("--signature-agent needs --sign")
        return None
    from ..trust.signatures import WEB_BOT_AUTH, AgentSigner
    from .serve import account_agent_key, origin_of

    agent_url = signature_agent or (origin_of(rpc_url) if rpc_url else None)
    if agent_url is None and sign.value == WEB_BOT_AUTH:
        raise fail("--sign web-bot-auth needs the agent's key directory: --rpc-url or --signature-agent URL")
    try:
        return AgentSigner(account_agent_key(key), protocol=sign.value, signature_agent=agent_url)
    except ValueError as exc:
        raise fail(f"--signature-agent: {exc}") from None


# Governance for `pay`: the policy is read before anything else (a bad one writes nothing), the audit
# file is locked for the whole invocation (concurrent `pay`s sharing it take turns, so two cannot both
# pass a limit only one fits, and its chain stays one chain), and the governor resumes from it.


def _load_governance(policy_file: Path | None, policy_name, agent, audit, approve: bool):
    """The policy file and the chosen policy of ``pay --policy`` (None without --policy); exit 2 naming
    the file, key path and problem of a bad one, or the policies of a file when the name is wrong."""
    from ..governance import PolicyError, load_policies

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
            raise fail(f"{stray[0]} needs --policy FILE (the policy a governor enforces)")
        return None
    try:
        policies = load_policies(policy_file)
    except PolicyError as exc:
        raise fail(str(exc)) from None
    try:
        chosen = policies.policy(policy_name)
    except KeyError as exc:
        raise fail(f"--policy-name: {policy_file}: {exc.args[0]}") from None
    return policies, chosen


def open_governor(governance, audit: Path | None, approver):
    """A governor enforcing the chosen policy, resumed from the audit file (exit 2 when it is broken)."""
    from ..governance import AuditError, AuditLog, Governor

    policies, chosen = governance
    log = None
    if audit is not None:
        try:
            log = AuditLog(audit)
        except AuditError as exc:
            raise fail(f"--audit {exc} (x402sim audit verify {audit} says more)") from None
    try:
        return Governor(chosen, projects=policies.projects, audit=log, approver=approver)
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"--audit {audit}: not a log of governance events ({exc!r})") from None


def _interactive() -> bool:
    """Whether a person can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def approver(approve: bool):
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
        except typer.Abort:  # Ctrl-C or end of input: refused, and logged as refused
            return False

    return ask


def _approval_hint(decision, approve: bool) -> str:
    if decision.reason == "refused by no approver" and not approve:
        return " (pass --approve, or run on a terminal to be asked)"
    return ""


def _show_governance(result, governor, audit: Path | None) -> None:
    if result.decision is not None:
        d = result.decision
        say(f"governance: {d.verdict}" + (f" ({d.explain()})" if d.explain() else ""))
    if audit is not None:
        say(f"audit: {audit}, {governor.audit.count} entries, head {governor.head}")


def _pay_from_env(method: str, headers: list[tuple[str, str]], body: bytes, allow_remote: bool) -> None:
    """``pay --from-env``: one request paid on EVM_NETWORK only, one JSON verdict line on stdout, exit 0
    for a 2xx answer and 1 otherwise (2 for a missing or wrong variable)."""
    import httpx

    from ..actors.client import SpendPolicy
    from ..errors import ChainError
    from .client import PayingClient
    from .serve import EnvError, check_rpc_network, client_env, client_verdict

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
            raise fail_with(exc) from None
        clock = lambda: time.time() + offset  # noqa: E731 - sign with the chain's clock
    policy = SpendPolicy(max_price=env.max_amount)
    try:
        with (
            _chain_reads(env.rpc_url) as chain,
            PayingClient(env.key, networks=(env.network,), policy=policy, clock=clock, chain=chain) as client,
        ):
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
    from ..errors import ChainError
    from ..evm.rpc_chain import RpcChain

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


def _pay_a2a_checks(agent_url, message, url, from_env: bool, refund: bool) -> None:
    """``pay --a2a``'s options: --a2a with --message (and maybe --skill), without URL or --refund."""
    if agent_url is None:
        raise fail("--message and --skill need --a2a AGENT_URL")
    if message is None:
        raise fail("--a2a needs --message TEXT (what to ask the agent)")
    if url is not None or from_env:
        raise fail("--a2a replaces URL and --from-env: give one of them")
    if refund:
        raise fail("--a2a pays a message; --refund is for URL")


# pay's options that only an HTTP request takes (not --mcp's tool call)
HTTP_ONLY = {
    "data": "--data",
    "header": "--header",
    "from_env": "--from-env",
    "sign": "--sign",
    "refund": "--refund",
    "a2a": "--a2a",
    "discover": "--discover",
}


def _pay_mcp_checks(target: str | None, tool: str | None, args: str | None, stray: list[str]) -> dict:
    """``pay --mcp TARGET TOOL --args JSON``'s options, checked before anything is contacted; the
    tool's arguments (a JSON object)."""
    if target is None:
        raise fail("--args needs --mcp TARGET (the tool's arguments)")
    if stray:
        raise fail(f"{stray[0]} is not for a tool call; drop it with --mcp")
    if not target.strip():
        raise fail("--mcp: give the MCP endpoint's URL or a command line serving MCP on stdio")
    if tool is None:
        raise fail("missing argument TOOL: pay --mcp TARGET TOOL --args JSON")
    if args is None:
        return {}
    return _tool_arguments(args)


def _tool_arguments(args: str) -> dict:
    """``--args``: a JSON object (exit 2 otherwise)."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise fail(f"--args: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"--args: expected a JSON object of the tool's arguments, got {type(value).__name__}")
    return value


def register(app: typer.Typer) -> None:
    app.command("pay")(pay)
    app.add_typer(serve_app)
