"""``x402sim serve``: the chain, the facilitator and a resource server as local services.

Each part can run alone so that any of them can be swapped for a third-party implementation:
``serve_chain`` (JSON-RPC over the embedded chain, funded test accounts), ``serve_facilitator``
(the reference facilitator, on the embedded chain in the same process or on any chain by RPC URL)
and ``serve_server`` (priced routes or a paywall proxy, talking to any facilitator by URL).
``serve_all`` starts the three on one event loop, the facilitator settling on the embedded chain
directly. Each returns the running ``Services`` and the facts a user needs (URLs, chain, asset,
accounts) as a dict, which the CLI prints as one JSON line.

Time: served chains follow the wall clock, because real SDKs sign with it; the node and the
facilitator of one chain share its ``ChainClock``. Funding takes as many blocks as it needs, and the
balances printed are read back from the chain.

Networks: ``ChainSetup.network`` names a preset (``x402sim.evm.presets``); ``base-sepolia`` serves
chain 84532 with the token at Base Sepolia's USDC address and domain, so SDKs with their default
asset tables pay on it unmodified.

Agent identities: every funded test account also has an Ed25519 key for signing its HTTP requests
(RFC 9421: Web Bot Auth, Visa TAP), derived from the account's private key (``account_agent_key``),
so a client holding the account key can sign and nobody else can. The chain service publishes their
public keys as a JWKS at ``/.well-known/http-message-signatures-directory``: the chain is where the
test accounts live (it funds them and lists them), so its origin is the agents' ``Signature-Agent``;
the resource server that verifies them is another party and only reads that directory. With
``crawl_policy`` a resource server admits requests by signature (``x402sim.trust.crawl``): in
``serve_all`` against the same in-process directory, in ``serve_server`` by fetching the directories
requests name (loopback only unless ``allow_remote_directories``).

The e2e environment contract: ``server_env``, ``facilitator_env`` and ``client_env`` read the
variables the official x402 e2e harness starts its targets with (``PORT``, ``EVM_NETWORK``, ...;
a role-prefixed name such as ``SERVER_EVM_ADDRESS`` wins over the plain one), raising ``EnvError``
naming the variable. Services started with ``control=True`` also answer ``POST /close`` (answer,
then ``Running.stop_requested`` is set) and, for the server, ``GET /health``.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload
from urllib.parse import urlsplit

import httpx
from eth_utils import is_address, to_checksum_address
from starlette.responses import JSONResponse, Response

from ..actors.facilitator import Facilitator
from ..actors.messages import Headers, HttpResponse
from ..actors.server import PAYMENT_IDENTIFIER_MODES, ResourceServer, Route
from ..actors.server_channels import ChannelBook
from ..errors import ChainError, InputError
from ..evm import erc8004
from ..evm.chain import ETHER, LocalChain
from ..evm.contracts import MULTICALL3_ADDRESS
from ..evm.eip712 import address_of_key
from ..evm.presets import DEFAULT_PRESET, preset, preset_for_network
from ..evm.rpc_chain import RpcChain
from ..mechanisms import SPONSORING_EXTENSIONS
from ..money import UNIT
from ..protocol import ProtocolError, SupportedResponse, caip2_problem, v1_to_caip2
from ..protocol.bazaar import HttpDeclaration
from ..trust.crawl import CrawlPolicy
from ..trust.identity import registration_file
from ..trust.signatures import (
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    PROTOCOLS,
    KeyDirectory,
    ResponseSigner,
    SignatureVerifier,
    agent_key,
    jwks,
    keyid_of,
)
from .chain_clock import ChainClock
from .chain_rpc import chain_rpc_app
from .client import DEFAULT_TIMEOUT, FacilitatorClient
from .facilitator_app import facilitator_app
from .guard import service_app
from .routes_file import RoutesConfig
from .runner import LOOPBACK, ServiceError, Services
from .server_app import MAX_IN_FLIGHT, DirectoryFetcher, Handler, demo_weather, resource_server_app

DEFAULT_PORTS = {"chain": 8545, "facilitator": 4022, "server": 4021}
DEFAULT_CHANNEL_WORK_EVERY = 5.0  # seconds between rounds of a server's channel claims and settlements
DEMO_ROUTES = {
    "GET /weather": Route(
        "GET /weather",
        1_000,
        description="Current weather (demo)",
        tags=("weather",),
        discovery=HttpDeclaration(
            output={"city": "Lisbon", "temperature_c": 21, "sky": "clear", "paid": True}
        ),
    )
}


@dataclass
class ChainSetup:
    """What a served chain holds. ``network`` is a preset name (``x402sim.evm.presets``): ``local``, or
    ``base`` / ``base-sepolia`` for that chain id with the token at that network's USDC address and
    EIP-712 domain. ``chain_id`` None means the preset's; only ``local`` takes another one."""

    accounts: int = 10
    usdc: int = 1_000 * UNIT
    eth: int = 100 * ETHER
    seed: int = 0
    chain_id: int | None = None
    block_time: float | None = None
    network: str = DEFAULT_PRESET


@dataclass
class Running:
    """Started services, the facts printed about them, and an event set when a client asked them to
    stop (``POST /close`` of a service started with ``control=True``); ``stop`` is the owner's call."""

    services: Services
    info: dict = field(default_factory=dict)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.services.stop()


def account_agent_key(private_key: bytes | str):
    """The Ed25519 key a test account signs its HTTP requests with, derived from its private key."""
    raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
    return agent_key(b"x402sim-account\x00" + raw)


