"""Agents in the simulator: when they send requests, and how each behaviour pays.

Honest agents run the reference ``Client.fetch`` unchanged (paying Permit2 and upto offers too:
agents with a Permit2 target read their allowance from the world's chain; a paid upto row takes
the amount charged in place of the maximum signed). Adversaries differ only in what they
do with a payment: they take the 402, sign with the reference signing function, and then break the
payment on purpose (underpay, sign outside the validity window, tamper after signing), or reuse an
honest one (replay it later, send it to several endpoints at once), or pull the funds out from
under it (drain). None of them checks anything: judging is the servers' and facilitators' job.

Compromised agents (``prompt-injected``, ``runaway``, ``slow-drain``) are honest agents, reference
client and governor included, until their ``at``; from then on some of their requests are the
attack's (``Row.attack``): a share of them redirected to the attack's target, a loop that calls it
as fast as answers come back, or one more request every ``every`` seconds. Attack requests made by
a loop or a drain come on top of the agent's traffic and do not count against ``max_requests``.

A group with ``choice = { kind = "reputation" }`` draws its targets by the on-chain reputation of
their servers (``trust.ReputationChooser``). A request a crawl policy refuses ends ``blocked``,
its reason the signature refusal code.

A group with a ``task`` starts a task at each arrival instead of a request: it discovers its tools
in the Bazaar and calls them step by step (``toolchain``), each call a ``request`` of kind ``tool``.

Rules: every draw comes from the world's seeded streams; times are virtual.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from typing import Protocol, cast

from eth_utils import to_checksum_address

from ..actors.client import PaymentRefused
from ..actors.driver import drive
from ..actors.messages import HttpRequest, Send
from ..evm.token import encode_call
from ..mechanisms.exact_eip3009 import Offer, sign_authorization
from ..protocol import (
    PaymentPayload,
    PaymentRequired,
    ProtocolError,
    encode_header,
    parse_payment_required,
    payment_header_name,
    read_payment,
    read_settlement,
)
from . import channels
from . import scenario as sc
from .build import Agent, SimServer
from .driver import SimDriver
from .records import Row
from .toolchain import Bazaar, task
from .trust import ReputationChooser, TrustWorld
from .world import Chooser, World

Target = tuple[str, str]  # (server name, route key)

VALID_LATE = 100  # seconds after sending from which "not yet valid" payments are valid
EXPIRED_BY = 700  # seconds by which "expired" payments have run out


class Picker(Protocol):
    """Draws the index of a group's next target (``world.Chooser``, ``trust.ReputationChooser``)."""

    def pick(self) -> int: ...


