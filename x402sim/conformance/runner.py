"""Run selected cases against one target and gather a ``RunReport``.

Rules:

* The harness starts first (chain, facilitator), then the target with the environment of its role
  (``target_env``: the official e2e names, the chain's RPC URL under every name of ``rpc_env``).
* A server target's declared paid routes (``RunOptions.declared_routes``) are each requested unpaid
  once before any case: a 404 or 405 on any of them stops the run with a ``RouteError`` naming them
  all (the CLI's exit 2), since every case would otherwise fail for a route that is not mounted.
* The cases run one at a time, each within ``case_timeout`` seconds, in id order. A server or
  facilitator process that died during a case is started again before the next one (cases are
  independent), and the restart is noted in the next case's evidence.
* A target that cannot be started raises ``TargetError`` (the CLI's exit 2); a case that raises
  anything but ``CaseFailed``/``CaseSkipped`` is an ``error`` whose message names the exception.
* ``on_result`` is called after each case (the CLI's progress display).
* Over another transport than HTTP (``RunOptions.transport``): a server target is reached through
  one MCP client session for the whole run (``mcp_kit.McpBridge`` carries each case's requests as
  tool calls), and its declared routes must be listed tools instead; a client target is served the
  harness's server as a paid tool server (``mcp_kit.ClientFront``); a facilitator is refused. Over
  A2A likewise: one ``a2a_kit.A2aLink`` to the agent, each request carried by ``a2a_kit.A2aBridge``,
  the declared routes checked against the skills its card lists, a client target served the
  harness's server as a paid agent (``a2a_kit.A2aFront``). A case that does not run over the
  transport (``carriers``) is reported skipped with its reason, unrun.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import httpx

from ..version import NAME, VERSION
from .carriers import FACILITATOR_HTTP, not_over
from .catalog import DEFAULT_TRANSPORT, Case, CaseFailed, CaseSkipped
from .context import ROUTE_KINDS, Endpoint
from .harness import Harness, HarnessOptions
from .kits import (
    FAILING_PATH_SUFFIX,
    REDIRECT_PATH_SUFFIX,
    SECOND_PATH_SUFFIX,
    context_for,
    harness_apps,
    prepare,
    read_challenge,
)
from .results import CaseResult, Evidence, Outcome, RunReport, ToolInfo
from .targets import TargetError
from .trust import WEB_BOT_AUTH, TrustKit, features

HTTP_TIMEOUT = 20.0
# The paid route of a Permit2 mechanism when none is declared: the main path plus this suffix (the
# reference server sells it there when told: PERMIT2_PATH, UPTO_PATH; the cases skip when absent).
MECHANISM_SUFFIX = {"exact-permit2": "-permit2", "upto": "-upto", "batch-settlement": "-batch"}
MECHANISM_ENV = {"exact-permit2": "PERMIT2_PATH", "upto": "UPTO_PATH", "batch-settlement": "BATCH_PATH"}
UNMOUNTED = (404, 405)  # what a route that is not mounted (for this method) answers


class RouteError(TargetError):
    """A declared paid route the server does not mount; the message names every such route."""


def rpc_env(preset: str, url: str) -> dict[str, str]:
    """The chain's RPC URL under every name a target may read it by. The official e2e harness hands
    a target ``EVM_RPC_URL`` and takes its own overrides by network, ``<NETWORK>_RPC_URL``
    (``BASE_SEPOLIA_RPC_URL``, ``BASE_RPC_URL``), or by family, ``<FAMILY>_RPC_URL`` for the main
    network and ``<FAMILY>_TESTNET_RPC_URL`` for the test one. The harness serves one chain, so all
    of the EVM ones name it: ``EVM_RPC_URL``, ``EVM_TESTNET_RPC_URL`` and the preset's own."""
    names = ("EVM", "EVM_TESTNET", preset.upper().replace("-", "_"))
    return {f"{name}_RPC_URL": url for name in names}