def agents_directory(accounts: Iterable[dict]) -> dict:
    """The JWKS of the accounts' agent keys (public halves only)."""
    return jwks(account_agent_key(a["private_key"]) for a in accounts)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def with_agents_directory(app, document: dict):
    """``app`` (None: nothing else, 404), plus ``GET``/``HEAD`` of the key directory ``document`` at
    ``DIRECTORY_PATH`` with the directory's media type."""
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {"Content-Type": DIRECTORY_MEDIA_TYPE, "Cache-Control": "max-age=300"}
    inner = app if app is not None else service_app("agents' key directory", [])

    async def with_directory(scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("path") == DIRECTORY_PATH:
            if scope.get("method") in ("GET", "HEAD"):
                answer = Response(body, 200, headers)
            else:
                answer = Response(b"", 405, {"Allow": "GET, HEAD"})
            await answer(scope, receive, send)
            return
        await inner(scope, receive, send)

    return with_directory


# How far ahead of the server's clock a signature's ``created`` may be: served processes have their own
# clocks, and ``pay --rpc-url`` signs with its chain's clock, which runs ahead of the wall clock after a
# burst of blocks (TAP's sample edge allows 60 s too).
CLOCK_SKEW = 60


def crawl_policy(
    directory: KeyDirectory, allow: Iterable[str] = (), *, block_unsigned: bool = True
) -> CrawlPolicy:
    """The pay-per-crawl policy the served resource servers use: Web Bot Auth and both TAP tags,
    ``created`` up to ``CLOCK_SKEW`` seconds ahead."""
    verifier = SignatureVerifier(directory, tags=PROTOCOLS, max_skew=CLOCK_SKEW)
    return CrawlPolicy(verifier, allow=allow, block_unsigned=block_unsigned)


def _new_chain(setup: ChainSetup) -> tuple[LocalChain, list[dict]]:
    network = preset(setup.network)
    chain_id = network.chain_id if setup.chain_id is None else setup.chain_id
    if network.name != DEFAULT_PRESET and chain_id != network.chain_id:
        raise ValueError(f"network {network.name} is chain {network.chain_id}, not {chain_id}")
    chain = LocalChain(
        chain_id=chain_id,
        token_address=network.token_address,
        token_name=network.token_name,
        token_version=network.token_version,
        seed=setup.seed,
        start_time=int(time.time()),
    )
    keys = [chain.new_key() for _ in range(setup.accounts)]
    chain.fund_many([(address_of_key(k), setup.usdc, setup.eth) for k in keys])
    # What is printed is what the chain holds, read back, never what was asked for.
    accounts = [
        {
            "address": (a := address_of_key(k)),
            "private_key": "0x" + k.hex(),
            "usdc": chain.balance_of(a),
            "agent_keyid": keyid_of(account_agent_key(k)),
        }
        for k in keys
    ]
    short = [a["address"] for a in accounts if a["usdc"] != setup.usdc]
    if short:
        raise ChainError(f"funding failed: {len(short)} accounts (first {short[0]}) do not hold {setup.usdc}")
    return chain, accounts


def _chain_info(chain: LocalChain, accounts: list[dict], setup: ChainSetup) -> dict:
    return {
        "preset": setup.network,
        "network": chain.network,
        "chain_id": chain.chain_id,
        "asset": chain.usdc,
        "asset_name": chain.token_name,
        "asset_version": chain.token_version,
        "multicall3": MULTICALL3_ADDRESS,
        "accounts": accounts,
    }


def _rpc_app(
    chain: LocalChain, setup: ChainSetup, accounts: list[dict], clock: ChainClock, registrations: dict
):
    app = chain_rpc_app(
        chain,
        automine=setup.block_time is None,
        block_time=setup.block_time,
        chain_clock=clock,
        accounts=accounts,
    )
    return with_agent_registrations(with_agents_directory(app, agents_directory(accounts)), registrations)


REGISTRATION_PATH = "/agents/{agent_id}/registration.json"


def register_accounts(chain: LocalChain, accounts: list[dict], origin: str, files: dict) -> None:
    """Register every test account as an ERC-8004 agent it owns (its wallet is its own address),
    whose agentURI is its registration file served by the chain service at ``origin``; the account
    entries gain ``agent_id`` and ``agent_uri``, and ``files`` maps each agent id to its file."""
    for account in accounts:
        key = bytes.fromhex(account["private_key"][2:])
        agent_id = erc8004.register(chain, key)
        uri = origin + REGISTRATION_PATH.format(agent_id=agent_id)
        erc8004.set_agent_uri(chain, key, agent_id, uri)
        account["agent_id"], account["agent_uri"] = agent_id, uri
        files[str(agent_id)] = registration_file(
            f"x402sim account {account['address']}",
            description="A paying test agent of an x402sim chain (test keys, no real value).",
            services=[{"name": "web-bot-auth", "endpoint": origin + DIRECTORY_PATH}],
            agent_id=agent_id,
            chain_id=chain.chain_id,
            registry=chain.identity_registry,
        )


def with_agent_registrations(app, files: dict):
    """``app`` plus ``GET`` of the registration files in ``files`` (agent id -> file) at
    ``REGISTRATION_PATH``, looked up when asked, so agents registered after the app was built are
    served."""

    async def with_registrations(scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "agents" and parts[3] == "registration.json":
            found = files.get(parts[2])
            answer = JSONResponse(found) if found else JSONResponse({"error": "no such agent"}, 404)
            return await answer(scope, receive, send)
        return await app(scope, receive, send)

    return with_registrations


def _agent_facts(rpc_url: str) -> dict:
    return {"signature_agent": origin_of(rpc_url), "agent_directory": origin_of(rpc_url) + DIRECTORY_PATH}


def serve_chain(
    setup: ChainSetup, *, host: str = LOOPBACK, port: int = 8545, allow_public: bool = False
) -> Running:
    chain, accounts = _new_chain(setup)
    services = Services(host, allow_public=allow_public)
    files: dict = {}
    clock = ChainClock(chain, time.time)
    rpc_url = services.add("chain", _rpc_app(chain, setup, accounts, clock, files), port)
    register_accounts(chain, accounts, origin_of(rpc_url), files)
    services.start()
    return Running(
        services, {"rpc_url": rpc_url, **_chain_info(chain, accounts, setup), **_agent_facts(rpc_url)}
    )


def serve_facilitator(
    rpc_url: str,
    *,
    key: bytes | None = None,
    host: str = LOOPBACK,
    port: int = 4022,
    allow_public: bool = False,
    settle_timeout: float = 30.0,
    control: bool = False,
    sponsoring: Iterable[str] = (),
) -> Running:
    """The reference facilitator settling on the chain at ``rpc_url`` from the account of ``key``.

    Without a key, a fresh test key is made and funded with ether through the chain's
    ``x402sim_fund`` method (so only an x402sim chain can fund it). ``control`` adds ``POST /close``.
    ``sponsoring`` names the gas-sponsoring extensions it offers (``SPONSORING_EXTENSIONS``; listed
    in its ``/supported``); ``ValueError`` names an unknown one."""
    offered = sponsoring_extensions(sponsoring)
    chain = RpcChain(rpc_url)
    if key is None:
        key = secrets.token_bytes(32)  # a throwaway test key, funded below
        try:
            chain.rpc("x402sim_fund", address_of_key(key), "0x0", hex(100 * ETHER))
        except ChainError as exc:
            raise ChainError(
                f"cannot fund a facilitator key on {rpc_url} ({exc}); pass --key of an account with ether"
            ) from None
    facilitator = Facilitator(chain, key, sponsoring=offered)
    services = Services(host, allow_public=allow_public)
    closed = threading.Event()
    app = facilitator_app(facilitator, settle_timeout=settle_timeout, automine=False)
    url = services.add("facilitator", _controlled(app, closed) if control else app, port)
    services.start()
    info = {
        "facilitator_url": url,
        "network": chain.network,
        "chain_id": chain.chain_id,
        "facilitator_address": facilitator.address,
        "sponsoring": facilitator.supported().extensions,
    }
    return Running(services, info, closed)


def sponsoring_extensions(names: Iterable[str]) -> frozenset[str]:
    """The gas-sponsoring extensions ``names`` (each may be a comma-separated list) as a set;
    ``ValueError`` naming an unknown one and the known ones."""
    wanted = {n.strip() for name in names for n in name.split(",") if n.strip()}
    unknown = sorted(wanted - set(SPONSORING_EXTENSIONS))
    if unknown:
        raise ValueError(
            f"unknown gas-sponsoring extension {unknown[0]!r} (known: {', '.join(SPONSORING_EXTENSIONS)})"
        )
    return frozenset(wanted)


SUPPORTED_TIMEOUT = 10.0  # seconds a server waits at startup for its facilitator's /supported
STARTUP_POLL_SECONDS = 0.2


def fetch_supported(facilitator_url: str, *, timeout: float = SUPPORTED_TIMEOUT) -> SupportedResponse:
    """The facilitator's ``GET /supported`` answer, as a resource server learns it at startup (the
    SDK servers do too: upto offers carry the facilitator's address, Permit2 offers declare the
    gas-sponsoring extensions it lists). A facilitator still starting (connection refused) is asked
    again until ``timeout`` seconds have passed; ``ServiceError`` naming the URL when it cannot be had."""
    url = facilitator_url.rstrip("/") + "/supported"
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=timeout)
            break
        except httpx.ConnectError as exc:
            if time.monotonic() + STARTUP_POLL_SECONDS > deadline:
                raise ServiceError(
                    f"facilitator {url} unreachable at startup (for {timeout} s): {exc or type(exc).__name__}"
                ) from None
            time.sleep(STARTUP_POLL_SECONDS)  # waiting for another process to listen
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"facilitator {url} unreachable at startup: {exc or type(exc).__name__}"
            ) from None
    if answer.status_code != 200:
        raise ServiceError(f"facilitator {url} answered HTTP {answer.status_code} at startup")
    try:
        return SupportedResponse.from_wire(answer.content, where=f"facilitator {url} answer")
    except ProtocolError as exc:
        raise ServiceError(f"facilitator {url} answered outside the protocol: {exc}") from None