class Traffic:
    """Starts every agent group's arrival processes."""

    def __init__(self, world: World) -> None:
        self.world = world
        s = world.scenario
        self.bazaar = Bazaar(world) if s.tasks() else None
        self.allowed: dict[str, set[Target]] = {}  # group with a task -> the targets it may call
        for group in s.agents:
            targets = sc.resolve_targets(s, group)
            rng = world.rng(f"choice:{group.name}")
            chooser: Picker
            if group.choice.kind == "reputation":
                # a reputation choice is a trust feature: the world built its TrustWorld
                trust = cast(TrustWorld, world.trust)
                chooser = ReputationChooser(trust, group.choice, targets, rng)
            else:
                chooser = Chooser(group.choice, len(targets), rng)
            if group.task is not None:
                chooser = _FirstTarget()  # a task's steps choose their tools (``toolchain``)
                self.allowed[group.name] = set(targets)
            members = world.groups[group.name]
            if not members:
                continue  # a sharded run whose shard holds none of this small group
            self._attack(group, members)
            arrivals = group.arrivals
            if isinstance(arrivals, sc.Poisson | sc.Piecewise):
                world.env.process(self._poisson(group, arrivals, members, targets, chooser))
            elif isinstance(arrivals, sc.Growth):
                world.env.process(self._growth(group, arrivals, members, targets, chooser))
            else:
                for agent in members:
                    world.env.process(self._periodic(group, arrivals, agent, targets, chooser))

    def _attack(self, group: sc.AgentGroup, members: list[Agent]) -> None:
        """Start the attack loops of a compromised group's agents; remember a prompt injection's
        targets."""
        behaviour = group.behaviour
        if not sc.is_compromised(behaviour):
            return
        self.world.attack_targets[group.name] = targets = sc.attack_targets(self.world.scenario, group)
        start, end = max(behaviour.at, group.start), self._end(group)
        for agent in members:
            if behaviour.kind == "runaway":
                self.world.env.process(runaway(self.world, agent, targets, start, end, behaviour.interval))
            elif behaviour.kind == "slow-drain":
                self.world.env.process(slow_drain(self.world, agent, targets, start, end, behaviour.every))

    def _end(self, group: sc.AgentGroup) -> float:
        end = self.world.scenario.simulation.duration
        return min(end, group.stop) if group.stop is not None else end

    def _poisson(
        self,
        group: sc.AgentGroup,
        arrivals: sc.Poisson | sc.Piecewise,
        members: list[Agent],
        targets: list[Target],
        chooser: Picker,
    ):
        env, rng = self.world.env, self.world.rng(f"arrivals:{group.name}")
        end = self._end(group)
        yield env.timeout(group.start)
        while env.now < end:
            per_agent = arrivals.rate if arrivals.kind == "poisson" else arrivals.rate_at(env.now)
            boundary = _next_step(arrivals, env.now) if arrivals.kind == "piecewise" else end
            if per_agent <= 0:
                yield env.timeout(max(boundary, env.now) - env.now if boundary < end else end - env.now)
                if boundary >= end:
                    return
                continue
            gap = rng.expovariate(per_agent * len(members))
            if env.now + gap >= min(boundary, end):
                # memoryless: restart the draw at the rate's next step
                yield env.timeout(min(boundary, end) - env.now)
                continue
            yield env.timeout(gap)
            agent = members[rng.randrange(len(members))]
            self._start(agent, targets[chooser.pick()], targets)

    def _growth(
        self,
        group: sc.AgentGroup,
        arrivals: sc.Growth,
        members: list[Agent],
        targets: list[Target],
        chooser: Picker,
    ):
        env, rng = self.world.env, self.world.rng(f"arrivals:{group.name}")
        start, end = sc.group_window(self.world.scenario, group)
        r0, k = arrivals.profile(end - start)
        for t in growth_times(r0 * len(members), k, start, end, rng):
            yield env.timeout(max(0.0, t - env.now))
            agent = members[rng.randrange(len(members))]
            self._start(agent, targets[chooser.pick()], targets)

    def _periodic(
        self,
        group: sc.AgentGroup,
        arrivals: sc.Interval | sc.Burst,
        agent: Agent,
        targets: list[Target],
        chooser: Picker,
    ):
        env, rng = self.world.env, self.world.rng(f"arrivals:{agent.name}")
        end = self._end(group)
        yield env.timeout(group.start + rng.uniform(0, arrivals.every))
        size = arrivals.size if arrivals.kind == "burst" else 1
        while env.now < end:
            for _ in range(size):
                self._start(agent, targets[chooser.pick()], targets)
            yield env.timeout(arrivals.every)

    def _start(self, agent: Agent, target: Target, targets: list[Target]) -> None:
        limit = agent.group.max_requests
        if limit is not None and agent.requests >= limit:
            return
        world = self.world
        behaviour = agent.group.behaviour
        if behaviour.kind == "withdraw-race" and world.env.now >= behaviour.at:
            return  # it is withdrawing: it pays no more
        agent.requests += 1
        if agent.group.task is not None and self.bazaar is not None:
            allowed = self.allowed[agent.group.name]
            world.env.process(task(world, agent, self.bazaar, allowed, request))
        elif behaviour.kind == "race":
            world.env.process(race(world, agent, target, targets, behaviour.width))
        elif (
            behaviour.kind == "prompt-injected"
            and world.env.now >= behaviour.at
            and _draw(world.rng(f"injected:{agent.group.name}"), behaviour.share)
        ):
            world.env.process(request(world, agent, _pick(world, agent), attack=True))
        else:
            world.env.process(request(world, agent, target))


