"""``x402sim conformance``: judge a server, facilitator or client; list the catalog; combine and diff runs.

Exit codes of a run: 1 when some MUST case failed (even if other cases could not be judged); else 2
when some case could not be judged, or no verdict was possible at all (the harness or the target
could not run, a declared route is not mounted, an input file is bad: one message naming it, and no
report file is half-written); else 0. SHOULD and STRICT failures never change it. ``diff`` exits 1 on
a regression and 0 otherwise (a level change alone included); 2 for a bad report file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import err, fail, fail_with
from .results import LEVELS, Role, report_schema

# The harness (chain, HTTP services) and the catalog are imported by the commands that use them, so
# that `x402sim --help` and the other command groups do not pay for them.

app = typer.Typer(
    name="conformance",
    help="Test an x402 server, facilitator or client against the embedded chain, judged on chain.\n\n"
    "server, facilitator and client exit 1 when a MUST case failed (even if other cases could not be "
    "judged); else 2 when a case could not be judged, or nothing could run (the target did not start, "
    "a declared route is not mounted, bad input); else 0. SHOULD and STRICT failures never change it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
out = Console()
NETWORKS = ("local", "base-sepolia", "base")


CmdOpt = Annotated[str | None, typer.Option("--cmd", help="Shell command that starts the target.")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="URL of a target already running (loopback).")]
CasesOpt = Annotated[
    list[str] | None, typer.Option("--cases", help="Only cases matching this glob (repeatable).")
]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Skip cases matching this glob.")]
LevelOpt = Annotated[list[str] | None, typer.Option("--level", help="Only cases of this level (MUST...).")]
NetworkOpt = Annotated[str, typer.Option(help="Chain preset: local, base-sepolia or base.")]
MechanismOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--mechanism",
        help="Only cases of this payment mechanism: exact-eip3009, exact-permit2, upto or "
        "batch-settlement (repeatable, or a comma list). Default: what the target speaks: its --config "
        "(transferMethod, schemes), all of them for --builtin, else exact-eip3009.",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        help="test.config.json (official format): its schemes and evm.transferMethods choose the cases."
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the harness's keys and nonces.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")]
MarkdownOpt = Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")]
SarifOpt = Annotated[
    Path | None, typer.Option("--sarif", help="Write a SARIF 2.1.0 log here (failed cases as results).")
]
ReadyOpt = Annotated[float, typer.Option(help="Seconds a started target has to become ready.")]
CaseTimeoutOpt = Annotated[float, typer.Option(help="Seconds one case may take.")]
CwdOpt = Annotated[Path | None, typer.Option(help="Working directory of the command.")]
NameOpt = Annotated[str | None, typer.Option(help="Name of the target in reports.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Print only the summary line.")]
TrustOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trust",
        help="A trust feature the target implements: erc8004 (client), ap2 or web-bot-auth (server), or "
        "all; repeatable. Its trust cases run (see `x402sim conformance trust-material`); the others skip.",
    ),
]
BuiltinOpt = Annotated[
    str | None,
    typer.Option(
        "--builtin",
        help="Judge x402sim's own role in process instead of --cmd/--url: reference, or reference-trust "
        "(AP2 mandates and Web Bot Auth enforced; a client that reads ERC-8004).",
    ),
]
BUILTINS = ("reference", "reference-trust")
TransportOpt = Annotated[
    str | None,
    typer.Option(
        "--transport",
        help="What carries the harness's calls: http, mcp (a server target is an MCP tool server, "
        "each paid route a tool named by its path without the slash) or a2a (a server target is an "
        "A2A agent, each paid route a skill); the cases that only make sense for HTTP are reported "
        "skipped with their reason. Default: the --config's transport, else http.",
    ),
]
McpWireOpt = Annotated[
    str,
    typer.Option(
        "--mcp-wire",
        help="How an MCP --cmd speaks: http (streamable HTTP at /mcp of PORT), sse (the SSE transport at "
        "/sse of PORT, as the official e2e MCP servers) or stdio.",
    ),
]


def _builtin(role: Role, builtin: str):
    """x402sim's own ``role`` (``--builtin``), served in process."""
    from .reference import reference_target

    if builtin not in BUILTINS or (builtin == "reference-trust" and role == "facilitator"):
        known = ("reference",) if role == "facilitator" else BUILTINS
        raise fail(f"--builtin {builtin!r}: expected {' or '.join(known)}")
    return reference_target(role, trust=builtin == "reference-trust")


