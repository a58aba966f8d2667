"""``batch-settlement`` in the simulator: the servers' channel work, the agents' refunds and the
channel adversaries, as SimPy processes in virtual time.

Theory of operation. A server with batch-settlement routes runs its ``channel_work`` (the reference
role's claim, settle and idle-refund rounds) every ``tick`` seconds, the least of its routes' claim
and settle intervals; the ``Settle`` effects it yields are answered by its facilitators through a
``SimDriver`` like any settlement (queues, service times, blocks), on a row that is never written
(``work_row``: channel work is not a request). The exposure (value the servers have served against
vouchers, not yet claimed, not yet settled) is sampled from their channel books every
``ChannelMetrics.sample_every`` seconds. Agents keep their channels in memory (no life kept: nothing
grows with payments).

* Refund rules (``AgentGroup.refund``): ``done`` asks each server an agent paid by channel for its
  escrow back once its group stops; ``idle`` asks once a channel has gone ``after`` seconds without a
  payment, then again only after new payments. A refund is the reference client's ``refund``.
* ``withdraw-race``: honest until ``at`` (it sends nothing more from then on), when it initiates the
  withdrawal of every channel's unclaimed escrow (its own transaction), then finalizes each one
  once the delay has passed. A receiver that has not claimed by then cannot: the chain paid the
  escrow back to the payer.
* ``channel-reuse``: pays the first server it meets honestly; every request to another server
  carries a voucher of that first channel (naming the first receiver). The servers and
  facilitators must refuse it.
* ``never-top-up``: its deposit policy (``build.NeverTopUpPolicy``) deposits once, then signs
  vouchers past its balance.

``finish`` reads, at the end of the run, each server's book against the chain: what it served, what
was claimed on chain, and for the channels of withdraw-race payers what the receiver lost (served
less claimed). Both backends: the ledger runs the batch-settlement contracts' rules
(``evm.batch_rules``), several times faster than py-evm.

Rules: every draw comes from the world's seeded streams; times are virtual; no protocol rule here."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..actors.driver import drive
from ..actors.messages import HttpRequest, HttpResponse, Send
from ..errors import ChainError
from ..evm.chain import GWEI
from ..evm.channels import finalize_withdraw_call, initiate_withdraw_call, read_channel
from ..evm.txsign import sign_eip1559
from ..mechanisms.offer import Offer
from ..protocol import (
    PaymentPayload,
    PaymentRequired,
    ProtocolError,
    encode_header,
    parse_payment_required,
    payment_header_name,
    read_settlement,
)
from . import scenario as sc
from .driver import SimDriver
from .records import Row

if TYPE_CHECKING:
    from .build import Agent, SimServer
    from .world import World

WITHDRAW_GAS = 200_000  # a payer's initiateWithdraw / finalizeWithdraw: well above what either burns
LABEL = "batch-settlement/"


def channel_routes(server: SimServer) -> list[Any]:
    return server.role.channel_routes()


def work_row(world: World, server: SimServer, kind: str = "channel-work") -> Row:
    """A row for effects that are not a request (channel work, a refund): never opened, never written."""
    return Row(0, "", "", "", kind, server.name, "", world.env.now)


def start(world: World) -> None:
    """Start the channel processes of a world whose scenario uses batch-settlement (else nothing)."""
    s = world.scenario
    if not sc.uses_channels(s):
        return
    cm = world.run_metrics.channels
    cm.sample_every = world.timeline.bucket
    world.channel_use = {}
    for server in world.servers.values():
        routes = channel_routes(server)
        if routes:
            role = server.role
            ticks = [r.claim_interval or role.claim_interval for r in routes]
            ticks += [r.settle_interval or role.settle_interval for r in routes]
            world.env.process(channel_work(world, server, min(ticks)))
    world.env.process(sample_exposure(world))
    for group in s.agents:
        members = world.groups.get(group.name, [])
        for agent in members:
            if group.behaviour.kind == "withdraw-race":
                world.env.process(withdraw_race(world, agent, group.behaviour.at))
            if group.refund.kind != "never":
                world.env.process(refunds(world, agent, group))


def channel_work(world: World, server: SimServer, tick: float) -> Generator[Any, Any, None]:
    """``server``'s channel work every ``tick`` seconds, until the run's end."""
    env = world.env
    end = world.scenario.simulation.duration + world.scenario.simulation.drain
    first = True  # the first round, at the start, starts the server's clocks
    while env.now + tick <= end:
        if not first:
            yield env.timeout(tick)
            if idle(server):
                continue  # nothing to claim or settle: the round would only read the book
        first = False
        work = yield from drive(
            server.role.channel_work(world.now()), SimDriver(world, server, work_row(world, server))
        )
        world.count("channel_claim_batches", len(work.claims))
        world.count("channel_settlements", len(work.settlements))
        world.count("channel_server_refunds", len(work.refunds))
        for error in work.errors:  # by kind and reason ("claim: <reason>"), without the message
            world.count(f"channel_work_error:{error.split(':')[0]}:{error.split(':')[1].strip()}")


def idle(server: SimServer) -> bool:
    """Whether ``server``'s channel work has nothing to do: no channel in its book and no receiver
    waiting for a settlement (a month of idle rounds on a thousand servers would cost real time)."""
    book = server.role.channels
    return not book.all() and not book.marks("pending:")


def exposure_now(world: World) -> tuple[int, int]:
    """Value served against vouchers and not yet claimed (as the servers know: their claims land
    in their books once confirmed), and not yet settled, over every server."""
    unclaimed = unsettled = 0
    for server in world.servers.values():
        if not channel_routes(server):
            continue
        for record in server.role.channels.all():
            unclaimed += record.unclaimed
            unsettled += record.unsettled
    return unclaimed, unsettled


def sample_exposure(world: World) -> Generator[Any, Any, None]:
    cm = world.run_metrics.channels
    env = world.env
    while True:
        yield env.timeout(cm.sample_every)
        unclaimed, unsettled = exposure_now(world)
        cm.samples.append((env.now, unclaimed, unsettled))


# -- the agents' side -------------------------------------------------------------------------------


def paid(world: World, agent: Agent, row: Row, response: HttpResponse) -> None:
    """A paid request of a batch-settlement endpoint: the row takes the charge (``chargedAmount``),
    the payer and the payee; the served value and the channel's last use are noted."""
    try:
        settlement = read_settlement(response.headers)
    except ProtocolError:
        settlement = None
    extra = (settlement.extra or {}) if settlement is not None else {}
    charged = extra.get("chargedAmount")
    amount = int(charged) if isinstance(charged, str) and charged.isdigit() else 0
    route = world.servers[row.server].role.routes.get(row.endpoint)
    row.amount, row.payer = amount, agent.client.address
    row.pay_to = (route.pay_to if route is not None and route.pay_to else None) or world.servers[
        row.server
    ].role.pay_to
    cm = world.run_metrics.channels
    cm.paid += 1
    cm.served += amount
    cm.served_by_server[row.server] += amount
    world.channel_use[(agent.name, row.server, row.endpoint)] = world.env.now


