"""``x402sim serve a2a``: the chain, the facilitator and a paid A2A agent as local services.

``serve_a2a`` is ``x402sim.http.serve.serve_all`` with a ``PaidAgent`` in the resource server's place:
the chain's JSON-RPC, the reference facilitator settling on it directly, and the agent talking to the
facilitator by URL, all on one event loop (``Services``), on loopback. The agent sells the routes of
a routes file, each keyed ``POST /<skill>`` and priced through any mechanism the file names; without
one, the demo skill ``weather`` for 1000 atomic units (0.001 USDC). It returns the running services
and the facts a user needs (URLs, chain, asset, accounts, payee, skills), printed as one JSON line.

Needs ``x402sim[agents]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..actors.messages import HttpRequest, HttpResponse
from ..actors.server import Route
from ..http.routes_file import RoutesConfig
from ..http.runner import LOOPBACK, Services
from ..http.serve import ChainSetup, Running, local_stack, resource_server
from .a2a import PaidAgent
from .a2a_carry import skill_answer, skill_route_key

__all__ = ["DEFAULT_A2A_PORTS", "DEMO_SKILLS", "demo_weather_skill", "serve_a2a"]

DEFAULT_A2A_PORTS = {"chain": 8545, "facilitator": 4022, "agent": 4023}
DEMO_SKILLS = {
    skill_route_key("weather"): Route(skill_route_key("weather"), 1_000, description="Current weather (demo)")
}


def demo_weather_skill(request: HttpRequest) -> HttpResponse:
    """The demo agent's paid skill: the weather wherever the message asks."""
    place = request.body.decode("utf-8", "replace").strip() or "Lisbon"
    report = {"place": place, "temperature_c": 21, "sky": "clear", "paid": True}
    return skill_answer(f"{place}: 21 C, clear", report, name="weather")


def serve_a2a(
    setup: ChainSetup,
    *,
    routes: RoutesConfig | None = None,
    host: str = LOOPBACK,
    ports: dict[str, int] | None = None,
    allow_public: bool = False,
    sponsoring: Iterable[str] = (),
    name: str = "x402sim paid agent",
) -> Running:
    """Chain RPC, facilitator and a paid A2A agent together, on one loop (``ValueError`` for a
    routes file whose keys are not ``POST /<skill>``)."""
    ports = {**DEFAULT_A2A_PORTS, **(ports or {})}
    config = routes or RoutesConfig(routes=dict(DEMO_SKILLS))
    for key in config.routes:
        method, _, path = key.partition(" ")
        if method != "POST" or not path.startswith("/"):
            raise ValueError(
                f"{config.source or 'routes'}: route {key!r}: an agent's skills are 'POST /<skill>'"
            )
        skill_route_key(path[1:])  # ValueError naming an id A2A clients could not name
    services = Services(host, allow_public=allow_public)
    stack = local_stack(setup, services, ports, sponsoring=sponsoring)
    chain, facilitator, rpc_url, facilitator_url = (
        stack.chain,
        stack.facilitator,
        stack.rpc_url,
        stack.facilitator_url,
    )
    config.network = config.network or chain.network
    config.asset = config.asset or chain.usdc
    config.asset_name = config.asset_name or chain.token_name
    config.asset_version = config.asset_version or chain.token_version
    config.pay_to = config.pay_to or stack.payee
    role, client = resource_server(config, facilitator_url, switches={"supported": facilitator.supported()})
    handlers = {"weather": demo_weather_skill} if routes is None else {}
    agent = PaidAgent(role, client, url="http://127.0.0.1", handlers=handlers, name=name)
    agent.url = services.add("agent", agent.app, ports["agent"])
    services.start()
    info = {
        "rpc_url": rpc_url,
        "facilitator_url": facilitator_url,
        "agent_url": agent.url,
        "agent_card": agent.url + "/.well-known/agent-card.json",
        "skills": {s: role.routes[skill_route_key(s)].price for s in agent.skills},
        **stack.facts,
        "payee": role.pay_to,
        "facilitator_address": facilitator.address,
    }
    return Running(services, info)