def _trust(names) -> frozenset[str]:
    from .trust import features

    try:
        return features(names or ())
    except ValueError as exc:
        raise fail(f"--trust: {exc}") from None


def _service_target(
    role: Role,
    cmd: str | None,
    url: str | None,
    cwd,
    ready_timeout: float,
    name,
    builtin: str | None = None,
    transport: str = "http",
    wire: str = "http",
):
    """The server or facilitator target named by exactly one of ``--cmd``, ``--url`` and ``--builtin``
    (an MCP one when ``transport`` is mcp, its command speaking ``wire``)."""
    from ..http.runner import ServiceError, check_loopback_url
    from .targets import ServiceCommand, ServiceUrl

    if sum(map(bool, (cmd, url, builtin))) != 1:
        raise fail(f"conformance {role}: give exactly one of --cmd, --url or --builtin")
    if transport == "mcp" and role == "server":
        return _mcp_target(cmd, url, cwd, ready_timeout, name, builtin, wire)
    if transport == "a2a" and role == "server":
        return _a2a_target(cmd, url, cwd, ready_timeout, name, builtin)
    if builtin:
        return _builtin(role, builtin)
    if cmd:
        return ServiceCommand(
            role, cmd, cwd=str(cwd) if cwd else None, ready_timeout=ready_timeout, name=name
        )
    assert url is not None  # exactly one of the three is given, and it is not cmd or builtin
    try:
        check_loopback_url(url, "--url")
    except ServiceError as exc:
        raise fail_with(exc) from None
    return ServiceUrl(role, url, name=name)


def _mcp_target(cmd, url, cwd, ready_timeout: float, name, builtin, wire: str):
    """A server target over MCP: the reference tool server, a command (``wire``: http or stdio) or the
    URL of a streamable HTTP endpoint."""
    from ..http.runner import ServiceError, check_loopback_url

    try:
        from .mcp_kit import McpHttpCommand, McpService, McpStdioCommand, McpUrl, reference_tools
    except ModuleNotFoundError as exc:  # the agents extra is not installed: its advice says so
        raise fail(str(exc)) from None
    if builtin:
        if builtin != "reference":
            raise fail(f"--builtin {builtin!r} over MCP: expected reference")
        return McpService(reference_tools)
    if cmd:
        if wire not in ("http", "sse", "stdio"):
            raise fail(f"--mcp-wire {wire!r}: expected http, sse or stdio")
        cwd_text = str(cwd) if cwd else None
        if wire == "stdio":
            return McpStdioCommand(cmd, name=name, cwd=cwd_text)
        target = McpHttpCommand("server", cmd, cwd=cwd_text, ready_timeout=ready_timeout, name=name)
        target.sse = wire == "sse"
        return target
    try:
        check_loopback_url(url, "--url")
    except ServiceError as exc:
        raise fail_with(exc) from None
    return McpUrl(url, name=name)


def _a2a_target(cmd, url, cwd, ready_timeout: float, name, builtin):
    """A server target over A2A: the reference paid agent, a command serving an agent at ``/`` of
    its PORT, or the URL of an agent."""
    from ..http.runner import ServiceError, check_loopback_url

    try:
        from .a2a_kit import A2aHttpCommand, A2aService, A2aUrl
    except ModuleNotFoundError as exc:  # the agents extra is not installed: its advice says so
        raise fail(str(exc)) from None
    if builtin:
        if builtin != "reference":
            raise fail(f"--builtin {builtin!r} over A2A: expected reference")
        return A2aService()
    if cmd:
        cwd_text = str(cwd) if cwd else None
        return A2aHttpCommand("server", cmd, cwd=cwd_text, ready_timeout=ready_timeout, name=name)
    try:
        check_loopback_url(url, "--url")
    except ServiceError as exc:
        raise fail_with(exc) from None
    return A2aUrl(url, name=name)