class _FirstTarget:
    """The picker of a group with a task: its arrivals start tasks, whose steps choose (no draw)."""

    def pick(self) -> int:
        return 0


def _draw(rng: random.Random, p: float) -> bool:
    return p >= 1 or rng.random() < p


def _pick(world: World, agent: Agent) -> Target:
    targets = world.attack_targets[agent.group.name]
    if len(targets) == 1:
        return targets[0]
    return targets[world.rng(f"attack-target:{agent.group.name}").randrange(len(targets))]


def runaway(world: World, agent: Agent, targets: list[Target], start: float, end: float, interval: float):
    """From ``start``, request the target again ``interval`` seconds after each answer."""
    env = world.env
    yield env.timeout(max(0.0, start - env.now))
    while env.now < end:
        yield env.process(request(world, agent, _pick(world, agent), attack=True))
        yield env.timeout(interval)


def slow_drain(world: World, agent: Agent, targets: list[Target], start: float, end: float, every: float):
    """From ``start``, one more request to the target every ``every`` seconds."""
    env = world.env
    yield env.timeout(max(0.0, start - env.now))
    while env.now < end:
        env.process(request(world, agent, _pick(world, agent), attack=True))
        yield env.timeout(every)


def growth_times(rate: float, k: float, start: float, end: float, rng: random.Random) -> Iterator[float]:
    """The arrival times in ``[start, end)`` of a Poisson process of rate ``rate x exp(k (t - start))``,
    exactly: each arrival is one exponential draw of the integrated rate, inverted in closed form."""
    t, window = 0.0, end - start
    while True:
        mass = rng.expovariate(1.0)
        if k == 0:
            t += mass / rate
        else:
            x = k * mass * math.exp(-k * t) / rate
            if x <= -1:
                return  # a falling rate with less than this much left to come
            t += math.log1p(x) / k
        if t >= window:
            return
        yield start + t


def _next_step(arrivals: sc.Piecewise, t: float) -> float:
    for start, _ in arrivals.steps:
        if start > t:
            return start
    return float("inf")


def _http(target: Target) -> tuple[str, HttpRequest]:
    server, route_key = target
    method, path = route_key.split(" ", 1)
    return server, HttpRequest(method, path, (("Host", f"{server}.sim"),))


# -- one request -----------------------------------------------------------------------------------


# pay through ``fetch`` (the channel payers too: their difference is their deposit policy, their own
# withdrawals, or, for channel-reuse, the requests ``channels.reuses`` picks)
CLIENT_BEHAVIOURS = ("honest", "replay", "unfunded", "drain", *sc.COMPROMISED, *sc.CHANNEL_BEHAVIOURS)


def request(
    world: World,
    agent: Agent,
    target: Target,
    kind: str = "request",
    attempt: int = 0,
    origin: int = 0,
    attack: bool = False,
):
    """One request of ``agent`` for ``target`` (server, route key), as its behaviour makes it
    (``attack``: the compromised behaviour's, not the agent's own)."""
    server_name, http = _http(target)
    server = world.servers[server_name]
    row = world.open_row(agent, kind, server_name, http.route_key)
    row.origin, row.attack = origin, attack
    behaviour = agent.group.behaviour
    if behaviour.kind == "drain":
        driver: SimDriver = _DrainingDriver(world, server, row, agent, behaviour)
    else:
        driver = SimDriver(world, server, row)
    if behaviour.kind == "channel-reuse" and channels.reuses(world, agent, server_name):
        response, payment = yield from drive(channels.reuse_fetch(world, agent, http), driver)
    elif behaviour.kind in CLIENT_BEHAVIOURS:
        result = yield from drive(agent.client.fetch(http, world.now()), driver)
        response, payment = result.response, result.payment
        if result.decision is not None:
            world.decided(agent, row, result.decision)
        if result.refused is not None and row.outcome != "denied":
            row.outcome, row.reason = "refused", _short(result.refused)
        row.reason = _short(row.reason)
    else:
        response, payment = yield from drive(forged_fetch(world, agent, http, behaviour), driver)
    if payment is not None:
        world.record_payment(row, payment)
    _judge(row, response, payment)
    if row.outcome == "paid":
        _paid(world, row, response)
        if world.endpoint_mechanisms.get((row.server, row.endpoint), "").startswith(channels.LABEL):
            channels.paid(world, agent, row, response)
    if row.crawl == "block":
        row.outcome = "blocked"  # by a crawl policy, before any payment; its reason is the refusal code
    world.close_row(row)
    if behaviour.kind == "replay" and row.outcome == "paid":
        world.env.process(replays(world, agent, server_name, http, payment, behaviour))
    retry = agent.group.retry
    if response.status >= 500 and attempt < retry.max:
        yield world.env.timeout(retry.backoff.sample(world.rng(f"retry:{agent.group.name}")))
        world.env.process(request(world, agent, target, "retry", attempt + 1, origin or row.id, attack))
    return row