def resource_server(
    config: RoutesConfig,
    facilitator_url: str,
    *,
    facilitator_timeout: float = DEFAULT_TIMEOUT,
    role_class: type[ResourceServer] = ResourceServer,
    switches: Mapping | None = None,
) -> tuple:
    """The role for ``config`` (``role_class``, with ``switches`` as extra fields) and a client of the
    facilitator at ``facilitator_url``."""
    missing = [
        k for k in ("network", "asset", "asset_name", "asset_version", "pay_to") if not getattr(config, k)
    ]
    if missing:
        raise ValueError(f"{config.source or 'server'}: missing {', '.join(missing)}")
    # checked just above (getattr hides it from the type checker)
    assert config.network and config.asset and config.asset_name and config.asset_version and config.pay_to
    role = role_class(
        network=config.network,
        asset=config.asset,
        asset_name=config.asset_name,
        asset_version=config.asset_version,
        pay_to=config.pay_to,
        routes=config.routes,
        **(switches or {}),
    )
    client = FacilitatorClient(facilitator_url, timeout=facilitator_timeout, max_connections=MAX_IN_FLIGHT)
    return role, client


def serve_server(
    config: RoutesConfig,
    facilitator_url: str,
    *,
    origin: str | None = None,
    host: str = LOOPBACK,
    port: int = 4021,
    allow_public: bool = False,
    facilitator_timeout: float = DEFAULT_TIMEOUT,
    handlers: Mapping[str, Handler] | None = None,
    control: bool = False,
    switches: Mapping | None = None,
    crawl: bool = False,
    crawl_allow: Iterable[str] = (),
    crawl_block_unsigned: bool = True,
    allow_remote_directories: bool = False,
    sign_responses: bool = False,
    state: str | Path | None = None,
    channel_work_every: float = DEFAULT_CHANNEL_WORK_EVERY,
) -> Running:
    """A resource server for ``config``'s routes; ``handlers`` answer routes by key (``"GET /path"``),
    ``control`` adds ``GET /health`` and ``POST /close``, ``switches`` are extra role fields.

    ``crawl`` turns pay per crawl on: requests are admitted by their RFC 9421 signature, verified with
    the keys of the directories they name in ``Signature-Agent`` (fetched from this machine only unless
    ``allow_remote_directories``); ``crawl_allow`` (keyids or agent directory URLs) are served free.
    ``sign_responses`` signs the x402 answers with a fresh Ed25519 key, published at the server's
    ``DIRECTORY_PATH`` (the x402 ``http-message-signatures`` extension's server-signed responses).

    ``state`` is the SQLite file of its batch-settlement channels (created if missing; a file that is
    not one raises ``ChannelBookError`` naming it); without it they are kept in memory. Their claims
    and settlements run every ``channel_work_every`` seconds."""
    book = ChannelBook(state) if state is not None else ChannelBook()
    fetcher = None
    response_signer = ResponseSigner(agent_key(secrets.token_bytes(32))) if sign_responses else None
    supported = fetch_supported(facilitator_url, timeout=min(facilitator_timeout, SUPPORTED_TIMEOUT))
    switches = {**(switches or {}), "supported": supported, "channels": book}
    if crawl:
        policy = crawl_policy(KeyDirectory(), crawl_allow, block_unsigned=crawl_block_unsigned)
        switches = {**(switches or {}), "crawl": policy}
        fetcher = DirectoryFetcher(policy.verifier.directory, allow_remote=allow_remote_directories)
    role, client = resource_server(
        config, facilitator_url, facilitator_timeout=facilitator_timeout, switches=switches
    )
    services = Services(host, allow_public=allow_public)
    closed = threading.Event()
    app = resource_server_app(
        role,
        client,
        origin=origin,
        handlers=handlers,
        directories=fetcher,
        response_signer=response_signer,
        channel_work_every=channel_work_every,
    )
    facts = {
        "network": role.network,
        "asset": role.asset,
        "asset_name": role.asset_name,
        "asset_version": role.asset_version,
        "payee": role.pay_to,
        "sponsoring": list(supported.extensions),
    }
    if crawl:
        facts["crawl_policy"] = _crawl_facts(role.crawl)
    if response_signer is not None:
        facts["response_keyid"] = response_signer.keyid
    if role.channel_routes():
        facts["channel_state"] = book.path
    url = services.add(
        "server", _controlled(app, closed, {"status": "ok", **facts}) if control else app, port
    )
    role.base_url = url
    services.start()
    return Running(services, {"server_url": url, **facts}, closed)


