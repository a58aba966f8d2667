"""The effect driver of the simulator: the effects of one exchange, answered in virtual time.

Theory of operation. A client's ``fetch`` and a server's ``handle`` are generators of effects
(``actors.messages``); ``drive`` runs them inside a SimPy process, asking for each answer. A
``SimDriver`` answers the effects of one exchange (one server, one row of payments.csv), each with
a generator that yields SimPy events for the time it takes here and returns the answer:

* ``send`` (client -> server) costs a sampled one-way latency each way and drives the server's
  ``handle`` in between, with this same driver.
* ``verify`` / ``settle`` (server -> facilitator) go to the server's facilitators in order of
  preference; one that is down, or answers an error, is skipped for the next (both happen before
  anything is sent to the chain). A facilitator is a SimPy resource of ``concurrency`` slots held
  for its service time; its reads of the chain cost its RPC latency. A settlement is submitted by
  the facilitator role itself (``begin_settle``), waits for its block (and ``confirmations`` more,
  or for its flashblock with ``settle_on = "preconfirmation"``), and is judged by
  ``finish_settle`` from the receipt. A facilitator settle timeout answers ``settlement_pending``
  (``abandon_settle``); a server settle timeout throws ``Unreachable`` into the server. Either way
  the transaction may land later: that is the "paid on chain, not served" failure the summary
  counts.
* An endpoint's transport (``[transports]``): before a call leaves, MCP and A2A add their session
  set-up (once per agent and server) and their per-call overhead (plain HTTP adds nothing unless
  the scenario says so, and then draws nothing). An MCP tool's call is carried through
  ``transports.mcp_carry`` both ways, so the server role reads, and the client role gets back, what
  MCP would carry; A2A is modelled in time only.
* ``handle`` takes the endpoint's handler time and answers 200 (or the trust world's delivery; an
  MCP tool's result); a tool with ``fails`` answers a share of its calls with a tool error (500).
* ``approve`` is answered by the group's simulated approver after its delay (``World.approve``);
  ``give_feedback`` by the trust world, which sends the transaction into the pending pool.

Rules: a driver keeps nothing of its own beyond its exchange; what it counts and holds goes to the
world (``World.count``, ``hold_tx``) and the row. It is an ``actors.driver.BaseDriver``: an effect
it does not answer (``GiveFeedback`` in a world without trust features) raises ``UnsupportedEffect``
naming it and the simulator.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..actors.driver import BaseDriver, UnsupportedEffect, drive
from ..actors.facilitator import PendingSettlement
from ..actors.messages import (
    Approve,
    GiveFeedback,
    Handle,
    HttpRequest,
    HttpResponse,
    Send,
    Settle,
    Unreachable,
    Verify,
)
from ..protocol import ProtocolError, SettleResponse, payment_header_name
from ..transports.mcp_carry import (
    McpProtocolError,
    call_of_request,
    response_of_result,
    result_of_response,
    tool_answer,
    tool_failure,
    tool_request,
)

if TYPE_CHECKING:
    import random

    import simpy
    from simpy.events import Event

    from ..actors.messages import Approval
    from ..evm.chain import LocalChain, Receipt
    from ..evm.ledger import LedgerChain
    from . import scenario as sc
    from .build import Agent, SimFacilitator, SimServer
    from .distributions import Distribution
    from .producer import BlockProducer
    from .records import Row
    from .sketch import LatencyStats
    from .trust import TrustWorld

PAYMENT_HEADERS = (payment_header_name(2), payment_header_name(1))
_PAYMENT_NAMES = frozenset(name.lower() for name in PAYMENT_HEADERS)


class DriverHost(Protocol):
    """What a ``SimDriver`` reads and tells of its world (a ``world.World``): the scenario, clock,
    chain and block producer, the parts an exchange reaches, its random streams, counters and
    latency figures, and the transactions in flight."""

    submitting: SimFacilitator | None  # the facilitator whose transaction is being submitted

    @property
    def scenario(self) -> sc.Scenario: ...
    @property
    def env(self) -> simpy.Environment: ...
    @property
    def chain(self) -> LocalChain | LedgerChain: ...
    @property
    def producer(self) -> BlockProducer: ...
    @property
    def trust(self) -> TrustWorld | None: ...
    @property
    def attack_routes(self) -> set[tuple[str, str]]: ...
    @property
    def named(self) -> dict[str, Agent]: ...
    @property
    def latency(self) -> dict[str, LatencyStats]: ...
    @property
    def lost_answers(self) -> list[sc.SettleAnswerLost]: ...
    @property
    def timed_transports(self) -> dict[str, sc.TransportLatency]: ...
    @property
    def sessions(self) -> dict[tuple[str, str], simpy.Event]: ...

    def now(self) -> int: ...

    def rng(self, label: str, shared: bool = False) -> random.Random: ...

    def latency_of(self, dist: Distribution, label: str) -> float: ...

    def frozen(self, agent: str) -> dict[str, Any]: ...

    def approve(self, row: Row) -> Generator[simpy.Event, Any, Approval]: ...

    def sync_chain(self) -> None: ...

    def count(self, what: str, n: int = 1) -> None: ...

    def fault_hits(
        self, faults: Sequence[sc.RpcErrors | sc.SettleAnswerLost], fac: SimFacilitator, stream: str
    ) -> bool: ...

    def hold_tx(self, h: bytes, row: Row | None = None, until: int | None = None) -> None: ...

    def release_tx(self, h: bytes) -> None: ...


class SimDriver(BaseDriver):
    """Answers the effects of one exchange: ``server`` serving the request of ``row``, in ``sim``."""

    world = "simulator"  # the name used in errors

    def __init__(self, sim: DriverHost, server: SimServer, row: Row) -> None:
        self.sim = sim
        self.server = server
        self.row = row

    # -- client -> server ---------------------------------------------------------------------------

    def send(self, effect: Send):
        sim, server, row = self.sim, self.server, self.row
        net = sim.scenario.network
        paid = carries_payment(effect.request)
        fetched = row.kind in ("request", "retry", "tool") and row.behaviour != "race"
        if paid and fetched and row.agent in sim.frozen(row.agent):
            row.after_freeze = True  # fetch signs and sends at one instant: signed while frozen
        spec = server.special.get(effect.request.route_key)
        transport = spec.transport if spec is not None else "http"
        if transport in sim.timed_transports:
            yield from self._transport(transport)
        yield sim.env.timeout(sim.latency_of(net.client_server, "client_server"))
        if not paid and (server.name, effect.request.route_key) in sim.attack_routes:
            row.attack = True  # the server quotes a price-bait price
        if transport == "mcp":
            response = yield from self._tool_call(effect.request)
        else:
            steps = server.role.handle(effect.request, sim.now())
            if sim.trust is not None:
                sim.trust.serving = row  # a crawl policy's verdict, given at once, is noted on it
            response = yield from drive(steps, self)
        yield sim.env.timeout(sim.latency_of(net.client_server, "client_server"))
        return response

    def _transport(self, transport: str):
        """The time ``transport`` adds to a call: its session set-up, once per agent and server
        (a second call while it is under way waits for it), then its per-call overhead."""
        sim = self.sim
        latency = sim.timed_transports[transport]
        key = (self.row.agent, self.server.name)
        ready = sim.sessions.get(key)
        if ready is None:
            ready = sim.sessions[key] = sim.env.event()
            yield sim.env.timeout(sim.latency_of(latency.session_setup, f"session:{transport}"))
            sim.count(f"{transport}_sessions")
            ready.succeed()
        elif not ready.triggered:
            yield ready
        yield sim.env.timeout(sim.latency_of(latency.per_call, f"call:{transport}"))

    def _tool_call(self, request: HttpRequest):
        """``request`` carried as an MCP tool call (``transports.mcp_carry``), both ways: the
        server role reads the request the carry makes of the call, and the client role the response
        it makes of the tool result, so headers and bodies are what MCP would carry. A payment the
        carry cannot read is a JSON-RPC error, which the client sees as a 400."""
        try:
            tool_call = call_of_request(request)
            carried = tool_request(tool_call)
        except (McpProtocolError, ProtocolError, ValueError) as exc:
            return HttpResponse.of_json(400, {"error": f"MCP: {exc}"})
        if self.sim.trust is not None:
            self.sim.trust.serving = self.row  # as over HTTP: a crawl policy's verdict is noted on it
        response = yield from drive(self.server.role.handle(carried, self.sim.now()), self)
        try:
            result = result_of_response(response)
        except (McpProtocolError, ProtocolError) as exc:
            return HttpResponse.of_json(400, {"error": f"MCP: {exc}"})
        return response_of_result(result)

    def approve(self, effect: Approve):
        return (yield from self.sim.approve(self.row))

    def give_feedback(self, effect: GiveFeedback):
        sim = self.sim
        if sim.trust is None:
            raise UnsupportedEffect(effect, self.world)
        return sim.trust.give_feedback(sim.named[self.row.agent], effect)
        yield  # a generator, as drive expects; the answer takes no virtual time

    # -- server -> facilitator, application ---------------------------------------------------------

    def handle(self, effect: Handle):
        sim, server, row = self.sim, self.server, self.row
        row.handled = True
        yield sim.env.timeout(server.handler_times[effect.request.route_key].sample(server.rng))
        spec = server.special.get(effect.request.route_key)
        fails = server.fails_rng  # drawn only for a tool that fails a share of its calls
        if spec is not None and spec.fails > 0 and fails is not None and fails.random() < spec.fails:
            sim.count("tool_errors")
            if spec.transport == "mcp":
                return tool_failure("the tool failed")
            return HttpResponse.of_json(500, {"error": "the tool failed"})
        if sim.trust is not None:
            return sim.trust.deliver(server, effect.request)
        if spec is not None and spec.transport == "mcp":
            return tool_answer({"tool": effect.request.path.lstrip("/"), "paid": True})
        return HttpResponse.of_json(200, {"resource": effect.request.path, "paid": True})

    def verify(self, effect: Verify):
        answer = yield from self._with_failover("verify", effect)
        self.row.verified = self.sim.env.now
        return answer

    def settle(self, effect: Settle):
        answer = yield from self._with_failover("settle", effect)
        self.row.settled = self.sim.env.now
        return answer

    def _with_failover(self, op: str, effect):
        sim, server, row = self.sim, self.server, self.row
        last: Unreachable | None = None
        for fac in server.facilitators:
            started = sim.env.now
            timeout = server.spec.settle_timeout if op == "settle" else None
            if timeout is not None:  # a process of its own, raced against the server's timeout
                call = sim.env.process(self._facilitator_call(fac, op, effect))
                yield call | sim.env.timeout(timeout)
                if not call.triggered:
                    sim.count("server_settle_timeouts")
                    raise Unreachable("facilitator", f"{fac.name}: no settle answer within {timeout:g} s")
                result = call.value
            else:
                result = yield from self._facilitator_call(fac, op, effect)
            if not isinstance(result, Unreachable):
                if row.sent >= sim.scenario.simulation.warmup:
                    sim.latency[op].add(sim.env.now - started)
                return result
            last = result
            if result.may_have_landed:
                break  # the settlement may have happened: never try it elsewhere
            sim.count(f"failover_from_{op}")
        if last is None:  # a server names at least one facilitator (the scenario's schema says so)
            raise Unreachable("facilitator", f"{server.name} has no facilitator")
        raise last

    def _facilitator_call(self, fac: SimFacilitator, op: str, effect):
        """One request to one facilitator, as a SimPy process: its value is the answer, or an
        ``Unreachable`` (``may_have_landed`` when a transaction may have been sent)."""
        sim, row = self.sim, self.row
        net = sim.scenario.network
        env = sim.env
        rpc = fac.spec.rpc_latency or net.facilitator_chain
        yield env.timeout(sim.latency_of(net.server_facilitator, "server_facilitator"))
        if fac.is_down(env.now):
            yield env.timeout(sim.latency_of(net.server_facilitator, "server_facilitator"))
            sim.count(f"{op}_unreachable")
            return Unreachable("facilitator", f"{fac.name} is down")
        row.facilitator = fac.name
        queued = env.now
        with fac.slots.request() as slot:
            fac.max_queue = max(fac.max_queue, len(fac.slots.queue))
            yield slot
            if queued >= sim.scenario.simulation.warmup:
                fac.waits.add(env.now - queued)
            spec_time = fac.spec.verify_time if op == "verify" else fac.spec.settle_time
            yield env.timeout(spec_time.sample(fac.rng) * fac.slowdown(env.now))
        rate = fac.spec.verify_error_rate if op == "verify" else fac.spec.settle_error_rate
        if rate and fac.rng.random() < rate:
            yield env.timeout(sim.latency_of(net.server_facilitator, "server_facilitator"))
            sim.count(f"{op}_errors_injected")
            return Unreachable("facilitator", f"{fac.name} answered 500")
        if fac.reads is None:
            yield env.timeout(2 * rpc.sample(fac.rng))  # reads of the token's state
            sim.sync_chain()
        else:  # counted: each round trip the role makes is charged once it has made them
            sim.sync_chain()
            fac.reads.take()
        if op == "verify":
            fac.verifies += 1
            answer = fac.role.verify(effect.payload, effect.requirements, sim.now())
            yield from self._round_trips(fac, rpc)
        else:
            fac.settles += 1
            answer = yield from self._settle(fac, effect, rpc)
            if isinstance(answer, Unreachable):
                return answer
        yield env.timeout(sim.latency_of(net.server_facilitator, "server_facilitator"))
        return answer

    def _round_trips(self, fac: SimFacilitator, rpc: Distribution) -> Generator[Event, Any, None]:
        """With ``facilitator_chain_reads = "counted"``: the latency of each round trip to the chain
        the role made since the last count (``sim.reads``); nothing in the default fixed mode."""
        calls = fac.reads.take() if fac.reads is not None else 0
        if calls:
            yield self.sim.env.timeout(sum(rpc.sample(fac.rng) for _ in range(calls)))

    def _settle(self, fac: SimFacilitator, effect, rpc):
        sim, row = self.sim, self.row
        sim.submitting = fac
        try:
            pending = fac.role.begin_settle(effect.payload, effect.requirements, sim.now())
        finally:
            sim.submitting = None
        if isinstance(pending, SettleResponse):
            yield from self._round_trips(fac, rpc)
            return pending
        row.tx_hash = "0x" + pending.tx_hash.hex()
        # a facilitator that shares settlements may hand this one to a duplicate until it expires
        claimed = pending.mechanism.claim(pending.verdict) if fac.spec.dedupe == "share" else None
        shared = claimed[1] if claimed else None
        sim.hold_tx(pending.tx_hash, row, until=shared)  # before any wait: it may be mined meanwhile
        if fac.reads is None:
            yield sim.env.timeout(rpc.sample(fac.rng))  # the submission reaches the node
        else:
            yield from self._round_trips(fac, rpc)
        answer = yield from self._await_receipt(fac, pending, rpc)
        receipt = sim.chain.receipt(pending.tx_hash)
        if receipt is not None:
            row.gas = receipt.gas_used
            if pending.tx_hash in sim.producer.final_at:
                row.final = sim.producer.final_at[pending.tx_hash]
        sim.release_tx(pending.tx_hash)  # this call reads nothing more of it
        if receipt is not None and sim.fault_hits(sim.lost_answers, fac, "faults:lost"):
            sim.count("settle_answers_lost")
            return Unreachable("facilitator", f"{fac.name}: settle answer lost", may_have_landed=True)
        return answer

    def _await_receipt(self, fac: SimFacilitator, pending: PendingSettlement, rpc):
        sim = self.sim
        h = pending.tx_hash
        ready = (
            sim.producer.preconf_event(h)
            if fac.spec.settle_on == "preconfirmation"
            else sim.producer.final_event(h)
        )
        if fac.spec.settle_timeout is not None:
            yield ready | sim.env.timeout(fac.spec.settle_timeout)
            if not ready.triggered:
                sim.count("facilitator_settle_timeouts")
                return fac.role.abandon_settle(
                    pending, f"not confirmed within {fac.spec.settle_timeout:g} s (transaction sent)"
                )
        else:
            yield ready
        yield sim.env.timeout(rpc.sample(fac.rng))  # the receipt is read
        # mined (its event fired) and held by this call (``hold_tx``): the chain still has its receipt
        receipt = cast("Receipt", sim.chain.receipt(h))
        return fac.role.finish_settle(pending, receipt)


def carries_payment(request: HttpRequest) -> bool:
    """Whether ``request`` carries a payment header (of either protocol version)."""
    return any(key.lower() in _PAYMENT_NAMES for key, _ in request.headers)


__all__ = ["PAYMENT_HEADERS", "DriverHost", "SimDriver", "carries_payment"]