def _config_transport(config) -> str | None:
    """The transport a --config names (None: none given, or it does not say)."""
    if config is None:
        return None
    from .config import ConfigError, load_config

    try:
        return load_config(config).transport
    except ConfigError as exc:
        raise fail_with(exc) from None


def _transport(given: str | None, config_transport: str | None = None) -> str:
    from .carriers import parse_transport

    try:
        return parse_transport(given or config_transport or "http")
    except ValueError as exc:
        raise fail(f"--transport: {exc}") from None


def _execute(role: str, target, options, selection, outputs: dict, quiet: bool, config=None) -> None:
    """Run, print, write every report asked for (``config``: the test.config.json, for SARIF), exit."""
    from .reports import print_console, summary_line, write_html, write_json, write_junit, write_markdown
    from .runner import run
    from .sarif import write_sarif
    from .targets import TargetError

    if not selection:
        raise fail("no case matches the selection (see `x402sim conformance list`)")
    for path in filter(None, outputs.values()):
        if path.parent and not path.parent.exists():
            raise fail(f"{path}: folder {path.parent} does not exist")

    def progress(result) -> None:
        if not quiet:
            mark = {"passed": "[green]✓[/green]", "failed": "[red]✗[/red]", "skipped": "[dim]-[/dim]"}
            err.print(f" {mark.get(result.outcome, '[yellow]![/yellow]')} {result.id}", highlight=False)

    options.on_result = progress
    try:
        report = run(role, target, selection, options)
    except (TargetError, ValueError, OSError) as exc:
        raise fail_with(exc) from None
    if quiet:
        out.print(summary_line(report), highlight=False)
    else:
        print_console(report, out)
    writers = {
        "json": write_json,
        "junit": write_junit,
        "markdown": write_markdown,
        "html": lambda report, path: write_html([report], path),
        "sarif": lambda report, path: write_sarif(report, path, config),
    }
    for kind, path in outputs.items():
        if path is not None:
            writers[kind](report, path)
    raise typer.Exit(report.exit_code())


def _selection(role, cases, exclude, level, mechanisms=(), transport: str | None = "http"):
    from . import catalog

    try:
        return catalog.select(
            role,
            include=cases or (),
            exclude=exclude or (),
            levels=level or (),
            mechanisms=mechanisms,
            transport=transport,
        )
    except ValueError as exc:
        raise fail_with(exc) from None


def _mechanisms(given, target, spoken=()) -> tuple[str, ...]:
    """The mechanisms whose cases run: ``--mechanism``, else what the config says the target speaks
    (``spoken``), else what a built-in target speaks, else ``exact-eip3009``."""
    from .catalog import DEFAULT_MECHANISM, parse_mechanisms

    if given:
        try:
            return parse_mechanisms(given)
        except ValueError as exc:
            raise fail(f"--mechanism: {exc}") from None
    return tuple(spoken) or tuple(getattr(target, "mechanisms", ()) or ()) or (DEFAULT_MECHANISM,)


def _spoken(config) -> tuple[str, ...]:
    """What a facilitator's or client's test.config.json says it speaks (nothing without one)."""
    from .config import ConfigError, load_config

    if config is None:
        return ()
    try:
        return load_config(config).mechanisms
    except ConfigError as exc:
        raise fail_with(exc) from None


def _harness(network: str, seed: int, **kwargs):
    from .harness import HarnessOptions

    if network not in NETWORKS:
        raise fail(f"--network {network!r}: expected one of {', '.join(NETWORKS)}")
    return HarnessOptions(network=network, seed=seed, **kwargs)