@dataclass
class RunOptions:
    """How to run. For a server target, ``endpoints`` are the paid routes the cases are run against
    (the first: the main one; a second: cross-endpoint replay), ``failing`` a paid route whose
    handler fails, ``unjudged`` further paid routes no case uses (only checked to be mounted).
    ``declared``: the routes come from a test.config.json, so a second or failing route it does not
    declare is absent; otherwise one not given is the main path + ``-2`` / ``-fails``, which cases
    probe and skip when the target does not sell it."""

    harness: HarnessOptions = field(default_factory=HarnessOptions)
    case_timeout: float = 60.0
    endpoints: list[Endpoint] = field(default_factory=lambda: [Endpoint("/protected")])
    failing: Endpoint | None = None
    unjudged: list[Endpoint] = field(default_factory=list)
    declared: bool = False
    # the paid routes the exact-permit2 and upto cases pay (a declared config's first of each)
    mechanism_routes: dict[str, Endpoint] = field(default_factory=dict)
    on_result: Callable[[CaseResult], None] | None = None
    # Trust features the target advertises (``trust.FEATURES``): erc8004, ap2, web-bot-auth. A
    # target's own ``trust`` attribute (the built-in trust targets) adds to it.
    trust: frozenset[str] = frozenset()
    # What carries the harness's calls to the target (``catalog.TRANSPORTS``): over ``mcp`` a server
    # target is an MCP tool server, each paid route a tool named by its path (``/protected`` ->
    # ``protected``); the cases that do not run over it are reported skipped (``carriers``).
    transport: str = DEFAULT_TRANSPORT

    def route(self, which: str) -> Endpoint | None:
        """The ``main``, ``second`` or ``failing`` paid route; None when the routes are declared and
        this one is not."""
        if which not in ROUTE_KINDS:
            raise ValueError(f"unknown route kind {which!r}; expected one of {', '.join(ROUTE_KINDS)}")
        main = self.endpoints[0]
        given = {"main": main, "second": next(iter(self.endpoints[1:]), None), "failing": self.failing}[which]
        if given is not None or self.declared:
            return given
        suffix = SECOND_PATH_SUFFIX if which == "second" else FAILING_PATH_SUFFIX
        return replace(main, path=main.path + suffix, failing=which == "failing")

    @property
    def second_path(self) -> str:
        """SECOND_PROTECTED_PATH: the second route's path, empty when the config declares none."""
        route = self.route("second")
        return route.path if route else ""

    @property
    def failing_path(self) -> str:
        """FAILING_PATH: the failing route's path, empty when the config declares none."""
        route = self.route("failing")
        return route.path if route else ""

    def mechanism_route(self, mechanism: str) -> Endpoint | None:
        """The paid route the ``exact-permit2`` or ``upto`` cases pay: the declared one, else (when
        the routes are not declared) the main path plus ``MECHANISM_SUFFIX``; None when a config
        declares none."""
        given = self.mechanism_routes.get(mechanism)
        if given is not None or self.declared or mechanism not in MECHANISM_SUFFIX:
            return given
        main = self.endpoints[0]
        method = {"exact-permit2": "permit2"}.get(mechanism, mechanism)
        return replace(main, path=main.path + MECHANISM_SUFFIX[mechanism], transfer_method=method)

    def declared_routes(self) -> list[Endpoint]:
        """The paid routes the target was said to mount (by its config or on the command line), in
        order; the derived ``-2`` / ``-fails`` / mechanism routes are not among them."""
        return [
            *self.endpoints,
            *filter(None, [self.failing]),
            *self.mechanism_routes.values(),
            *self.unjudged,
        ]


def target_env(
    role: str,
    harness: Harness,
    options: RunOptions,
    payee: str | None = None,
    key_hex: str | None = None,
    trust_kit: TrustKit | None = None,
) -> dict[str, str]:
    """The environment the official e2e harness gives a target of ``role``, plus ours (the trust
    material among it: see ``trust``)."""
    env = {"EVM_NETWORK": harness.network, **rpc_env(harness.options.network, harness.rpc_url)}
    if trust_kit is not None:
        env |= trust_kit.env(role, harness.chain_id)
    if role == "server":
        env |= {
            "FACILITATOR_URL": harness.facilitator_url,
            "EVM_PAYEE_ADDRESS": payee or "",
            "SERVER_EVM_ADDRESS": payee or "",
            "EVM_ASSET": harness.asset,
            "EVM_ASSET_NAME": harness.asset_name,
            "EVM_ASSET_VERSION": harness.asset_version,
            "PRICE_ATOMIC": str(options.harness.price),
            "PROTECTED_PATH": options.endpoints[0].path,
            "SECOND_PROTECTED_PATH": options.second_path,
            "FAILING_PATH": options.failing_path,
            "REDIRECT_PATH": options.endpoints[0].path + REDIRECT_PATH_SUFFIX,
            "FACILITATOR_TIMEOUT_SECONDS": f"{options.harness.facilitator_timeout:g}",
        }
        for mechanism, var in MECHANISM_ENV.items():
            route = options.mechanism_route(mechanism)
            env[var] = route.path if route else ""
    elif role in ("facilitator", "client"):
        env |= {"EVM_PRIVATE_KEY": key_hex or "", f"{role.upper()}_EVM_PRIVATE_KEY": key_hex or ""}
    return env


