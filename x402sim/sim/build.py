"""Building a world from its scenario: the plain parts (facilitators, servers, agents, governors)
made from the scenario's specs.

Permit2: a server selling through Permit2 is given its first facilitator's ``/supported`` (upto's
facilitatorAddress, the sponsoring extensions it declares); an upto route charges its ``usage``
(``UptoCharge``); agents with a Permit2 target get the chain to read their allowance from, and
use their group's one sponsoring extension (``Client.sponsoring``), or none; ``approved`` and
``self`` groups approve Permit2 in the set-up blocks (``approve_at_start``), from ether granted
for it.

Rules: each function builds one kind of part of the world being built (a ``world.World``, passed
in) from its spec, with keys and random streams from the world (``World.key``, ``World.rng``), and
in the order ``World.__init__`` calls them: streams are drawn in that order, so moving a call moves
the results. Nothing here runs a simulation; the parts only say what the scenario built.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import simpy

from ..actors.client import Client, SpendPolicy
from ..actors.client_channels import ChannelStore, ClientChannels, DepositPolicy
from ..actors.facilitator import Facilitator
from ..actors.messages import HttpRequest, HttpResponse
from ..actors.server import ReplayGuard, ResourceServer, Route
from ..evm.chain import ETHER, GWEI, LocalChain
from ..evm.ledger import LedgerChain
from ..evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, approve_call
from ..evm.txsign import sign_eip1559
from ..governance import Decision, Governor
from ..governance.audit import AuditLog
from ..governance.policy import Allow, Block, NewPayee, Policy
from ..mechanisms.offer import Offer
from ..mechanisms.sponsoring import APPROVAL_GAS
from ..transports.mcp_carry import TOOL_BASE_URL
from . import scenario as sc
from .reads import CountingChain
from .sketch import LatencyStats

if TYPE_CHECKING:
    from .trust import TrustWorld

FACILITATOR_ETH = 1_000 * ETHER
DRAINER_ETH = ETHER // 10


class BuildHost(Protocol):
    """What the builders read and fill in of the world being built (a ``world.World``): its
    scenario, chain, environment, seed and shard, keys and random streams, the parts already built,
    and what they fill in (faults, audit log, governors' agents, agents, minted USDC)."""

    rpc_faults: list[sc.RpcErrors]
    lost_answers: list[sc.SettleAnswerLost]
    stalls: list[sc.ChainStall]
    audit: AuditTap | None
    minted: int

    @property
    def scenario(self) -> sc.Scenario: ...
    @property
    def chain(self) -> LocalChain | LedgerChain: ...
    @property
    def env(self) -> simpy.Environment: ...
    @property
    def seed(self) -> int: ...
    @property
    def shard(self) -> tuple[int, int]: ...
    @property
    def payees(self) -> dict[str, str]: ...
    @property
    def facilitators(self) -> dict[str, SimFacilitator]: ...
    @property
    def trust(self) -> TrustWorld | None: ...
    @property
    def attack_routes(self) -> set[tuple[str, str]]: ...
    @property
    def specs(self) -> dict[str, sc.AgentGroup]: ...
    @property
    def governors(self) -> dict[str, Governor]: ...
    @property
    def governed_by(self) -> dict[str, Governor]: ...
    @property
    def agents(self) -> list[Agent]: ...
    @property
    def groups(self) -> dict[str, list[Agent]]: ...
    @property
    def named(self) -> dict[str, Agent]: ...

    @property
    def endpoint_mechanisms(self) -> dict[tuple[str, str], str]: ...

    def key(self, label: str) -> bytes: ...

    def rng(self, label: str, shared: bool = False) -> random.Random: ...

    def approve_at_once(self, decision: Decision) -> bool: ...

    def on_freeze(self, agent: str, trigger: str) -> None: ...


@dataclass
class SimFacilitator:
    spec: sc.FacilitatorSpec
    role: Facilitator
    slots: simpy.Resource
    rng: random.Random
    down: list[sc.Window] = field(default_factory=list)
    slow: list[sc.FacilitatorSlow] = field(default_factory=list)
    verifies: int = 0
    settles: int = 0
    waits: LatencyStats = field(default_factory=LatencyStats)  # seconds queued for a slot
    max_queue: int = 0
    reads: CountingChain | None = None  # the role's round trips, when they are charged one by one

    @property
    def name(self) -> str:
        return self.spec.name

    def is_down(self, t: float) -> bool:
        return any(w.covers(t) for w in self.down)

    def slowdown(self, t: float) -> float:
        factor = 1.0
        for w in self.slow:
            if w.covers(t):
                factor = max(factor, w.factor)
        return factor


@dataclass
class SimServer:
    spec: sc.Server
    role: ResourceServer
    facilitators: list[SimFacilitator]
    handler_times: dict[str, Any]
    rng: random.Random
    name: str = ""
    # route key -> its endpoint's spec, for the routes reached otherwise than by plain HTTP or whose
    # handler fails (the others are served as they always were)
    special: dict[str, sc.EndpointSpec] = field(default_factory=dict)
    fails_rng: random.Random | None = None  # draws which calls of a failing tool fail


@dataclass
class Agent:
    name: str
    group: sc.AgentGroup
    client: Client
    key: bytes
    requests: int = 0
    policy: str | None = None  # the governance policy it pays under (None: no governor)


class AuditTap(AuditLog):
    """The audit log the world's governors share (written to ``path`` when there is one; its chain's
    head is kept either way), which tells the world of each freeze at once."""

    def __init__(self, world: BuildHost, path: str | Path | None = None) -> None:
        if path is not None and Path(path).exists():
            raise ValueError(f"audit log {path} exists: a run's audit log starts empty")
        super().__init__(path)
        self.world = world

    def append(self, entry: dict) -> dict:
        chained = super().append(entry)
        if entry["event"] == "freeze":
            self.world.on_freeze(entry["agent"], entry["rule"])
        return chained


def payee_labels(world: BuildHost) -> list[str]:
    """Every payee label of the servers (their own, then those their price changes name), once each."""
    labels = []
    for copy in world.scenario.server_copies():
        changed = [c.pay_to for e in copy.spec.endpoints for c in e.changes if c.pay_to]
        for label in [copy.payee, *changed]:
            if label not in labels:
                labels.append(label)
    return labels


def facilitator(world: BuildHost, spec: sc.FacilitatorSpec) -> SimFacilitator:
    """The facilitator ``spec``: its role on the world's chain (funded with gas money) and its slots."""
    key = world.key(f"facilitator:{spec.name}")
    reads = (
        CountingChain(world.chain) if world.scenario.network.facilitator_chain_reads == "counted" else None
    )
    role = Facilitator(
        reads if reads is not None else world.chain,
        key,
        dedupe=spec.dedupe,
        check_transfer_log=spec.check_transfer_log,
        verify_mode=spec.verify,
        history=0,  # the chain's receipts are folded into the metrics instead
        sponsoring=frozenset(spec.sponsoring),
    )
    world.chain.fund(role.address, eth=FACILITATOR_ETH)
    return SimFacilitator(
        spec,
        role,
        simpy.Resource(world.env, capacity=spec.concurrency),
        world.rng(f"facilitator:{spec.name}"),
        down=list(spec.outages),
        reads=reads,
    )


def apply_faults(world: BuildHost) -> None:
    """Sort the scenario's faults: outages and slowdowns onto their facilitators, the rest into the
    world's ``rpc_faults``, ``lost_answers`` and ``stalls``."""
    world.rpc_faults = []
    world.lost_answers = []
    world.stalls = []
    for fault in world.scenario.faults:
        if isinstance(fault, sc.FacilitatorDown):
            world.facilitators[fault.facilitator].down.append(fault)
        elif isinstance(fault, sc.FacilitatorSlow):
            world.facilitators[fault.facilitator].slow.append(fault)
        elif isinstance(fault, sc.RpcErrors):
            world.rpc_faults.append(fault)
        elif isinstance(fault, sc.SettleAnswerLost):
            world.lost_answers.append(fault)
        else:
            world.stalls.append(fault)


def server(world: BuildHost, copy: sc.ServerCopy) -> SimServer:
    """The server ``copy``: its routes (prices drawn from shared streams), its role and its price
    changes (processes of the world's environment)."""
    chain = world.chain
    domain = chain.domain
    spec = copy.spec
    routes = {}
    handler_times = {}
    charges: list[UptoCharge] = []
    for e in spec.endpoints:
        key = f"{e.method} {e.path}"
        # one stream per endpoint of each copy: a copy's prices do not depend on the others
        price = sc.draw_price(e.price, world.rng(f"price:{copy.name} {key}", shared=True))
        route = Route(key, price, max_timeout_seconds=e.max_timeout_seconds)
        if e.channels:
            route = dataclasses.replace(
                route,
                scheme=e.scheme,
                transfer_method=e.method_of_transfer,
                min_deposit=e.min_deposit,
                withdraw_delay=e.withdraw_delay,
                claim_interval=e.claim_interval,
                settle_interval=e.settle_interval,
            )
        elif e.permit2:
            usage = None
            if e.usage is not None:
                charges.append(UptoCharge(e.usage, world.rng(f"usage:{copy.name} {key}"), key))
                usage = charges[-1]
            route = dataclasses.replace(
                route, scheme=e.scheme, transfer_method=e.method_of_transfer, usage=usage
            )
        world.endpoint_mechanisms[(copy.name, key)] = mechanism_label(e)
        routes[route.key] = route
        handler_times[route.key] = e.handler_time or spec.handler_time
    # what the first facilitator lists (upto's facilitatorAddress, the sponsoring extensions)
    # reaches the offers of a server that sells through Permit2
    # (and a batch-settlement route's receiverAuthorizer: the facilitator's, which signs claims)
    asks = any(e.permit2 or e.channels for e in spec.endpoints)
    supported = world.facilitators[copy.facilitators[0]].role.supported() if asks else None
    role = ResourceServer(
        network=chain.network,
        asset=chain.usdc,
        asset_name=domain.name,  # the token's EIP-712 name and version
        asset_version=domain.version,
        pay_to=world.payees[copy.payee],
        routes=routes,
        base_url=TOOL_BASE_URL
        if all(e.transport == "mcp" for e in spec.endpoints)
        else f"http://{copy.name}.sim",
        upfront=spec.order == "upfront",
        replay_guard=ReplayGuard(int(spec.replay_guard.ttl)) if spec.replay_guard else None,
        serve_unsettled=spec.serve_unsettled,
        supported=supported,
        **(world.trust.server_kwargs(copy) if world.trust is not None else {}),
    )
    for charge in charges:
        charge.server = role
    server = SimServer(
        spec,
        role,
        [world.facilitators[n] for n in copy.facilitators],
        handler_times,
        world.rng(f"server:{copy.name}"),
        copy.name,
    )
    server.special = {
        f"{e.method} {e.path}": e for e in spec.endpoints if e.transport != "http" or e.fails > 0
    }
    if any(e.fails > 0 for e in spec.endpoints):
        server.fails_rng = world.rng(f"fails:{copy.name}")
    for e in spec.endpoints:
        for change in e.changes:
            world.env.process(change_route(world, server, f"{e.method} {e.path}", change))
    return server


def change_route(world: BuildHost, server: SimServer, key: str, change: sc.Change):
    """A SimPy process: ``server``'s route ``key`` changes at ``change.at``."""
    yield world.env.timeout(change.at)
    old = server.role.routes[key]
    pay_to = world.payees[change.pay_to] if change.pay_to else old.pay_to
    price = old.price if change.price is None else change.price
    # the role's routes are a read-only mapping to it: the changed route comes in a new one
    route = dataclasses.replace(old, price=price, pay_to=pay_to)
    server.role.routes = {**server.role.routes, key: route}
    if change.attack:
        world.attack_routes.add((server.name, key))
    else:
        world.attack_routes.discard((server.name, key))


def mechanism_label(endpoint: sc.EndpointSpec) -> str:
    """How the summary names the mechanism paying ``endpoint``: ``exact/eip3009``,
    ``exact/permit2``, ``upto/permit2``, ``batch-settlement/eip3009`` or ``batch-settlement/permit2``."""
    return f"{endpoint.scheme}/{endpoint.method_of_transfer}"


class UptoCharge:
    """The ``usage`` of an upto route: a charge drawn per served request, capped at the route's
    price (its signed maximum) as the server holds it now."""

    def __init__(self, usage: sc.Usage, rng: random.Random, key: str) -> None:
        self.usage, self.rng, self.key = usage, rng, key
        self.server: ResourceServer | None = None

    def __call__(self, request: HttpRequest, response: HttpResponse) -> int:
        maximum = self.server.routes[self.key].price if self.server is not None else 0
        return self.usage.charge(self.rng, maximum)


@dataclass(frozen=True)
class RequestsTopUp(DepositPolicy):
    """Tops a channel up when fewer than ``below_requests`` requests' worth (at the offer's price)
    would remain after the next voucher."""

    below_requests: int = 0

    def deposit_for(self, price: int, charged: int, balance: int, min_deposit: int | None) -> int | None:
        policy = DepositPolicy(size=self.size, top_up_below=self.below_requests * price)
        return policy.deposit_for(price, charged, balance, min_deposit)


@dataclass(frozen=True)
class NeverTopUpPolicy(DepositPolicy):
    """The ``never-top-up`` adversary's: it opens its channel with one deposit, then signs vouchers
    past the balance instead of depositing again."""

    def deposit_for(self, price: int, charged: int, balance: int, min_deposit: int | None) -> int | None:
        if balance > 0:
            return None
        return super().deposit_for(price, charged, balance, min_deposit)


def channel_policy(group: sc.AgentGroup) -> DepositPolicy:
    """How ``group``'s agents size and top up their deposits (``deposit``, ``top_up``, behaviour)."""
    if group.behaviour.kind == "never-top-up":
        return NeverTopUpPolicy(size=group.deposit)
    if group.top_up is not None:
        return RequestsTopUp(size=group.deposit, below_requests=group.top_up.below_requests)
    return DepositPolicy(size=group.deposit)


class BoundedChannels(ClientChannels):
    """A client's channels that refuse offers whose withdraw delay is longer than its group accepts
    (``max_withdraw_delay``): its escrow would be stuck longer than it is willing to wait."""

    def __init__(self, *args: Any, max_withdraw_delay: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_withdraw_delay = max_withdraw_delay

    def refusal(self, offer: Offer) -> str | None:
        delay = offer.extra.get("withdrawDelay")
        if isinstance(delay, int) and delay > self.max_withdraw_delay:
            return (
                f"withdrawDelay {delay} s is longer than the {self.max_withdraw_delay} s this agent accepts"
            )
        return super().refusal(offer)


def permit2_groups(world: BuildHost) -> set[str]:
    """The agent groups with a target paid through Permit2."""
    s = world.scenario
    mechanisms = world.endpoint_mechanisms
    return {
        g.name
        for g in s.agents
        if any(mechanisms.get(t, "").endswith("/permit2") for t in sc.resolve_targets(s, g))
    }


def approve_at_start(world: BuildHost, agents: list[Agent]) -> None:
    """Each of ``agents`` approves Permit2 for its tokens, paying its gas from the ether it was
    granted, in the set-up blocks (before any request)."""
    chain = world.chain
    hashes = []
    for agent in agents:
        signed = sign_eip1559(
            agent.key,
            chain_id=chain.chain_id,
            nonce=chain.pending_nonce(agent.client.address),
            gas=APPROVAL_GAS,
            max_fee_per_gas=2 * chain.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=chain.usdc,
            data=approve_call(PERMIT2_ADDRESS, UINT256_MAX),
        )
        hashes.append(chain.send_raw_transaction(signed.raw))
    while any(chain.receipt(h) is None for h in hashes):
        chain.mine()


def shard_members(world: BuildHost, group: sc.AgentGroup) -> range:
    """The indexes of the group's agents in this shard."""
    return range(world.shard[0], group.count, world.shard[1])


def make_governors(world: BuildHost, audit: str | Path | None) -> dict[str, Governor]:
    """One ``Governor`` per policy in use, sharing the world's ``AuditTap`` (written to ``audit``)."""
    used = world.scenario.governed()
    if not used:
        return {}
    world.audit = AuditTap(world, audit)
    governors = {}
    for name, groups in used.items():
        projects: dict[str, Iterable[str]] = {
            g: [f"{g}-{i}" for i in shard_members(world, world.specs[g])] for g in groups
        }
        policy = with_addresses(world, world.scenario.policy(name))
        governors[name] = Governor(
            policy, projects=projects, audit=world.audit, approver=world.approve_at_once
        )
    return governors


def with_addresses(world: BuildHost, policy: Policy) -> Policy:
    """``policy`` with the payee labels of its lists turned into this world's addresses."""

    def addresses(values: list[str]) -> list[str]:
        return [world.payees.get(v, v) for v in values]

    rules = [
        r.model_copy(update={"payees": addresses(r.payees)})
        if isinstance(r, Allow | Block) and r.payees is not None
        else r
        for r in policy.rules
    ]
    triggers = [
        t.model_copy(update={"known": addresses(t.known)}) if isinstance(t, NewPayee) else t
        for t in policy.triggers
    ]
    return policy.model_copy(update={"rules": rules, "triggers": triggers})


def make_agents(world: BuildHost) -> None:
    """Every agent of this shard (keys, clients, governors), funded on the chain in one go; fills the
    world's ``agents``, ``groups``, ``named``, ``governed_by`` and ``minted``."""
    grants: list[tuple[str, int, int]] = []
    permit2 = permit2_groups(world)
    channel_groups = {
        g.name
        for g in world.scenario.agents
        if any(
            world.endpoint_mechanisms.get(t, "").startswith("batch-settlement/")
            for t in sc.resolve_targets(world.scenario, g)
        )
    }
    approving: list[Agent] = []
    approval_eth = APPROVAL_GAS * (4 * world.chain.base_fee + 2 * GWEI)
    for group in world.scenario.agents:
        policy = SpendPolicy()
        spend = group.spend_policy
        if spend is not None:
            allowed = spend.allowed_pay_to
            policy = SpendPolicy(
                max_price=spend.max_price,
                budget=spend.budget,
                allowed_pay_to=[world.payees[label] for label in allowed] if allowed is not None else None,
            )
        governor = world.governors.get(group.policy_name or "")
        members = []
        for i in shard_members(world, group):
            key = world.key(f"agent:{group.name}:{i}")
            name = f"{group.name}-{i}"
            trust, gas = world.trust.client_kwargs(group, i, name) if world.trust is not None else ({}, 0)
            extra: dict = {}
            if group.name in channel_groups:  # its channels: deposits sized by the group's keys
                extra["deposit_policy"] = channel_policy(group)
                extra["channel_store"] = ChannelStore(keep_life=False)  # in memory, no life kept
            if group.name in permit2:  # it reads its allowance and nonces for Permit2, and sponsors
                extra["chain"] = world.chain  # its approval by its group's extension, if any
                sponsored = sc.APPROVAL_EXTENSIONS.get(group.approval)
                extra["sponsoring"] = (sponsored,) if sponsored else ()
            # no payment records kept on the role: the rows (and the metrics) say it all
            client = Client(
                key,
                (world.chain.network,),
                policy,
                seed=world.seed,
                history=0,
                governor=governor,
                agent=name,
                **trust,
                **extra,
            )
            if group.max_withdraw_delay is not None:
                client.channels = BoundedChannels(
                    client.key,
                    client.channels.store,
                    client.channels.policy,
                    chain=client.channels.chain,
                    max_withdraw_delay=group.max_withdraw_delay,
                )
            agent = Agent(name, group, client, key, policy=group.policy_name if governor else None)
            if governor is not None:
                world.governed_by[name] = governor
            members.append(agent)
            world.named[name] = agent
            funding = 0 if group.behaviour.kind == "unfunded" else group.funding
            eth = (DRAINER_ETH if group.behaviour.kind in ("drain", "withdraw-race") else 0) + gas
            if group.name in permit2 and group.approval in ("approved", "self"):
                eth += approval_eth
                approving.append(agent)
            if funding or eth:
                grants.append((client.address, funding, eth))
                world.minted += funding
        world.groups[group.name] = members
        world.agents.extend(members)
    if grants:
        world.chain.fund_many(grants)
    if approving:
        approve_at_start(world, approving)


__all__ = [
    "DRAINER_ETH",
    "FACILITATOR_ETH",
    "Agent",
    "AuditTap",
    "BuildHost",
    "SimFacilitator",
    "SimServer",
    "apply_faults",
    "change_route",
    "facilitator",
    "make_agents",
    "make_governors",
    "mechanism_label",
    "payee_labels",
    "server",
    "shard_members",
    "with_addresses",
]