@app.command("server")
def server_command(
    cmd: CmdOpt = None,
    url: UrlOpt = None,
    config: Annotated[
        Path | None, typer.Option(help="test.config.json (official format): name and paid endpoints.")
    ] = None,
    path: Annotated[
        str, typer.Option(help="Paid path when there is no config (PROTECTED_PATH).")
    ] = "/protected",
    second_path: Annotated[
        str | None,
        typer.Option(help="A second paid route, without a config (SECOND_PROTECTED_PATH; default PATH-2)."),
    ] = None,
    failing_path: Annotated[
        str | None,
        typer.Option(
            help="A paid route whose handler fails, without a config (FAILING_PATH; default PATH-fails)."
        ),
    ] = None,
    permit2_path: Annotated[
        str | None,
        typer.Option(
            help="The exact route paid with Permit2, without a config (PERMIT2_PATH; default PATH-permit2)."
        ),
    ] = None,
    upto_path: Annotated[
        str | None,
        typer.Option(help="The upto route, without a config (UPTO_PATH; default PATH-upto)."),
    ] = None,
    batch_path: Annotated[
        str | None,
        typer.Option(help="The batch-settlement route, without a config (BATCH_PATH; default PATH-batch)."),
    ] = None,
    mechanism: MechanismOpt = None,
    price: Annotated[
        int, typer.Option(min=1, help="Price the server is told to charge (PRICE_ATOMIC).")
    ] = 1000,
    network: NetworkOpt = "local",
    seed: SeedOpt = 0,
    facilitator_port: Annotated[
        int, typer.Option(help="Port of the harness's facilitator (0: free); fixed for --url targets.")
    ] = 0,
    chain_port: Annotated[int, typer.Option(help="Port of the harness's chain JSON-RPC (0: free).")] = 0,
    facilitator_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds the server is told to wait for a facilitator (FACILITATOR_TIMEOUT_SECONDS); "
            "the hung-facilitator cases wait this long.",
        ),
    ] = 5.0,
    cases: CasesOpt = None,
    exclude: ExcludeOpt = None,
    level: LevelOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    sarif: SarifOpt = None,
    ready_timeout: ReadyOpt = 30.0,
    case_timeout: CaseTimeoutOpt = 60.0,
    cwd: CwdOpt = None,
    name: NameOpt = None,
    quiet: QuietOpt = False,
    trust: TrustOpt = None,
    builtin: BuiltinOpt = None,
    transport: TransportOpt = None,
    mcp_wire: McpWireOpt = "http",
) -> None:
    """Judge a resource server: the harness plays the client and the facilitator.

    Exit 1 when a MUST case failed; else 2 when a case could not be judged or nothing could run;
    else 0 (see `x402sim conformance --help`).

    The command gets the official e2e environment (PORT, FACILITATOR_URL, EVM_NETWORK, EVM_RPC_URL,
    EVM_PAYEE_ADDRESS, SERVER_EVM_ADDRESS) plus EVM_ASSET, EVM_ASSET_NAME, EVM_ASSET_VERSION,
    PRICE_ATOMIC, PROTECTED_PATH, SECOND_PROTECTED_PATH, FAILING_PATH, REDIRECT_PATH (PATH-redirect)
    and FACILITATOR_TIMEOUT_SECONDS, and the trust material:
    AP2_TRUSTED_USER_JWK, WEB_BOT_AUTH_JWKS and WEB_BOT_AUTH_DIRECTORY_URL. The chain's RPC URL is
    also under EVM_TESTNET_RPC_URL and the network's own name (BASE_SEPOLIA_RPC_URL, BASE_RPC_URL,
    LOCAL_RPC_URL).

    Before any case, each declared paid route (the config's, or --path, --second-path and
    --failing-path) is requested unpaid once: a 404 or 405 stops the run with exit 2.

    Examples:

      x402sim conformance server --cmd "x402sim serve server --from-env" --html report.html

      x402sim conformance server --cmd "node server.mjs" --network base-sepolia --level MUST

      x402sim conformance server --builtin reference-trust --cases server.trust

      x402sim conformance server --cmd "python my_server.py" --trust ap2 --trust web-bot-auth

      x402sim conformance server --transport mcp --builtin reference

      x402sim conformance server --transport mcp --cmd "python -m x402sim.conformance.mcp_reference --http"

    Over MCP (--transport mcp) the same environment is given; each paid route is a tool named by its
    path without the slash (PROTECTED_PATH=/protected: tool protected). A test.config.json of the
    official MCP servers ("transport": "mcp", endpoints with "method": "tool") names the tools.
    Over A2A (--transport a2a; x402sim conformance server --transport a2a --builtin reference) a
    target is an agent (JSON-RPC at / of PORT, its card at /.well-known/agent-card.json), each paid
    route a skill.
    """
    from .config import ConfigError, load_config
    from .context import Endpoint
    from .runner import RunOptions

    paths = (
        ("--path", path),
        ("--second-path", second_path),
        ("--failing-path", failing_path),
        ("--permit2-path", permit2_path),
        ("--upto-path", upto_path),
        ("--batch-path", batch_path),
    )
    for option, value in paths:
        if value is not None and not value.startswith("/"):
            raise fail(f"{option} {value!r}: must start with /")
    mechanism_routes = {
        m: Endpoint(p, transfer_method=t)
        for m, p, t in (
            ("exact-permit2", permit2_path, "permit2"),
            ("upto", upto_path, "upto"),
            ("batch-settlement", batch_path, "batch-settlement"),
        )
        if p
    }
    options = RunOptions(
        endpoints=[Endpoint(path), *([Endpoint(second_path)] if second_path else [])],
        failing=Endpoint(failing_path, failing=True) if failing_path else None,
        mechanism_routes=mechanism_routes,
    )
    spoken: tuple[str, ...] = ()
    config_transport = None
    if config is not None:
        try:
            loaded = load_config(config)
        except ConfigError as exc:
            raise fail_with(exc) from None
        name = name or loaded.name
        config_transport = loaded.transport
        spoken = loaded.mechanisms
        if loaded.endpoints:
            if second_path or failing_path or permit2_path or upto_path or batch_path:
                raise fail(
                    "--second-path, --failing-path, --permit2-path, --upto-path and --batch-path: "
                    f"{config} declares routes"
                )
            options = RunOptions(
                endpoints=loaded.endpoints,
                failing=loaded.failing,
                unjudged=loaded.unjudged,
                declared=True,
                mechanism_routes=loaded.mechanism_routes,
            )
    if url and facilitator_port == 0:
        facilitator_port = 4022
    options.transport = _transport(transport, config_transport)
    target = _service_target(
        "server", cmd, url, cwd, ready_timeout, name, builtin, options.transport, mcp_wire
    )
    options.harness = _harness(
        network,
        seed,
        price=price,
        facilitator_port=facilitator_port,
        chain_port=chain_port,
        facilitator_timeout=facilitator_timeout,
    )
    options.case_timeout = case_timeout
    options.trust = _trust(trust)
    outputs = {"json": json_out, "junit": junit, "markdown": markdown, "html": html, "sarif": sarif}
    mechanisms = _mechanisms(mechanism, target, spoken)
    selection = _selection("server", cases, exclude, level, mechanisms, options.transport)
    _execute("server", target, options, selection, outputs, quiet, config)


