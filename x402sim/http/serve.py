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
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from ..actors.facilitator import Facilitator
from ..actors.server import ResourceServer, Route
from ..evm.chain import ETHER, ChainError, LocalChain
from ..evm.contracts import MULTICALL3_ADDRESS
from ..evm.eip712 import address_of_key
from ..evm.rpc_chain import RpcChain
from .chain_clock import ChainClock
from .chain_rpc import chain_rpc_app
from .client import FacilitatorClient
from .facilitator_app import facilitator_app
from .routes_file import RoutesConfig
from .runner import LOOPBACK, Services
from .server_app import MAX_IN_FLIGHT, demo_weather, resource_server_app

USDC = 10**6
DEFAULT_PORTS = {"chain": 8545, "facilitator": 4022, "server": 4021}
DEMO_ROUTES = {"GET /weather": Route("GET /weather", 1_000, description="Current weather (demo)")}


@dataclass
class ChainSetup:
    accounts: int = 10
    usdc: int = 1_000 * USDC
    eth: int = 100 * ETHER
    seed: int = 0
    chain_id: int = 31337
    block_time: float | None = None


@dataclass
class Running:
    services: Services
    info: dict = field(default_factory=dict)

    def stop(self) -> None:
        self.services.stop()


def _new_chain(setup: ChainSetup) -> tuple[LocalChain, list[dict]]:
    chain = LocalChain(chain_id=setup.chain_id, seed=setup.seed, start_time=int(time.time()))
    keys = [chain.new_key() for _ in range(setup.accounts)]
    chain.fund_many([(address_of_key(k), setup.usdc, setup.eth) for k in keys])
    # What is printed is what the chain holds, read back, never what was asked for.
    accounts = [
        {"address": (a := address_of_key(k)), "private_key": "0x" + k.hex(), "usdc": chain.balance_of(a)}
        for k in keys
    ]
    short = [a["address"] for a in accounts if a["usdc"] != setup.usdc]
    if short:
        raise ChainError(f"funding failed: {len(short)} accounts (first {short[0]}) do not hold {setup.usdc}")
    return chain, accounts


def _chain_info(chain: LocalChain, accounts: list[dict]) -> dict:
    return {
        "network": chain.network,
        "chain_id": chain.chain_id,
        "asset": chain.usdc,
        "asset_name": chain.token_name,
        "asset_version": chain.token_version,
        "multicall3": MULTICALL3_ADDRESS,
        "accounts": accounts,
    }


def _rpc_app(chain: LocalChain, setup: ChainSetup, accounts: list[dict], clock: ChainClock):
    return chain_rpc_app(
        chain,
        automine=setup.block_time is None,
        block_time=setup.block_time,
        chain_clock=clock,
        accounts=accounts,
    )


def serve_chain(
    setup: ChainSetup, *, host: str = LOOPBACK, port: int = 8545, allow_public: bool = False
) -> Running:
    chain, accounts = _new_chain(setup)
    services = Services(host, allow_public=allow_public)
    rpc_url = services.add("chain", _rpc_app(chain, setup, accounts, ChainClock(chain, time.time)), port)
    services.start()
    return Running(services, {"rpc_url": rpc_url, **_chain_info(chain, accounts)})


def serve_facilitator(
    rpc_url: str,
    *,
    key: bytes | None = None,
    host: str = LOOPBACK,
    port: int = 4022,
    allow_public: bool = False,
    settle_timeout: float = 30.0,
) -> Running:
    """The reference facilitator settling on the chain at ``rpc_url`` from the account of ``key``.

    Without a key, a fresh test key is made and funded with ether through the chain's
    ``x402sim_fund`` method (so only an x402sim chain can fund it)."""
    chain = RpcChain(rpc_url)
    if key is None:
        key = secrets.token_bytes(32)  # a throwaway test key, funded below
        try:
            chain.rpc("x402sim_fund", address_of_key(key), "0x0", hex(100 * ETHER))
        except ChainError as exc:
            raise ChainError(
                f"cannot fund a facilitator key on {rpc_url} ({exc}); pass --key of an account with ether"
            ) from None
    facilitator = Facilitator(chain, key)
    services = Services(host, allow_public=allow_public)
    url = services.add(
        "facilitator", facilitator_app(facilitator, settle_timeout=settle_timeout, automine=False), port
    )
    services.start()
    return Running(
        services,
        {
            "facilitator_url": url,
            "network": chain.network,
            "chain_id": chain.chain_id,
            "facilitator_address": facilitator.address,
        },
    )


def resource_server(
    config: RoutesConfig, facilitator_url: str, *, facilitator_timeout: float = 30.0
) -> tuple:
    missing = [
        k for k in ("network", "asset", "asset_name", "asset_version", "pay_to") if not getattr(config, k)
    ]
    if missing:
        raise ValueError(f"{config.source or 'server'}: missing {', '.join(missing)}")
    role = ResourceServer(
        network=config.network,
        asset=config.asset,
        asset_name=config.asset_name,
        asset_version=config.asset_version,
        pay_to=config.pay_to,
        routes=config.routes,
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
    facilitator_timeout: float = 30.0,
) -> Running:
    role, client = resource_server(config, facilitator_url, facilitator_timeout=facilitator_timeout)
    services = Services(host, allow_public=allow_public)
    url = services.add("server", resource_server_app(role, client, origin=origin), port)
    role.base_url = url
    services.start()
    return Running(
        services, {"server_url": url, "network": role.network, "asset": role.asset, "payee": role.pay_to}
    )


def serve_all(
    setup: ChainSetup,
    *,
    routes: RoutesConfig | None = None,
    host: str = LOOPBACK,
    ports: dict[str, int] | None = None,
    allow_public: bool = False,
) -> Running:
    """Chain RPC, facilitator and resource server together, on one loop."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    chain, accounts = _new_chain(setup)
    facilitator_key = chain.new_key()
    payee = address_of_key(chain.new_key())
    chain.fund(address_of_key(facilitator_key), eth=setup.eth)
    facilitator = Facilitator(chain, facilitator_key)
    clock = ChainClock(chain, time.time)  # one time for the node and the facilitator that settles on it
    services = Services(host, allow_public=allow_public)
    rpc_url = services.add("chain", _rpc_app(chain, setup, accounts, clock), ports["chain"])
    facilitator_url = services.add(
        "facilitator",
        facilitator_app(facilitator, chain_clock=clock, automine=setup.block_time is None),
        ports["facilitator"],
    )
    config = routes or RoutesConfig(routes=dict(DEMO_ROUTES))
    config.network = config.network or chain.network
    config.asset = config.asset or chain.usdc
    config.asset_name = config.asset_name or chain.token_name
    config.asset_version = config.asset_version or chain.token_version
    config.pay_to = config.pay_to or payee
    role, client = resource_server(config, facilitator_url)
    handlers = {"GET /weather": demo_weather} if routes is None else {}
    server_url = services.add("server", resource_server_app(role, client, handlers=handlers), ports["server"])
    role.base_url = server_url
    services.start()
    info = {
        "rpc_url": rpc_url,
        "facilitator_url": facilitator_url,
        "server_url": server_url,
        **_chain_info(chain, accounts),
        "payee": role.pay_to,
        "facilitator_address": facilitator.address,
    }
    return Running(services, info)