def _paid(world: World, row: Row, response) -> None:
    """Count a paid request by the mechanism of its endpoint; an upto one's row takes the amount
    charged (the settlement's ``amount``) in place of the maximum signed."""
    label = world.endpoint_mechanisms.get((row.server, row.endpoint))
    if label is None:
        return
    mechanisms = world.run_metrics.mechanisms
    mechanisms.paid[label] += 1
    if not label.startswith("upto/"):
        return
    try:
        settlement = read_settlement(response.headers)
    except ProtocolError:
        settlement = None
    named = settlement.amount if settlement is not None else None
    charged = int(named) if named is not None and named.isdigit() else row.amount
    mechanisms.upto_paid(f"{row.server} {row.endpoint}", row.amount, charged)
    row.amount = charged
    if charged == 0 and row.nonce:
        world.book.charged_nothing((row.payer.lower(), row.nonce.lower()))


def _judge(row, response, payment) -> None:
    """The row's outcome and reason, from what came back (and whether a payment went with it)."""
    row.status = response.status
    if row.outcome in ("refused", "denied"):
        return
    try:
        settlement = read_settlement(response.headers)
    except ProtocolError:
        settlement = None
    if payment is None:
        row.outcome = "free" if response.status < 400 else "unpaid"
        return
    if response.status == 200:
        if settlement is not None and settlement.success:
            row.outcome = "paid"
        else:
            row.outcome = "served_unsettled"
            row.reason = settlement.error_reason if settlement is not None else "no settlement"
        return
    if response.status == 402:
        if settlement is not None:
            row.outcome, row.reason = "settle_failed", settlement.error_reason or "settlement failed"
        else:
            row.outcome, row.reason = "rejected", _challenge_error(response)
        return
    row.outcome = "error"
    try:
        row.reason = _short(str(response.json().get("error", response.status)))
    except ValueError:
        row.reason = str(response.status)


def _challenge_error(response) -> str:
    try:
        return _short(parse_payment_required(response.headers, response.body).error or "payment required")
    except ProtocolError:
        return "unreadable 402"


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


# -- adversaries -------------------------------------------------------------------------------------