def _crawl_facts(policy: CrawlPolicy) -> dict:
    return {
        "tags": list(policy.verifier.tags),
        "allow": sorted(policy.allow),
        "block_unsigned": policy.block_unsigned,
    }


@dataclass
class LocalStack:
    """The embedded chain and the reference facilitator settling on it directly, added to a
    ``Services`` (started by its owner): what ``serve_all`` serves a resource server beside, and
    other servers (``x402sim serve mcp``) too. ``payee`` is a fresh address for a server that names
    none; ``facts`` the chain's and the agents' directory's, as printed."""

    chain: LocalChain
    accounts: list[dict]
    facilitator: Facilitator
    payee: str
    rpc_url: str
    facilitator_url: str
    facts: dict


def local_stack(
    setup: ChainSetup, services: Services, ports: Mapping[str, int], *, sponsoring: Iterable[str] = ()
) -> LocalStack:
    """Add the chain's JSON-RPC (``ports["chain"]``) and the facilitator (``ports["facilitator"]``)
    to ``services``, sharing one clock; ``sponsoring``: the gas-sponsoring extensions offered."""
    offered = sponsoring_extensions(sponsoring)
    chain, accounts = _new_chain(setup)
    facilitator_key = chain.new_key()
    payee = address_of_key(chain.new_key())
    chain.fund(address_of_key(facilitator_key), eth=setup.eth)
    facilitator = Facilitator(chain, facilitator_key, sponsoring=offered)
    clock = ChainClock(chain, time.time)  # one time for the node and the facilitator that settles on it
    files: dict = {}
    rpc_url = services.add("chain", _rpc_app(chain, setup, accounts, clock, files), ports["chain"])
    register_accounts(chain, accounts, origin_of(rpc_url), files)
    facilitator_url = services.add(
        "facilitator",
        facilitator_app(facilitator, chain_clock=clock, automine=setup.block_time is None),
        ports["facilitator"],
    )
    facts = {**_chain_info(chain, accounts, setup), **_agent_facts(rpc_url)}
    return LocalStack(chain, accounts, facilitator, payee, rpc_url, facilitator_url, facts)