@app.command("facilitator")
def facilitator_command(
    cmd: CmdOpt = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
    mechanism: MechanismOpt = None,
    network: NetworkOpt = "local",
    seed: SeedOpt = 0,
    cases: CasesOpt = None,
    exclude: ExcludeOpt = None,
    level: LevelOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    sarif: SarifOpt = None,
    ready_timeout: ReadyOpt = 30.0,
    case_timeout: CaseTimeoutOpt = 60.0,
    cwd: CwdOpt = None,
    name: NameOpt = None,
    quiet: QuietOpt = False,
    builtin: BuiltinOpt = None,
    transport: TransportOpt = None,
) -> None:
    """Judge a facilitator: the harness plays the resource server and posts /verify and /settle.

    Exit 1 when a MUST case failed; else 2 when a case could not be judged or nothing could run;
    else 0 (see `x402sim conformance --help`).

    The command gets PORT, EVM_RPC_URL, EVM_NETWORK and EVM_PRIVATE_KEY / FACILITATOR_EVM_PRIVATE_KEY
    (a key funded with ether for gas). The facilitator API is HTTP: --transport mcp is refused.

    Examples:

      x402sim conformance facilitator --cmd "x402sim serve facilitator --from-env" --json run.json

      x402sim conformance facilitator --cmd "node facilitator.mjs" --cases "facilitator.settle.*"
    """
    from .runner import RunOptions

    if _transport(transport) != "http":
        raise fail("conformance facilitator: the facilitator API is HTTP; --transport must be http")
    target = _service_target("facilitator", cmd, url, cwd, ready_timeout, name, builtin)
    options = RunOptions(harness=_harness(network, seed), case_timeout=case_timeout)
    outputs = {"json": json_out, "junit": junit, "markdown": markdown, "html": html, "sarif": sarif}
    mechanisms = _mechanisms(mechanism, target, _spoken(config))
    selection = _selection("facilitator", cases, exclude, level, mechanisms)
    _execute("facilitator", target, options, selection, outputs, quiet, config)