def refunds(world: World, agent: Agent, group: sc.AgentGroup) -> Generator[Any, Any, None]:
    """The group's refund rule for ``agent``: at its end (``done``), or per idle channel (``idle``)."""
    env = world.env
    stop = (
        world.scenario.simulation.duration
        if group.stop is None
        else min(group.stop, world.scenario.simulation.duration)
    )
    if group.refund.kind == "done":
        yield env.timeout(stop)
        for target in _used(world, agent):
            yield from refund_one(world, agent, target)
        return
    after = group.refund.after
    assert after is not None  # the schema says an idle rule has one
    asked: dict[tuple[str, str], float] = {}
    while env.now < stop:
        yield env.timeout(min(after, max(stop - env.now, 0.0)) or after)
        for target, last in sorted(_used(world, agent).items()):
            if env.now - last >= after and asked.get(target, -1.0) < last:
                asked[target] = env.now
                yield from refund_one(world, agent, target)


def _used(world: World, agent: Agent) -> dict[tuple[str, str], float]:
    """The (server, route) an agent paid by channel, one route per server, with the last payment's time."""
    out: dict[tuple[str, str], float] = {}
    servers: dict[str, tuple[str, str]] = {}
    for (name, server, route), t in world.channel_use.items():
        if name != agent.name:
            continue
        key = servers.setdefault(server, (server, route))
        out[key] = max(out.get(key, t), t)
    return out


def refund_one(world: World, agent: Agent, target: tuple[str, str]) -> Generator[Any, Any, None]:
    server_name, route_key = target
    server = world.servers[server_name]
    method, path = route_key.split(" ", 1)
    http = HttpRequest(method, path, (("Host", f"{server_name}.sim"),))
    try:
        result = yield from drive(
            agent.client.refund(http, world.now()),
            SimDriver(world, server, work_row(world, server, "refund")),
        )
    except Exception as exc:  # an unreachable facilitator: the refund is simply not had
        world.count("channel_refunds_failed")
        world.count(f"channel_refund_error:{type(exc).__name__}")
        return
    if result.settlement is not None and result.settlement.success:
        world.count("channel_refunds")
    else:
        world.count("channel_refunds_refused")