def register_listings(stack: LocalStack, role: ResourceServer) -> None:
    """Catalog ``role``'s listed routes in the stack's facilitator's Bazaar (once its ``base_url`` is
    the served one, before the services start): a fresh stack is discoverable before anything is
    paid. A server settling through a facilitator in another process cannot do this; that one
    learns each listing from the first settled payment that echoes it."""
    if stack.facilitator.catalog is not None:
        stack.facilitator.catalog.register_server(role, int(stack.chain.now))


def serve_all(
    setup: ChainSetup,
    *,
    routes: RoutesConfig | None = None,
    host: str = LOOPBACK,
    ports: dict[str, int] | None = None,
    allow_public: bool = False,
    crawl: bool = False,
    crawl_allow: Iterable[str] = (),
    crawl_block_unsigned: bool = True,
    sponsoring: Iterable[str] = (),
) -> Running:
    """Chain RPC, facilitator and resource server together, on one loop. ``sponsoring``: the
    gas-sponsoring extensions the facilitator offers. With ``crawl``, the server
    admits requests by signature against the agents' directory the chain serves (the same keys, in
    process); ``crawl_allow`` (keyids or the directory's URL) are served free."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    services = Services(host, allow_public=allow_public)
    stack = local_stack(setup, services, ports, sponsoring=sponsoring)
    chain, facilitator, rpc_url = stack.chain, stack.facilitator, stack.rpc_url
    config = routes or RoutesConfig(routes=dict(DEMO_ROUTES))
    config.network = config.network or chain.network
    config.asset = config.asset or chain.usdc
    config.asset_name = config.asset_name or chain.token_name
    config.asset_version = config.asset_version or chain.token_version
    config.pay_to = config.pay_to or stack.payee
    switches: dict = {"supported": facilitator.supported()}
    if crawl:
        directory = KeyDirectory.from_jwks(agents_directory(stack.accounts), source=origin_of(rpc_url))
        switches["crawl"] = crawl_policy(directory, crawl_allow, block_unsigned=crawl_block_unsigned)
    role, client = resource_server(config, stack.facilitator_url, switches=switches)
    handlers = {"GET /weather": demo_weather} if routes is None else {}
    app = resource_server_app(role, client, handlers=handlers, channel_work_every=DEFAULT_CHANNEL_WORK_EVERY)
    server_url = services.add("server", app, ports["server"])
    role.base_url = server_url
    register_listings(stack, role)
    services.start()
    info = {
        "rpc_url": rpc_url,
        "facilitator_url": stack.facilitator_url,
        "server_url": server_url,
        **stack.facts,
        "payee": role.pay_to,
        "facilitator_address": facilitator.address,
        "sponsoring": facilitator.supported().extensions,
    }
    if crawl:
        info["crawl_policy"] = _crawl_facts(role.crawl)
    return Running(services, info)


def _controlled(app, closed: threading.Event, health: dict | None = None):
    """``app`` behind the e2e harness's controls: ``POST /close`` answers 200, then sets ``closed``
    (the process owner stops the services, which finish the answer first); ``GET /health`` answers
    ``health`` when given (else ``app`` answers it)."""

    async def controlled(scope, receive, send) -> None:
        if scope["type"] == "http":
            route = (scope.get("method"), scope.get("path"))
            if route == ("POST", "/close"):
                await JSONResponse({"status": "closing"})(scope, receive, send)
                closed.set()
                return
            if health is not None and route == ("GET", "/health"):
                await JSONResponse(health)(scope, receive, send)
                return
        await app(scope, receive, send)

    return controlled


# -- the e2e environment contract -------------------------------------------------------------------

DEFAULT_PRICE_ATOMIC = 1_000
DEFAULT_PROTECTED_PATH = "/protected"
DEFAULT_MAX_AMOUNT_ATOMIC = UNIT  # $1 of a 6-decimals asset: the SDKs' default spend cap


class EnvError(InputError, ValueError):
    """A variable of the e2e environment contract is missing or wrong; the message names it."""


@overload
def _var(environ: Mapping[str, str], *names: str, required: Literal[True] = True) -> str: ...
@overload
def _var(environ: Mapping[str, str], *names: str, required: bool) -> str | None: ...
def _var(environ: Mapping[str, str], *names: str, required: bool = True) -> str | None:
    """The first of ``names`` set to something other than blanks (list a role-prefixed name first)."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    if required:
        alternatives = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        raise EnvError(f"environment variable {names[0]}{alternatives} is not set")
    return None


