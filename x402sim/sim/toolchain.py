"""Agents that discover, plan and pay: tasks made of steps, each a tool found in a Bazaar.

Theory of operation. An agent group with a ``task`` starts a task at each arrival (its arrival
process is the usual one; ``max_requests`` then counts tasks). A task is a list of steps, each naming
a kind of tool. The agent first asks the Bazaar for each kind its task needs (one query per kind,
each taking ``[bazaar] latency``), ranks what comes back with ``actors.discovery.choose`` under the
group's rule (``task.choose``; its inline spend policy's ``max_price`` as the cap), then runs the
steps in order. A step calls the best candidate through the reference client (``agents.request``:
the same ``fetch``, governor and budget as any request, and the endpoint's transport with its
latency model, ``driver.SimDriver``); a call that does not end paid (a tool error, a refusal, a
failed settlement) is tried with the next candidate, ``task.attempts`` candidates at most. A step
with none left abandons the task.

The Bazaar here is a model of the discovery service, not the HTTP one: it lists every endpoint that
declares a ``kind``, as a ``discovery.Candidate`` with its server's current price (a price change is
seen by the next query), the mechanism that pays it, the reputation its listing declares and, for an
MCP tool, the tool's name. The candidates of a group are those among its targets.

Rules: the ranking is ``discovery.choose`` (no second one here); every draw comes from the world's
seeded streams (the Bazaar's latency from ``latency:bazaar``); times are virtual; what is counted goes
to ``RunMetrics.toolchain``, and the spend per tool is judged on chain (``metrics.PaymentBook``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..actors.discovery import Candidate, choose
from . import scenario as sc
from .build import Agent, mechanism_label

Target = tuple[str, str]  # (server name, route key)


def tool_name(server: str, route_key: str) -> str:
    """How the summary names a tool: ``server/path``."""
    return server + route_key.split(" ", 1)[1]


class Bazaar:
    """The world's discovery service: its listings by kind, priced as the servers price them now."""

    def __init__(self, world) -> None:
        self.world = world
        self.by_kind: dict[str, list[tuple[Target, sc.EndpointSpec]]] = {}
        for copy in world.scenario.server_copies():
            for e in copy.spec.endpoints:
                if e.kind is not None:
                    self.by_kind.setdefault(e.kind, []).append(((copy.name, f"{e.method} {e.path}"), e))

    def listing(self, target: Target, spec: sc.EndpointSpec) -> Candidate:
        """The listing of one endpoint, as a buyer would read it."""
        server_name, key = target
        path = key.split(" ", 1)[1]
        price = self.world.servers[server_name].role.routes[key].price
        if spec.transport == "mcp":
            resource, tool = f"mcp://{server_name}.sim", path.lstrip("/")
        else:
            resource, tool = f"http://{server_name}.sim{path}", None
        return Candidate(
            resource,
            price,
            mechanisms=(mechanism_label(spec),),
            tool=tool,
            reputation=spec.reputation,
            tags=(spec.kind or "",),
        )

    def search(self, kind: str, allowed: set[Target], rule: str, max_price: int | None) -> list[Target]:
        """The targets of ``kind`` among ``allowed``, best first by ``rule``."""
        listed = {
            (c := self.listing(target, spec)).key: (c, target)
            for target, spec in self.by_kind.get(kind, [])
            if target in allowed
        }
        ranked = choose([c for c, _ in listed.values()], rule, max_price=max_price)
        return [listed[c.key][1] for c in ranked]


def task(world, agent: Agent, bazaar: Bazaar, allowed: set[Target], request: Callable[..., Any]):
    """A SimPy process: one task of ``agent``, from discovery to its last step; each call is the
    process ``request(world, agent, target, kind="tool")`` (``agents.request``), whose value is its
    row."""
    env, spec = world.env, agent.group.task
    if spec is None:  # only groups with a task start one
        return
    metrics, group = world.run_metrics.toolchain, agent.group.name
    started = env.now
    metrics.tasks[(group, "attempted")] += 1
    spend = agent.group.spend_policy
    cap = spend.max_price if spend is not None else None
    ranked: dict[str, list[Target]] = {}
    for kind in dict.fromkeys(spec.steps):
        yield env.timeout(world.latency_of(world.scenario.bazaar.latency, "bazaar"))
        metrics.queries[group] += 1
        ranked[kind] = bazaar.search(kind, allowed, spec.choose, cap)
    first = None
    for kind in spec.steps:
        for target in ranked[kind][: spec.attempts]:
            row = yield env.process(request(world, agent, target, kind="tool"))
            name = tool_name(*target)
            metrics.steps[(group, "calls")] += 1
            metrics.calls[name] += 1
            if row.outcome == "paid":
                metrics.paid[name] += 1
                if first is None and row.done is not None:
                    first = row.done - started
                    if started >= world.scenario.simulation.warmup:
                        metrics.first_call.add(first)
                break
            metrics.steps[(group, "failed_calls")] += 1
        else:
            metrics.tasks[(group, "abandoned")] += 1
            return
    metrics.tasks[(group, "completed")] += 1


__all__ = ["Bazaar", "Target", "task", "tool_name"]