def _send_own(world: World, agent: Agent, data: bytes) -> bytes | None:
    """Send a payer's own call to the batch-settlement contract; its hash (None: the node refused)."""
    from ..evm.channels import BATCH_SETTLEMENT_ADDRESS

    chain = world.chain
    world.sync_chain()
    signed = sign_eip1559(
        agent.key,
        chain_id=chain.chain_id,
        nonce=chain.pending_nonce(agent.client.address),
        gas=WITHDRAW_GAS,
        max_fee_per_gas=2 * chain.base_fee + GWEI,
        max_priority_fee_per_gas=0,
        to=BATCH_SETTLEMENT_ADDRESS,
        data=data,
    )
    try:
        h = chain.send_raw_transaction(signed.raw)
    except ChainError:
        world.count("withdraw_race_refused_by_node")
        return None
    world.raw_txs[h] = signed.raw
    return h


def withdraw_race(world: World, agent: Agent, at: float) -> Generator[Any, Any, None]:
    """At ``at``, initiate the withdrawal of every channel's unclaimed escrow; finalize each once its
    delay has passed (see the module's docstring)."""
    env = world.env
    yield env.timeout(at)
    pending = []
    for record in agent.client.channels.records():
        try:
            state = read_channel(world.chain, record.channel_id)
        except ChainError:
            continue
        if state.available <= 0:
            continue
        h = _send_own(world, agent, initiate_withdraw_call(record.config, state.available))
        if h is not None:
            world.count("withdrawals_initiated")
            pending.append(record)
    if not pending:
        return
    delay = max(r.config.withdraw_delay for r in pending)
    # the delay runs from the block that includes the initiation: wait it out, plus two blocks
    yield env.timeout(delay + 2 * world.producer.tick + world.producer.tick)
    for record in pending:
        if _send_own(world, agent, finalize_withdraw_call(record.config)) is not None:
            world.count("withdrawals_finalized")


def reuses(world: World, agent: Agent, server_name: str) -> bool:
    """Whether a ``channel-reuse`` agent's request to ``server_name`` carries another receiver's
    voucher: it holds a channel with a receiver other than this server's (else it pays honestly)."""
    payee = world.servers[server_name].role.pay_to.lower()
    return any(r.config.receiver.lower() != payee for r in agent.client.channels.records())


def reuse_fetch(
    world: World, agent: Agent, http: HttpRequest
) -> Generator[Any, Any, tuple[HttpResponse, Any]]:
    """The ``channel-reuse`` adversary's request to a server: a voucher of the channel it holds with
    another receiver (``reuses``), under this server's offer."""
    first: HttpResponse = yield Send(http)
    if first.status != 402:
        return first, None
    try:
        challenge = parse_payment_required(first.headers, first.body)
        if not isinstance(challenge, PaymentRequired):
            return first, None
        req = next(r for r in challenge.accepts if r.scheme == sc.CHANNEL_SCHEME)
        offer = Offer.of(req)
    except (ProtocolError, StopIteration):
        return first, None
    channels = agent.client.channels
    records = [r for r in channels.records() if r.config.receiver.lower() != offer.pay_to.lower()]
    if not records:  # ``reuses`` said there was one: the caller checks first
        return first, None
    other = records[0]
    foreign = Offer.of(req.model_copy(update={"pay_to": other.config.receiver}))
    nonce = world.rng(f"nonces:{agent.name}").randbytes(32)
    wire = channels.pay(foreign, world.now(), nonce)
    payment = PaymentPayload(x402_version=2, resource=challenge.resource, accepted=req, payload=wire)
    world.count("channel_reuse_sent")
    final = yield Send(http.with_header(payment_header_name(2), encode_header(payment)))
    return final, payment


# -- the end of the run ------------------------------------------------------------------------------


def finish(world: World) -> None:
    """What each server's book holds, at the end, that the chain has not claimed (and of it, what the
    channels of withdraw-race payers were served and what their receivers lost: served less claimed
    on chain). Closes the escrow integral."""
    if not sc.uses_channels(world.scenario):
        return
    cm = world.run_metrics.channels
    cm.close(world.env.now)
    racers = {a.client.address.lower() for a in world.agents if a.group.behaviour.kind == "withdraw-race"}
    for server in world.servers.values():
        if not channel_routes(server):
            continue
        # a channel the server refunded is gone from its book: it was claimed in full with the refund
        figures = {"unclaimed": 0, "race_served": 0, "race_lost": 0, "channels": 0}
        for record in server.role.channels.all():
            try:
                onchain = read_channel(world.chain, record.channel_id).total_claimed
            except ChainError:
                onchain = 0
            figures["channels"] += 1
            figures["unclaimed"] += max(record.charged - onchain, 0)
            if record.config.payer.lower() in racers:
                figures["race_served"] += record.charged
                figures["race_lost"] += max(record.charged - onchain, 0)
        cm.end[server.name] = figures


__all__ = ["channel_work", "finish", "paid", "refunds", "reuse_fetch", "reuses", "start", "withdraw_race"]