@app.command("client")
def client_command(
    cmd: Annotated[
        str | None, typer.Option("--cmd", help="Shell command that makes the client's request.")
    ] = None,
    config: ConfigOpt = None,
    mechanism: MechanismOpt = None,
    network: NetworkOpt = "local",
    seed: SeedOpt = 0,
    cases: CasesOpt = None,
    exclude: ExcludeOpt = None,
    level: LevelOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    sarif: SarifOpt = None,
    run_timeout: Annotated[float, typer.Option(help="Seconds one run of the client may take.")] = 30.0,
    case_timeout: CaseTimeoutOpt = 90.0,
    cwd: CwdOpt = None,
    name: NameOpt = None,
    quiet: QuietOpt = False,
    trust: TrustOpt = None,
    builtin: BuiltinOpt = None,
    transport: TransportOpt = None,
) -> None:
    """Judge a client: the harness plays the (often hostile) server and runs the command per case.

    Exit 1 when a MUST case failed; else 2 when a case could not be judged or nothing could run;
    else 0 (see `x402sim conformance --help`).

    The command gets RESOURCE_SERVER_URL, ENDPOINT_PATH, EVM_PRIVATE_KEY / CLIENT_EVM_PRIVATE_KEY
    (a funded payer), EVM_NETWORK and EVM_RPC_URL, and ERC8004_IDENTITY_REGISTRY /
    ERC8004_REPUTATION_REGISTRY; it may print a JSON line {success, data, status_code,
    payment_response}.

    Examples:

      x402sim conformance client --cmd "x402sim pay --from-env" --markdown summary.md

      x402sim conformance client --builtin reference-trust --cases client.trust

      x402sim conformance client --transport mcp --builtin reference

    Over MCP (--transport mcp) the harness's server is a paid tool server on streamable HTTP:
    RESOURCE_SERVER_URL is its base URL and ENDPOINT_PATH the tool's name, as the official e2e MCP
    clients read them, and MCP_SERVER_URL its endpoint (RESOURCE_SERVER_URL + /mcp). Over A2A
    (--transport a2a) it is a paid agent: RESOURCE_SERVER_URL is the agent's URL and ENDPOINT_PATH
    the skill's id.
    """
    from .runner import RunOptions
    from .targets import ClientCommand

    if bool(cmd) == bool(builtin):
        raise fail("conformance client: give exactly one of --cmd or --builtin")
    chosen = _transport(transport, _config_transport(config))
    if builtin and chosen == "mcp":
        if builtin != "reference":
            raise fail(f"--builtin {builtin!r} over MCP: expected reference")
        try:
            from .mcp_kit import mcp_pay_from_env
        except ModuleNotFoundError as exc:  # the agents extra is not installed: its advice says so
            raise fail(str(exc)) from None
        from .reference import InProcessClient

        target: Any = InProcessClient(mcp_pay_from_env, name="x402sim reference (MCP)")
    elif builtin and chosen == "a2a":
        if builtin != "reference":
            raise fail(f"--builtin {builtin!r} over A2A: expected reference")
        try:
            from .a2a_kit import a2a_pay_from_env
        except ModuleNotFoundError as exc:  # the agents extra is not installed: its advice says so
            raise fail(str(exc)) from None
        from .reference import InProcessClient

        target = InProcessClient(a2a_pay_from_env, name="x402sim reference (A2A)")
    elif builtin:
        target = _builtin("client", builtin)
    else:
        assert cmd is not None  # exactly one of --cmd and --builtin is given
        target = ClientCommand(cmd, cwd=str(cwd) if cwd else None, timeout=run_timeout, name=name)
    options = RunOptions(harness=_harness(network, seed), case_timeout=case_timeout, trust=_trust(trust))
    options.transport = chosen
    outputs = {"json": json_out, "junit": junit, "markdown": markdown, "html": html, "sarif": sarif}
    mechanisms = _mechanisms(mechanism, target, _spoken(config))
    selection = _selection("client", cases, exclude, level, mechanisms, chosen)
    _execute("client", target, options, selection, outputs, quiet, config)