def run(
    role: str, target, cases: list[Case], options: RunOptions | None = None, harness: Harness | None = None
) -> RunReport:
    """Run ``cases`` of ``role`` against ``target``; returns the report. A started ``harness`` may be
    passed in (server and facilitator roles; it is left running), else one is started and stopped."""
    options = options or RunOptions()
    if options.transport != DEFAULT_TRANSPORT and role == "facilitator":
        raise TargetError(f"a facilitator is judged over HTTP only: {FACILITATOR_HTTP}")
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    own = harness is None
    if harness is None:
        harness = Harness(options.harness)
        harness.start(extra_apps=harness_apps(role, harness))
    try:
        trust = features(options.trust) | features(getattr(target, "trust", ()))
        setup = prepare(role, harness, options, trust)
        env = target_env(
            role, harness, options, payee=setup.payee, key_hex=setup.key_hex, trust_kit=setup.trust_kit
        )
        base_url = "" if role == "client" else target.start(env)
        if role == "client" and options.transport == "mcp":
            from .mcp_kit import ClientFront

            setup.mcp_front = ClientFront(harness.hostile.app)
            setup.mcp_front.start()
        elif role == "client" and options.transport == "a2a":
            from .a2a_kit import A2aFront

            setup.a2a_front = A2aFront(harness.hostile.app)
            setup.a2a_front.start()
        try:
            if role == "server" and target.info.kind in ("url", "asgi"):
                setup.payee = None  # a server configured by its owner: its own payTo is the payee
            results = _run_sync(_run_cases(role, target, cases, harness, options, setup, env, base_url))
        finally:
            if role != "client":
                target.stop()
            for front in (setup.mcp_front, setup.a2a_front):
                if front is not None:
                    front.stop()
    finally:
        if own:
            harness.stop()
    return RunReport(
        tool=ToolInfo(name=NAME, version=VERSION),
        target=target.info,
        network=harness.network,
        chain_id=harness.chain_id,
        started=started_at.isoformat(timespec="seconds"),
        duration=round(time.perf_counter() - clock, 3),
        results=results,
    )


async def _run_cases(role, target, cases, harness, options, setup, env, base_url) -> list[CaseResult]:
    results = []
    transport = None if role == "client" else target.transport()
    over_mcp = options.transport == "mcp"
    carried = options.transport != DEFAULT_TRANSPORT  # the target is reached through a bridge
    # No keep-alive: a target that drops a connection after a crash (uvicorn after an unhandled
    # exception) must not turn the next case's first request into a transport error.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with contextlib.AsyncExitStack() as stack:
        session = None
        if over_mcp and role == "server":
            from .mcp_kit import BRIDGE_BASE_URL, McpBridge, listed_tools

            session = await stack.enter_async_context(_mcp_session(target))
            tools = await listed_tools(session)
            transport, base_url = McpBridge(session, tools), BRIDGE_BASE_URL
        elif options.transport == "a2a" and role == "server":
            from .a2a_kit import A2aBridge, listed_skills

            link = await stack.enter_async_context(_a2a_link(target))
            session, tools = link, await listed_skills(link)
            transport = A2aBridge(link)
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, timeout=HTTP_TIMEOUT, limits=limits)
        )
        signer = setup.trust_kit if WEB_BOT_AUTH in setup.trust else None
        if role == "server" and session is not None:
            _check_tools(tools, options.declared_routes())
        elif role == "server":
            await _check_routes(http, base_url, options.declared_routes(), signer)
        if role == "server" and setup.payee is None:
            setup.payee = await _payee_of(http, base_url, options.endpoints[0], harness, signer)
        for case in cases:
            evidence = Evidence()
            reason = not_over(case, options.transport)
            if reason is not None:
                result = _result(case, "skipped", f"not over {options.transport}: {reason}", evidence, 0.0)
                results.append(result)
                if options.on_result is not None:
                    options.on_result(result)
                continue
            if role != "client" and not target.alive():
                evidence.notes.append(
                    f"the target had stopped; restarted. Its last output:\n{target.log_tail()}"
                )
                await asyncio.to_thread(target.stop)
                restarted = await asyncio.to_thread(target.start, env)
                base_url = base_url if carried else restarted
            ctx = context_for(
                role,
                case,
                harness,
                target,
                base_url,
                http,
                setup,
                options,
                evidence,
                random.Random(f"{options.harness.seed}:{case.id}"),
            )
            ctx.transport = options.transport
            if over_mcp:
                ctx.mcp = session
            else:
                ctx.a2a = session
            result = await _run_one(case, ctx, options.case_timeout)
            harness.control.reset()
            if setup.hostile is not None:
                setup.hostile.reset()
            for front in (setup.mcp_front, setup.a2a_front):
                if front is not None:
                    front.reset()
            results.append(result)
            if options.on_result is not None:
                options.on_result(result)
    return results