def forged_fetch(world: World, agent: Agent, http: HttpRequest, behaviour):
    """A fetch whose payment is broken on purpose; returns (final response, payment sent)."""
    first = yield Send(http)
    if first.status != 402:
        return first, None
    try:
        challenge = parse_payment_required(first.headers, first.body)
        if not isinstance(challenge, PaymentRequired):  # the simulator's servers speak x402 v2 only
            return first, None
        req = challenge.accepts[0]
        offer = Offer.of(req)
    except (ProtocolError, IndexError):
        return first, None
    client, now = agent.client, world.now()
    nonce = world.rng(f"nonces:{agent.name}").randbytes(32)
    signed_offer, sign_time, valid_after = offer, now, 0
    if behaviour.kind == "underpay":
        signed_offer = dataclasses.replace(offer, amount=int(offer.amount * behaviour.fraction))
    elif behaviour.kind == "expired":
        sign_time = now - offer.max_timeout_seconds - EXPIRED_BY
    elif behaviour.kind == "not-yet-valid":
        valid_after = now + VALID_LATE
    exact = sign_authorization(
        client.key, client.address, signed_offer, sign_time, nonce, valid_after=valid_after
    ).to_wire()
    if behaviour.kind == "tamper":
        auth = dict(exact["authorization"])
        if behaviour.field == "recipient":
            auth["to"] = world.sink
        else:
            auth["value"] = str(int(auth["value"]) // 2)
        exact = {**exact, "authorization": auth}
    payment = PaymentPayload(x402_version=2, resource=challenge.resource, accepted=req, payload=exact)
    final = yield Send(http.with_header(payment_header_name(2), encode_header(payment)))
    return final, payment


def replays(world: World, agent: Agent, server_name: str, http: HttpRequest, payment, behaviour):
    """Send a settled payment again, ``times`` times: each is a request of its own."""
    header = (payment_header_name(payment.x402_version), encode_header(payment))
    server = world.servers[server_name]
    for _ in range(behaviour.times):
        yield world.env.timeout(behaviour.delay.sample(world.rng(f"replay:{agent.name}")))
        row = world.open_row(agent, "replay", server_name, http.route_key)
        world.record_payment(row, payment)
        response = yield from drive(_one_send(http.with_header(*header)), SimDriver(world, server, row))
        _judge(row, response, payment)
        world.count("replays_attempted")
        world.close_row(row)


def _one_send(request: HttpRequest):
    return (yield Send(request))


def race(world: World, agent: Agent, target: Target, targets: list[Target], width: int):
    """Sign one payment for ``target`` and send it to ``width`` endpoints at once (TOCTOU)."""
    server_name, http = _http(target)
    server = world.servers[server_name]
    probe = Row(0, agent.name, agent.group.name, "race", "probe", server_name, http.route_key, world.env.now)
    first = yield from drive(_one_send(http), SimDriver(world, server, probe))
    try:
        challenge = parse_payment_required(first.headers, first.body)
        payment = agent.client.create_payment(challenge, world.now())
    except (ProtocolError, PaymentRefused) as exc:
        row = world.open_row(agent, "request", server_name, http.route_key)
        denied = str(exc).startswith("governance: ")  # the governor said no (create_payment raises)
        row.status, row.outcome = first.status, "denied" if denied else "refused"
        row.reason = _short(str(exc).removeprefix("governance: "))
        world.close_row(row)
        return
    frozen = agent.name in world.frozen(agent.name)  # never, unless the governor let a frozen agent sign
    header = (payment_header_name(payment.x402_version), encode_header(payment))
    start = targets.index(target)
    for i in range(width):
        copy = targets[(start + i) % len(targets)]
        kind = "request" if i == 0 else "race"
        world.env.process(_race_copy(world, agent, copy, header, payment, kind, frozen))


def _race_copy(world: World, agent: Agent, target: Target, header, payment, kind: str, frozen: bool = False):
    server_name, http = _http(target)
    server = world.servers[server_name]
    row = world.open_row(agent, kind, server_name, http.route_key)
    row.after_freeze = frozen
    world.record_payment(row, payment)
    response = yield from drive(_one_send(http.with_header(*header)), SimDriver(world, server, row))
    _judge(row, response, payment)
    world.close_row(row)


class _DrainingDriver(SimDriver):
    """The exchange's driver for a draining agent: when the paid request goes out, the agent's funds
    are moved away shortly after."""

    def __init__(self, world: World, server: SimServer, row: Row, agent: Agent, drain: sc.Drain) -> None:
        super().__init__(world, server, row)
        self.home = world  # the whole world: the drain reaches the chain and the sink
        self.agent = agent
        self.drain = drain

    def send(self, effect: Send):
        if read_payment(effect.request.headers) is not None:
            after = self.drain.after.sample(self.home.rng(f"drain:{self.agent.name}"))
            self.home.env.process(_drain(self.home, self.agent, after))
        return (yield from super().send(effect))


def _drain(world: World, agent: Agent, after: float):
    yield world.env.timeout(after)
    chain = world.chain
    balance = chain.balance_of(agent.client.address)
    if balance == 0:
        return
    world.sync_chain()
    call = encode_call("transfer(address,uint256)", to_checksum_address(world.sink), balance)
    try:
        chain.transact(agent.key, chain.usdc, call, gas=100_000)
        world.count("drains_sent")
    except Exception:  # an agent out of gas money simply fails to drain
        world.count("drains_failed")