def _int_var(environ: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _var(environ, name, required=False)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise EnvError(f"environment variable {name}={raw!r}: expected a decimal integer") from None
    if not low <= value <= high:
        raise EnvError(f"environment variable {name}={value}: expected {low} to {high}")
    return value


def _seconds_var(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive, finite number of seconds (decimal, e.g. ``2.5``)."""
    raw = _var(environ, name, required=False)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise EnvError(f"environment variable {name}={raw!r}: expected a positive number of seconds")
    return value


def _port(environ: Mapping[str, str], default: int) -> int:
    return _int_var(environ, "PORT", default, low=0, high=65_535)


def _network(environ: Mapping[str, str]) -> str:
    """``EVM_NETWORK`` as CAIP-2 ``eip155:<id>``; a v1 name (``base-sepolia``) is translated."""
    raw = _var(environ, "EVM_NETWORK")
    if ":" not in raw:
        try:
            return v1_to_caip2(raw)
        except ProtocolError:
            raise EnvError(f"environment variable EVM_NETWORK={raw!r}: expected eip155:<chain id>") from None
    problem = caip2_problem(raw)
    if problem is None and not raw.startswith("eip155:"):
        problem = "not an EVM network, expected eip155:<chain id>"
    if problem is not None:
        raise EnvError(f"environment variable EVM_NETWORK={raw!r}: {problem}")
    return raw


@overload
def _address(environ: Mapping[str, str], *names: str, required: Literal[True] = True) -> str: ...
@overload
def _address(environ: Mapping[str, str], *names: str, required: bool) -> str | None: ...
def _address(environ: Mapping[str, str], *names: str, required: bool = True) -> str | None:
    raw = _var(environ, *names, required=required)
    if raw is None:
        return None
    if not is_address(raw):
        name = next(n for n in names if environ.get(n, "").strip())
        raise EnvError(f"environment variable {name}={raw!r}: not an address")
    return to_checksum_address(raw)


def _key(environ: Mapping[str, str], *names: str) -> bytes:
    raw = _var(environ, *names)
    name = next(n for n in names if environ.get(n, "").strip())
    try:
        key = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        raise EnvError(f"environment variable {name}: not a hex private key") from None
    if len(key) != 32:
        raise EnvError(f"environment variable {name}: a private key is 32 bytes, got {len(key)}")
    return key


@overload
def _url(environ: Mapping[str, str], name: str, *, required: Literal[True] = True) -> str: ...
@overload
def _url(environ: Mapping[str, str], name: str, *, required: bool) -> str | None: ...
def _url(environ: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    raw = _var(environ, name, required=required)
    if raw is not None and not raw.startswith(("http://", "https://")):
        raise EnvError(f"environment variable {name}={raw!r}: expected an http:// or https:// URL")
    return raw


def check_rpc_network(rpc_url: str, network: str, *, timeout: float = 5.0) -> RpcChain:
    """The chain at ``rpc_url``, if it is ``network``; EnvError naming both variables otherwise
    (ChainError when it cannot be reached)."""
    chain = RpcChain(rpc_url, timeout=timeout)
    if chain.network != network:
        chain.close()
        raise EnvError(
            f"EVM_RPC_URL {rpc_url} is chain {chain.chain_id} ({chain.network}), but EVM_NETWORK is {network}"
        )
    return chain


@dataclass(frozen=True)
class ServerEnv:
    """What ``x402sim serve server --from-env`` serves: ``GET path`` at ``price`` atomic units."""

    port: int
    facilitator_url: str
    network: str
    pay_to: str
    asset: str
    asset_name: str
    asset_version: str
    price: int
    path: str
    rpc_url: str | None
    second_path: str | None = None  # SECOND_PROTECTED_PATH: another paid route at the same price
    failing_path: str | None = None  # FAILING_PATH: a paid route whose handler answers 500
    payment_identifier: str = "off"  # PAYMENT_IDENTIFIER: off, optional or required
    facilitator_timeout: float = DEFAULT_TIMEOUT  # FACILITATOR_TIMEOUT_SECONDS: bound of each call
    redirect_path: str | None = None  # REDIRECT_PATH: a paid route whose handler answers 303 to path
    permit2: bool = False  # EVM_PERMIT2_ASSET given: the e2e servers' Permit2 and upto endpoints too

    def routes(self) -> tuple[dict[str, Route], dict[str, Handler]]:
        """The paid routes this server sells, and their handlers."""
        routes: dict[str, Route] = {}
        handlers: dict[str, Handler] = {}
        for path, what, status in (
            (self.path, "Protected resource (x402 e2e contract)", 200),
            (self.second_path, "Second protected resource", 200),
            (self.failing_path, "A paid route whose handler fails", 500),
            (self.redirect_path, "A paid route whose handler redirects to the protected resource", 303),
        ):
            if path is None:
                continue
            key = f"GET {path}"
            routes[key] = Route(key, self.price, description=what)
            body = (
                {"message": "paid content", "path": path, "paid": True}
                if status < 400
                else {"error": "handler failed"}
            )
            moved = (("Location", self.path),) if status == 303 else ()
            handlers[key] = _json_handler(status, body, moved)
        if self.permit2:
            for path, route in E2E_PERMIT2_ROUTES.items():
                routes[route.key] = route
                handlers[route.key] = _json_handler(
                    200, {"message": "paid content", "path": path, "paid": True}
                )
        return routes, handlers


def _e2e_permit2_routes() -> dict[str, Route]:
    """The x402 e2e servers' Permit2 endpoints: exact for 1000, upto for at most 2000 charging 1000,
    each plain and with either gas-sponsoring extension in its name (x402sim declares every extension
    its facilitator offers on all of them)."""
    routes = {}
    for scheme, price in (("exact", E2E_PERMIT2_PRICE), ("upto", E2E_UPTO_MAX)):
        for suffix in ("", "-eip2612GasSponsoring", "-erc20ApprovalGasSponsoring"):
            path = f"/{scheme}/evm/permit2{suffix}"
            usage = (lambda request, response: E2E_UPTO_CHARGE) if scheme == "upto" else None
            routes[path] = Route(
                f"GET {path}",
                price,
                description=f"{scheme} through Permit2 (x402 e2e contract)",
                scheme=scheme,
                transfer_method="permit2",
                usage=usage,
            )
    return routes


E2E_PERMIT2_PRICE = 1_000
E2E_UPTO_MAX = 2_000
E2E_UPTO_CHARGE = 1_000
E2E_PERMIT2_ROUTES = _e2e_permit2_routes()


def _json_handler(status: int, body: Mapping[str, object], headers: Headers = ()) -> Handler:
    """A handler answering every request with ``status``, the JSON ``body`` and ``headers``."""
    return lambda request: HttpResponse.of_json(status, body, headers)


@overload
def _path_var(environ: Mapping[str, str], name: str, default: str) -> str: ...
@overload
def _path_var(environ: Mapping[str, str], name: str, default: None) -> str | None: ...
def _path_var(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    path = _var(environ, name, required=False) or default
    if path is not None and (not path.startswith("/") or any(c in path for c in " ?#")):
        raise EnvError(f"environment variable {name}={path!r}: expected a path such as /protected")
    return path


def server_env(environ: Mapping[str, str]) -> ServerEnv:
    """Read ``PORT`` (default 4021), ``FACILITATOR_URL``, ``EVM_NETWORK``, ``SERVER_EVM_ADDRESS`` or
    ``EVM_PAYEE_ADDRESS``, ``EVM_ASSET``, ``EVM_ASSET_NAME``, ``EVM_ASSET_VERSION``, ``PRICE_ATOMIC``
    (default 1000), ``PROTECTED_PATH`` (default /protected), ``EVM_RPC_URL`` (optional),
    ``FACILITATOR_TIMEOUT_SECONDS`` (default 30: the bound of each facilitator call) and
    ``EVM_PERMIT2_ASSET`` (optional: the e2e servers' Permit2 and upto endpoints are sold too; it must
    be the asset sold, since one server sells one asset).

    Missing asset facts come from the network's preset when it has a canonical token (Base, Base
    Sepolia), else from the chain at ``EVM_RPC_URL`` (an x402sim chain names its token), else they
    are an EnvError. A given ``EVM_RPC_URL`` must be ``EVM_NETWORK``'s chain."""
    port = _port(environ, DEFAULT_PORTS["server"])
    facilitator_url = _url(environ, "FACILITATOR_URL")
    network = _network(environ)
    pay_to = _address(environ, "SERVER_EVM_ADDRESS", "EVM_PAYEE_ADDRESS")
    asset = _address(environ, "EVM_ASSET", required=False)
    name = _var(environ, "EVM_ASSET_NAME", required=False)
    version = _var(environ, "EVM_ASSET_VERSION", required=False)
    price = _int_var(environ, "PRICE_ATOMIC", DEFAULT_PRICE_ATOMIC, low=1, high=2**256 - 1)
    path = _path_var(environ, "PROTECTED_PATH", DEFAULT_PROTECTED_PATH)
    second_path = _path_var(environ, "SECOND_PROTECTED_PATH", None)
    failing_path = _path_var(environ, "FAILING_PATH", None)
    redirect_path = _path_var(environ, "REDIRECT_PATH", None)
    payment_identifier = _var(environ, "PAYMENT_IDENTIFIER", required=False) or "off"
    if payment_identifier not in PAYMENT_IDENTIFIER_MODES:
        raise EnvError(
            f"environment variable PAYMENT_IDENTIFIER={payment_identifier!r}: expected one of "
            f"{', '.join(PAYMENT_IDENTIFIER_MODES)}"
        )
    rpc_url = _url(environ, "EVM_RPC_URL", required=False)
    facilitator_timeout = _seconds_var(environ, "FACILITATOR_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)
    known = preset_for_network(network)
    if known is not None and known.token_address is not None and asset in (None, known.token_address):
        asset, name, version = known.token_address, name or known.token_name, version or known.token_version
    if rpc_url is not None:
        chain = check_rpc_network(rpc_url, network)
        try:
            if asset is None:
                info = _x402sim_info(chain)
                if info is None:
                    raise EnvError(
                        f"environment variable EVM_ASSET is not set ({rpc_url} does not name a token)"
                    )
                asset = to_checksum_address(info["token"])
            name = name or chain.name_of(asset)
            version = version or chain.version_of(asset)
        except ChainError as exc:
            raise EnvError(f"EVM_ASSET {asset} on EVM_RPC_URL {rpc_url}: {exc}") from None
        finally:
            chain.close()
    for var, value in (("EVM_ASSET", asset), ("EVM_ASSET_NAME", name), ("EVM_ASSET_VERSION", version)):
        if value is None:
            raise EnvError(
                f"environment variable {var} is not set (needed for {network}, which has no preset token; "
                "or give EVM_RPC_URL of an x402sim chain)"
            )
    assert asset is not None and name is not None and version is not None  # the loop above checked
    permit2_asset = _address(environ, "EVM_PERMIT2_ASSET", required=False)
    if permit2_asset is not None and permit2_asset != to_checksum_address(asset):
        raise EnvError(
            f"environment variable EVM_PERMIT2_ASSET={permit2_asset}: x402sim sells one asset, and "
            f"EVM_ASSET is {asset} (the token supports both EIP-3009 and Permit2)"
        )
    return ServerEnv(
        port,
        facilitator_url,
        network,
        pay_to,
        asset,
        name,
        version,
        price,
        path,
        rpc_url,
        second_path,
        failing_path,
        payment_identifier,
        facilitator_timeout,
        redirect_path,
        permit2_asset is not None,
    )


def _x402sim_info(chain: RpcChain) -> dict | None:
    try:
        info = chain.rpc("x402sim_info")
    except ChainError:
        return None
    return info if isinstance(info, dict) and is_address(info.get("token")) else None


def serve_server_env(
    env: ServerEnv,
    *,
    host: str = LOOPBACK,
    allow_public: bool = False,
    facilitator_timeout: float | None = None,
) -> Running:
    """The e2e harness's resource server: ``env.routes()``, with ``/health`` and ``/close``; each
    facilitator call bounded by ``facilitator_timeout`` seconds (None: ``env``'s)."""
    routes, handlers = env.routes()
    config = RoutesConfig(
        routes=routes,
        network=env.network,
        asset=env.asset,
        asset_name=env.asset_name,
        asset_version=env.asset_version,
        pay_to=env.pay_to,
    )
    running = serve_server(
        config,
        env.facilitator_url,
        host=host,
        port=env.port,
        allow_public=allow_public,
        facilitator_timeout=env.facilitator_timeout if facilitator_timeout is None else facilitator_timeout,
        handlers=handlers,
        control=True,
        switches={"payment_identifier": env.payment_identifier},
    )
    running.info["price"] = env.price
    return running


@dataclass(frozen=True)
class FacilitatorEnv:
    port: int
    rpc_url: str
    network: str
    key: bytes = field(repr=False)


def facilitator_env(environ: Mapping[str, str]) -> FacilitatorEnv:
    """Read ``PORT`` (default 4022), ``EVM_RPC_URL``, ``EVM_NETWORK`` and ``FACILITATOR_EVM_PRIVATE_KEY``
    or ``EVM_PRIVATE_KEY``."""
    port = _port(environ, DEFAULT_PORTS["facilitator"])
    rpc_url = _url(environ, "EVM_RPC_URL")
    network = _network(environ)
    key = _key(environ, "FACILITATOR_EVM_PRIVATE_KEY", "EVM_PRIVATE_KEY")
    return FacilitatorEnv(port, rpc_url, network, key)


def serve_facilitator_env(
    env: FacilitatorEnv,
    *,
    host: str = LOOPBACK,
    allow_public: bool = False,
    settle_timeout: float = 30.0,
    sponsoring: Iterable[str] = (),
) -> Running:
    """The reference facilitator for the e2e harness, after checking that ``EVM_RPC_URL`` is
    ``EVM_NETWORK``'s chain; offering the gas-sponsoring extensions ``sponsoring``."""
    check_rpc_network(env.rpc_url, env.network).close()
    return serve_facilitator(
        env.rpc_url,
        key=env.key,
        host=host,
        port=env.port,
        allow_public=allow_public,
        settle_timeout=settle_timeout,
        control=True,
        sponsoring=sponsoring,
    )


@dataclass(frozen=True)
class ClientEnv:
    url: str
    key: bytes = field(repr=False)
    network: str = ""
    rpc_url: str | None = None
    max_amount: int = DEFAULT_MAX_AMOUNT_ATOMIC


def client_env(environ: Mapping[str, str]) -> ClientEnv:
    """Read ``RESOURCE_SERVER_URL`` and ``ENDPOINT_PATH`` (joined), ``CLIENT_EVM_PRIVATE_KEY`` or
    ``EVM_PRIVATE_KEY``, ``EVM_NETWORK``, ``EVM_RPC_URL`` (optional) and ``MAX_AMOUNT_ATOMIC``
    (default 1000000)."""
    base = _url(environ, "RESOURCE_SERVER_URL")
    path = _var(environ, "ENDPOINT_PATH")
    url = base.rstrip("/") + "/" + path.lstrip("/")
    key = _key(environ, "CLIENT_EVM_PRIVATE_KEY", "EVM_PRIVATE_KEY")
    network = _network(environ)
    rpc_url = _url(environ, "EVM_RPC_URL", required=False)
    max_amount = _int_var(environ, "MAX_AMOUNT_ATOMIC", DEFAULT_MAX_AMOUNT_ATOMIC, low=0, high=2**256 - 1)
    return ClientEnv(url, key, network, rpc_url, max_amount)


def client_verdict(result) -> dict:
    """The e2e harness's client verdict for a ``FetchResult``: ``success`` (a 2xx answer), ``data``
    (the body as JSON, else text), ``status_code`` and ``payment_response`` (the decoded settlement
    header, or None)."""
    body = result.body
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = body.decode("utf-8", "replace")
    return {
        "success": 200 <= result.status < 300,
        "data": data,
        "status_code": result.status,
        "payment_response": result.settlement.to_wire() if result.settlement is not None else None,
    }


__all__ = [
    "ChainSetup",
    "ClientEnv",
    "EnvError",
    "FacilitatorEnv",
    "LocalStack",
    "Running",
    "ServerEnv",
    "account_agent_key",
    "agents_directory",
    "check_rpc_network",
    "client_env",
    "client_verdict",
    "crawl_policy",
    "facilitator_env",
    "fetch_supported",
    "local_stack",
    "register_accounts",
    "resource_server",
    "serve_all",
    "serve_chain",
    "serve_facilitator",
    "serve_facilitator_env",
    "serve_server",
    "serve_server_env",
    "server_env",
    "sponsoring_extensions",
    "with_agent_registrations",
    "with_agents_directory",
]
