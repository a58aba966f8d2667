"""x402sim's own roles as targets, built from the harness's environment, served in process.

Job: the calibration side of the suite. ``reference_target(role)`` is the reference server,
facilitator or client configured exactly as ``x402sim serve ... --from-env`` / ``x402sim pay
--from-env`` would be, but started in this process (no interpreter start-up per target); controls
(``controls.py``) are the same roles with one rule broken on purpose.

Rules: a server or facilitator target is served on its own loopback ``Services``; a client target
runs ``PayingClient`` in a worker thread and returns the same JSON verdict a client command prints.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..actors.client import SpendPolicy
from ..actors.facilitator import Facilitator
from ..actors.server import ResourceServer
from ..evm.rpc_chain import RpcChain
from ..http.client import PayingClient
from ..http.facilitator_app import facilitator_app
from ..http.routes_file import RoutesConfig
from ..http.runner import LOOPBACK, Services
from ..http.serve import client_env, client_verdict, facilitator_env, resource_server, server_env
from ..http.server_app import resource_server_app
from .results import Role, TargetInfo
from .targets import ClientRun


def reference_server(
    env: dict[str, str], role_class: type[ResourceServer] = ResourceServer, **switches
) -> tuple[ResourceServer, object]:
    """The server ``x402sim serve server --from-env`` runs, read from ``env`` by the same reader
    (``PAYMENT_IDENTIFIER`` included). ``switches`` are ``ResourceServer`` fields and win over the
    env; ``role_class`` (a subclass, for controls) is built in its place."""
    parsed = server_env(env)
    routes, handlers = parsed.routes()
    config = RoutesConfig(
        routes=routes,
        network=parsed.network,
        asset=parsed.asset,
        asset_name=parsed.asset_name,
        asset_version=parsed.asset_version,
        pay_to=parsed.pay_to,
    )
    switches.setdefault("payment_identifier", parsed.payment_identifier)
    role, client = resource_server(config, parsed.facilitator_url, role_class=role_class, switches=switches)
    return role, resource_server_app(role, client, handlers=handlers)


def reference_facilitator(env: dict[str, str], **switches) -> tuple[Facilitator, object]:
    parsed = facilitator_env(env)
    role = Facilitator(RpcChain(parsed.rpc_url), parsed.key, **switches)
    return role, facilitator_app(role, automine=False, settle_timeout=10.0)


@dataclass
class InProcessService:
    """A server or facilitator app built from the environment and served on loopback here."""

    role: Role
    build: Callable[[dict[str, str]], object]  # env -> ASGI app
    name: str = "x402sim reference"
    kind: str = "reference"
    services: Services | None = field(default=None, init=False)
    base_url: str = field(default="", init=False)

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind=self.kind, spec=self.name, name=self.name)

    def transport(self):
        return None

    def alive(self) -> bool:
        return True

    def start(self, env: dict[str, str]) -> str:
        self.services = Services(LOOPBACK)
        self.base_url = self.services.add(self.role, self.build(env))
        self.services.start()
        return self.base_url

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None

    def log_tail(self, n: int = 15) -> str:
        return ""


def pay_from_env(env: dict[str, str], policy: SpendPolicy | None = None) -> dict:
    """What ``x402sim pay --from-env`` does, read by the same reader: one request, paid at most once
    (capped at ``MAX_AMOUNT_ATOMIC`` unless ``policy`` says otherwise); returns the verdict."""
    parsed = client_env(env)
    policy = policy or SpendPolicy(max_price=parsed.max_amount)
    with PayingClient(parsed.key, networks=(parsed.network,), policy=policy) as client:
        try:
            result = client.get(parsed.url)
        except Exception as exc:  # the verdict says what went wrong, as a client command would
            error = f"{type(exc).__name__}: {exc}"
            return {"success": False, "data": error, "status_code": None, "payment_response": None}
    return client_verdict(result)


@dataclass
class InProcessClient:
    """A client target that runs ``pay`` in this process (``pay`` takes the env, returns a verdict)."""

    pay: Callable[[dict[str, str]], dict] = pay_from_env
    name: str = "x402sim reference"
    kind: str = "reference"
    role: Role = "client"

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role="client", kind=self.kind, spec=self.name, name=self.name)

    async def run(self, env: dict[str, str], timeout: float | None = None) -> ClientRun:
        started = time.monotonic()
        verdict = await asyncio.to_thread(self.pay, env)
        return ClientRun(
            0 if verdict.get("success") else 1,
            json.dumps(verdict),
            verdict,
            round(time.monotonic() - started, 3),
        )


def reference_target(role: Role, **switches):
    if role == "server":
        return InProcessService("server", lambda env: reference_server(env, **switches)[1])
    if role == "facilitator":
        return InProcessService("facilitator", lambda env: reference_facilitator(env, **switches)[1])
    return InProcessClient()