@app.command("list")
def list_command(
    role: Annotated[str | None, typer.Option(help="Only this role: server, facilitator or client.")] = None,
    cases: CasesOpt = None,
    exclude: ExcludeOpt = None,
    level: LevelOpt = None,
    mechanism: Annotated[
        list[str] | None,
        typer.Option("--mechanism", help="Only cases of this mechanism: exact-eip3009, exact-permit2, upto."),
    ] = None,
    controls: Annotated[
        bool, typer.Option("--controls", help="Show which broken variant (control) kills each case.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
) -> None:
    """Print the case catalog: id, level, what it rests on, description.

    Example: x402sim conformance list --role server --level MUST --controls
    """
    from .catalog import ROLES

    if role is not None and role not in ROLES:
        raise fail(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    selection = _selection(
        role, cases, exclude, level, _mechanisms(mechanism, None) if mechanism else (), transport=None
    )
    from .controls import killers

    rows = [
        {
            "id": c.id,
            "level": c.level,
            "rests_on": c.rests_on,
            "description": c.description,
            "mechanism": c.mechanism,
            **({"controls": killers(c.id)} if controls else {}),
        }
        for c in selection
    ]
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"{len(rows)} cases", show_lines=False)
    for column in ("id", "level", "rests on", "description", *(("killed by",) if controls else ())):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["id"],
            row["level"],
            row["rests_on"],
            row["description"],
            *((", ".join(row["controls"]) or "-",) if controls else ()),
        )
    out.print(table)
    by_level = {lv: sum(1 for r in rows if r["level"] == lv) for lv in LEVELS}
    out.print(", ".join(f"{n} {lv}" for lv, n in by_level.items()), highlight=False)


@app.command("report")
def report_command(
    files: Annotated[list[Path], typer.Argument(help="JSON reports of earlier runs.", show_default=False)],
    html: HtmlOpt = None,
    markdown: MarkdownOpt = None,
) -> None:
    """Combine several runs into one matrix across implementations (HTML and/or Markdown).

    Example: x402sim conformance report python.json typescript.json --html matrix.html
    """
    from .reports import ReportError, load_report, matrix_markdown, write_html, write_text_atomic

    try:
        reports = [load_report(f) for f in files]
    except ReportError as exc:
        raise fail_with(exc) from None
    if html is None and markdown is None:
        sys.stdout.write(matrix_markdown(reports) + "\n")
        return
    if html is not None:
        write_html(reports, html)
    if markdown is not None:
        write_text_atomic(markdown, matrix_markdown(reports))


@app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The earlier JSON report.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The later JSON report.", show_default=False)],
) -> None:
    """List fixed, regressed, new and removed cases between two runs; exit 1 on a regression.

    Cases whose level differs between the runs are listed too ("level changed: ID SHOULD → MUST");
    a level change alone exits 0. A case that passed (or was skipped) and now failed or could not
    be judged is a regression at any level.

    Example: x402sim conformance diff main.json branch.json
    """
    from .reports import ReportError, diff, load_report, print_diff

    try:
        change = diff(load_report(old), load_report(new))
    except ReportError as exc:
        raise fail_with(exc) from None
    print_diff(change, out)
    raise typer.Exit(change.exit_code())


@app.command("trust-material")
def trust_material_command(seed: SeedOpt = 0) -> None:
    """Print the trust material a target needs for the trust cases, as JSON.

    A server that verifies AP2 mandates must trust the user key AP2_TRUSTED_USER_JWK; one that enforces
    Web Bot Auth must know the agent keys in WEB_BOT_AUTH_JWKS (the harness also serves them at
    WEB_BOT_AUTH_DIRECTORY_URL/.well-known/http-message-signatures-directory during a run). A client
    that reads ERC-8004 reads the registries named here, on the chain at EVM_RPC_URL. Command targets
    get these in their environment; a --url target is configured with them by hand (same --seed).

    Example: x402sim conformance trust-material --seed 0
    """
    from .trust import material

    sys.stdout.write(json.dumps(material(seed), indent=2) + "\n")


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of --json reports."""
    sys.stdout.write(json.dumps(report_schema(), indent=2) + "\n")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