@contextlib.asynccontextmanager
async def _mcp_session(target):
    """An MCP client session with ``target``; ``TargetError`` when it has no MCP side or cannot be
    reached."""
    opener = getattr(target, "mcp_session", None)
    if opener is None:
        raise TargetError(f"{target.info.name}: not an MCP target (give an MCP command, URL or builtin)")
    try:
        async with opener() as session:
            yield session
    except TargetError:
        raise
    except Exception as exc:  # the SDK's connection errors come in many types (and groups)
        if isinstance(exc, CaseFailed | CaseSkipped):
            raise
        raise TargetError(f"MCP session with {target.info.name} failed: {type(exc).__name__}: {exc}") from exc


@contextlib.asynccontextmanager
async def _a2a_link(target):
    """An ``a2a_kit.A2aLink`` to ``target``; ``TargetError`` when it has no A2A side."""
    opener = getattr(target, "a2a_link", None)
    if opener is None:
        raise TargetError(f"{target.info.name}: not an A2A target (give an A2A command, URL or builtin)")
    async with opener() as link:
        yield link


def _check_tools(listed, routes: list[Endpoint]) -> None:
    """Every declared paid route's tool (skill) is ``listed`` by the MCP server (the A2A agent's card);
    ``RouteError`` naming the others."""
    from .mcp_kit import tool_name

    missing = [tool_name(e.path) for e in routes if tool_name(e.path) not in listed]
    if missing:
        raise RouteError(f"tool(s) or skill(s) {', '.join(missing)} not listed by the target: is it served?")


def _run_sync(coroutine):
    """Run ``coroutine`` to completion, in a fresh thread when this one already runs a loop (a test
    written with pytest-asyncio, a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _unpaid(http: httpx.AsyncClient, base_url: str, endpoint: Endpoint, signer) -> httpx.Response:
    """``endpoint`` requested without payment (signed by ``signer``, a ``TrustKit``, when given)."""
    url = base_url + endpoint.path
    try:
        request = http.build_request(endpoint.method, url)
        if signer is not None:
            signer.sign_request(request)
        return await http.send(request)
    except httpx.HTTPError as exc:
        raise TargetError(f"server at {url} cannot be reached: {exc}") from exc


async def _check_routes(http: httpx.AsyncClient, base_url: str, routes: list[Endpoint], signer) -> None:
    """Request each declared paid route unpaid once; ``RouteError`` naming those answered 404/405."""
    missing = []
    for endpoint in routes:
        status = (await _unpaid(http, base_url, endpoint, signer)).status_code
        if status in UNMOUNTED:
            missing.append(f"route {endpoint.label} answered {status}")
    if missing:
        raise RouteError(f"{'; '.join(missing)}: is it mounted?")


async def _payee_of(
    http: httpx.AsyncClient, base_url: str, endpoint: Endpoint, harness: Harness, signer=None
) -> str:
    """The payTo of the server's exact offer on the harness's chain; TargetError when there is none.
    ``signer`` (a ``TrustKit``) signs the probe for a server that admits only signed agents."""
    url = base_url + endpoint.path
    response = await _unpaid(http, base_url, endpoint, signer)
    offer = read_challenge(response).offer(harness)
    if response.status_code != 402 or offer is None:
        raise TargetError(
            f"{endpoint.method} {url} answered {response.status_code} without an exact offer in "
            f"{harness.asset} on {harness.network}; configure the server with the harness's chain "
            f"(facilitator {harness.facilitator_url})"
        )
    return offer["payTo"]


async def _run_one(case: Case, ctx, timeout: float) -> CaseResult:
    started = time.perf_counter()
    outcome: Outcome = "passed"
    message = ""
    try:
        await asyncio.wait_for(case.run(ctx), timeout)
    except CaseFailed as exc:
        outcome, message = "failed", str(exc)
    except CaseSkipped as exc:
        outcome, message = "skipped", str(exc)
    except TimeoutError:
        outcome, message = "error", f"the case did not finish within {timeout:g} s"
    except TargetError as exc:
        outcome, message = "error", str(exc)
    except Exception as exc:  # a harness fault or a target that broke mid-case: not a verdict
        outcome, message = "error", f"{type(exc).__name__}: {exc}"
        ctx.evidence.notes.append("".join(traceback.format_exception(exc, limit=-3)).strip()[-2000:])
    return _result(case, outcome, message, ctx.evidence, time.perf_counter() - started)


def _result(case: Case, outcome: Outcome, message: str, evidence: Evidence, duration: float) -> CaseResult:
    return CaseResult(
        id=case.id,
        role=case.role,
        level=case.level,
        rests_on=case.rests_on,
        description=case.description,
        outcome=outcome,
        message=message,
        evidence=evidence,
        duration=round(duration, 3),
    )
