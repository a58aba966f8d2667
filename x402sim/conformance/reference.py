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
from ..actors.messages import HttpResponse
from ..actors.server import ResourceServer, Route
from ..evm.rpc_chain import RpcChain
from ..http.client import FacilitatorClient, PayingClient
from ..http.facilitator_app import facilitator_app
from ..http.runner import LOOPBACK, Services
from ..http.server_app import resource_server_app
from ..protocol import read_settlement
from .results import Role, TargetInfo
from .targets import ClientRun

DEFAULT_MAX_AMOUNT = 1_000_000  # the SDK clients' default cap: $1 of a 6-decimals asset


def env_key(env: dict[str, str], role: str) -> bytes:
    raw = env.get(f"{role.upper()}_EVM_PRIVATE_KEY") or env["EVM_PRIVATE_KEY"]
    return bytes.fromhex(raw.removeprefix("0x"))


def server_routes(env: dict[str, str]) -> tuple[dict[str, Route], dict]:
    """The paid routes a from-env server sells, and the handlers of the ones that must fail."""
    price = int(env.get("PRICE_ATOMIC", "1000"))
    path = env.get("PROTECTED_PATH", "/protected")
    routes = {f"GET {path}": Route(f"GET {path}", price, description="protected resource")}
    handlers = {}
    if second := env.get("SECOND_PROTECTED_PATH"):
        routes[f"GET {second}"] = Route(f"GET {second}", price, description="second protected resource")
    if failing := env.get("FAILING_PATH"):
        routes[f"GET {failing}"] = Route(f"GET {failing}", price, description="a handler that fails")
        handlers[f"GET {failing}"] = lambda request: HttpResponse.of_json(500, {"error": "handler failed"})
    return routes, handlers


def reference_server(
    env: dict[str, str], role_class: type[ResourceServer] = ResourceServer, **switches
) -> tuple[ResourceServer, object]:
    """The from-env reference server; ``PAYMENT_IDENTIFIER`` (``optional``/``required``) turns on the
    payment-identifier extension. ``switches`` are ``ResourceServer`` fields and win over the env;
    ``role_class`` (a subclass, for controls) is built in its place."""
    routes, handlers = server_routes(env)
    if env.get("PAYMENT_IDENTIFIER", "off") != "off":
        switches.setdefault("payment_identifier", env["PAYMENT_IDENTIFIER"])
    role = role_class(
        network=env["EVM_NETWORK"],
        asset=env["EVM_ASSET"],
        asset_name=env["EVM_ASSET_NAME"],
        asset_version=env["EVM_ASSET_VERSION"],
        pay_to=env.get("SERVER_EVM_ADDRESS") or env["EVM_PAYEE_ADDRESS"],
        routes=routes,
        **switches,
    )
    return role, resource_server_app(
        role, FacilitatorClient(env["FACILITATOR_URL"], timeout=30.0), handlers=handlers
    )


def reference_facilitator(env: dict[str, str], **switches) -> tuple[Facilitator, object]:
    role = Facilitator(RpcChain(env["EVM_RPC_URL"]), env_key(env, "facilitator"), **switches)
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
    """What ``x402sim pay --from-env`` does: one request, paid at most once; returns the verdict."""
    url = env["RESOURCE_SERVER_URL"].rstrip("/") + env.get("ENDPOINT_PATH", "")
    cap = int(env.get("MAX_AMOUNT_ATOMIC", DEFAULT_MAX_AMOUNT))
    with PayingClient(
        env_key(env, "client"), networks=(env["EVM_NETWORK"],), policy=policy or SpendPolicy(max_price=cap)
    ) as client:
        try:
            result = client.get(url)
        except Exception as exc:  # the verdict says what went wrong, as a client command would
            return {
                "success": False,
                "data": None,
                "status_code": None,
                "payment_response": None,
                "error": f"{type(exc).__name__}: {exc}",
            }
    settlement = read_settlement(result.response.headers) if result.response else None
    try:
        data = result.json()
    except ValueError:
        data = result.body.decode("utf-8", "replace")
    return {
        "success": 200 <= result.status < 300,
        "data": data,
        "status_code": result.status,
        "payment_response": settlement.to_wire() if settlement else None,
    }


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
