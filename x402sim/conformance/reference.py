"""x402sim's own roles as targets, built from the harness's environment, served in process.

Job: the calibration side of the suite. ``reference_target(role)`` is the reference server,
facilitator or client configured exactly as ``x402sim serve ... --from-env`` / ``x402sim pay
--from-env`` would be, but started in this process (no interpreter start-up per target); controls
(``controls.py``) are the same roles with one rule broken on purpose.

Rules: a server or facilitator target is served on its own loopback ``Services``; a client target
runs ``PayingClient`` in a worker thread and returns the same JSON verdict a client command prints.

The reference server also sells the other mechanisms when told where (x402sim's additions to the
env contract): ``PERMIT2_PATH``, an ``exact`` route paid with Permit2; ``UPTO_PATH``, an ``upto``
route whose maximum is ``PRICE_ATOMIC`` and whose handler charges the request's ``charge`` query
parameter (atomic units, through the SDKs' ``Settlement-Overrides`` header), else the maximum; and
``BATCH_PATH``, a ``batch-settlement`` route at ``PRICE_ATOMIC`` per request (its channels kept in
memory, the receiver authorizer delegated to the facilitator). It then reads its facilitator's
``/supported`` once at start, for upto's ``facilitatorAddress``, the channels' ``receiverAuthorizer``
and the gas-sponsoring extensions it declares. Reference targets speak every mechanism (``mechanisms``).

Trust-enabled variants (``reference_target(role, trust=True)``), configured from the trust variables
of the environment exactly as a third-party target would be (see ``trust``): the server verifies AP2
mandates issued by the user key in ``AP2_TRUSTED_USER_JWK`` (``MandateVerifier``) and admits only
agents signing with a key of ``WEB_BOT_AUTH_JWKS`` (``CrawlPolicy`` over a ``KeyDirectory``); the
client reads the ERC-8004 registries on ``EVM_RPC_URL`` (``AgentDirectory``) and pays a server that
declares an agent only at that agent's ``agentWallet``. They advertise those features (``trust``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx

from ..actors.client import SpendPolicy
from ..actors.facilitator import Facilitator
from ..actors.messages import HttpRequest, HttpResponse
from ..actors.server import SETTLEMENT_OVERRIDES, ResourceServer, Route
from ..evm.rpc_chain import RpcChain
from ..http.client import PayingClient
from ..http.facilitator_app import facilitator_app
from ..http.guard import Asgi
from ..http.routes_file import RoutesConfig
from ..http.runner import LOOPBACK, Services
from ..http.serve import client_env, client_verdict, facilitator_env, resource_server, server_env
from ..http.server_app import resource_server_app
from ..protocol import SupportedResponse
from .catalog import DEFAULT_MECHANISM, MECHANISMS
from .results import Role, TargetInfo, TargetKind
from .targets import ClientRun, InProcessTarget
from .trust import AP2, ERC8004, WEB_BOT_AUTH

PERMIT2_PATH = "PERMIT2_PATH"  # env: the path of an exact route paid with Permit2
UPTO_PATH = "UPTO_PATH"  # env: the path of an upto route (maximum PRICE_ATOMIC, charge ?charge=N)
BATCH_PATH = "BATCH_PATH"  # env: the path of a batch-settlement route (price PRICE_ATOMIC)
CHARGE_PARAMETER = "charge"
SERVER_TRUST = frozenset({AP2, WEB_BOT_AUTH})
CLIENT_TRUST = frozenset({ERC8004})


def _json_var(env: Mapping[str, str], name: str):
    value = env.get(name)
    if not value:
        raise ValueError(f"{name} is not set: the trust-enabled reference reads its trust material from it")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None


def mandate_verifier(env: Mapping[str, str], verifier_class=None, **kwargs):
    """A ``MandateVerifier`` trusting the user key of ``AP2_TRUSTED_USER_JWK``."""
    from ..trust.mandates import MandateVerifier

    return (verifier_class or MandateVerifier)([_json_var(env, "AP2_TRUSTED_USER_JWK")], **kwargs)


def crawl_policy(env: Mapping[str, str], verifier_class=None, *, block_unsigned: bool = True, **kwargs):
    """A ``CrawlPolicy`` admitting agents that sign with a key of ``WEB_BOT_AUTH_JWKS`` (published by
    the directory at ``WEB_BOT_AUTH_DIRECTORY_URL``, when set)."""
    from ..trust.crawl import CrawlPolicy
    from ..trust.signatures import KeyDirectory, SignatureVerifier

    directory = KeyDirectory.from_jwks(
        _json_var(env, "WEB_BOT_AUTH_JWKS"), source=env.get("WEB_BOT_AUTH_DIRECTORY_URL") or None
    )
    return CrawlPolicy(
        (verifier_class or SignatureVerifier)(directory, **kwargs), block_unsigned=block_unsigned
    )


def trust_server(
    env: dict[str, str],
    role_class: type[ResourceServer] = ResourceServer,
    *,
    mandates=None,
    crawl=None,
    **switches,
) -> tuple[ResourceServer, Asgi]:
    """The from-env reference server with AP2 mandates and Web Bot Auth enforced (``mandates`` and
    ``crawl`` replace the verifier and the policy read from ``env``)."""
    switches["mandates"] = mandates if mandates is not None else mandate_verifier(env)
    switches["crawl"] = crawl if crawl is not None else crawl_policy(env)
    return reference_server(env, role_class=role_class, **switches)


def _paid_content(request: HttpRequest) -> HttpResponse:
    return HttpResponse.of_json(200, {"message": "paid content", "path": request.path, "paid": True})


def upto_handler(request: HttpRequest) -> HttpResponse:
    """The upto route's handler: paid content, charging the ``charge`` query parameter when given."""
    answer = _paid_content(request)
    charge = parse_qs(urlsplit(request.path).query).get(CHARGE_PARAMETER)
    if not charge:
        return answer
    overrides = (SETTLEMENT_OVERRIDES, json.dumps({"amount": charge[0]}))
    return HttpResponse(answer.status, (*answer.headers, overrides), answer.body)


def mechanism_routes(env: Mapping[str, str], price: int) -> tuple[dict[str, Route], dict]:
    """The routes ``PERMIT2_PATH``, ``UPTO_PATH`` and ``BATCH_PATH`` name (none when unset), and
    their handlers."""
    routes: dict[str, Route] = {}
    handlers: dict = {}
    for var, scheme, method, handler in (
        (PERMIT2_PATH, None, "permit2", _paid_content),
        (UPTO_PATH, "upto", None, upto_handler),
        (BATCH_PATH, "batch-settlement", None, _paid_content),
    ):
        path = env.get(var, "").strip()
        if path:
            key = f"GET {path}"
            routes[key] = Route(key, price, scheme=scheme, transfer_method=method, description=var)
            handlers[key] = handler
    return routes, handlers


def read_supported(facilitator_url: str) -> SupportedResponse | None:
    """The facilitator's ``/supported`` answer, or None when it cannot be read."""
    try:
        answer = httpx.get(facilitator_url.rstrip("/") + "/supported", timeout=5.0)
        return SupportedResponse.model_validate(answer.json())
    except (httpx.HTTPError, ValueError):
        return None


def reference_server(
    env: dict[str, str], role_class: type[ResourceServer] = ResourceServer, **switches
) -> tuple[ResourceServer, Asgi]:
    """The server ``x402sim serve server --from-env`` runs, read from ``env`` by the same reader
    (``PAYMENT_IDENTIFIER`` included). ``switches`` are ``ResourceServer`` fields and win over the
    env; ``role_class`` (a subclass, for controls) is built in its place."""
    parsed = server_env(env)
    routes, handlers = parsed.routes()
    # Permit2 and channel payments are x402 v2 only: a v1 server sells none; upto and
    # batch-settlement charge after the work, so an upfront server sells neither
    v2 = switches.get("x402_version", 2) == 2
    permit2_routes, permit2_handlers = mechanism_routes(env, parsed.price) if v2 else ({}, {})
    if switches.get("upfront"):
        permit2_routes = {
            k: r for k, r in permit2_routes.items() if r.scheme not in ("upto", "batch-settlement")
        }
    if permit2_routes:
        routes, handlers = {**routes, **permit2_routes}, {**handlers, **permit2_handlers}
        if "supported" not in switches:
            switches["supported"] = read_supported(parsed.facilitator_url)
    config = RoutesConfig(
        routes=routes,
        network=parsed.network,
        asset=parsed.asset,
        asset_name=parsed.asset_name,
        asset_version=parsed.asset_version,
        pay_to=parsed.pay_to,
    )
    switches.setdefault("payment_identifier", parsed.payment_identifier)
    role, client = resource_server(
        config,
        parsed.facilitator_url,
        facilitator_timeout=parsed.facilitator_timeout,
        role_class=role_class,
        switches=switches,
    )
    return role, resource_server_app(role, client, handlers=handlers)


def reference_facilitator(
    env: dict[str, str], role_class: type[Facilitator] = Facilitator, **switches
) -> tuple[Facilitator, Asgi]:
    """The facilitator ``x402sim serve facilitator --from-env`` runs, offering both gas-sponsoring
    extensions unless ``switches`` say otherwise."""
    from ..mechanisms import SPONSORING_EXTENSIONS

    switches.setdefault("sponsoring", frozenset(SPONSORING_EXTENSIONS))
    parsed = facilitator_env(env)
    role = role_class(RpcChain(parsed.rpc_url), parsed.key, **switches)
    return role, facilitator_app(role, automine=False, settle_timeout=10.0)


@dataclass
class InProcessService(InProcessTarget):
    """A server or facilitator app built from the environment and served on loopback here."""

    role: Role
    build: Callable[[dict[str, str]], Asgi]  # env -> ASGI app
    name: str = "x402sim reference"
    kind: TargetKind = "reference"
    trust: frozenset[str] = frozenset()  # the trust features it advertises
    mechanisms: tuple[str, ...] = MECHANISMS  # the payment mechanisms it speaks
    services: Services | None = field(default=None, init=False)
    base_url: str = field(default="", init=False)

    def start(self, env: dict[str, str]) -> str:
        self.services = Services(LOOPBACK)
        self.base_url = self.services.add(self.role, self.build(env))
        self.services.start()
        return self.base_url

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None


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


def agent_directory(env: Mapping[str, str]):
    """An ``AgentDirectory`` over the chain at ``EVM_RPC_URL``, reading the identity registry named
    by ``ERC8004_IDENTITY_REGISTRY`` (``eip155:<chainId>:<address>``; default: the genesis one)."""
    from ..trust.identity import AgentDirectory

    rpc_url = env.get("EVM_RPC_URL")
    if not rpc_url:
        raise ValueError("EVM_RPC_URL is not set: an ERC-8004 client reads the registries there")

    def registry(var: str) -> str | None:  # None: the chain's default
        named = env.get(var, "")
        return named.rsplit(":", 1)[1] if named.count(":") == 2 else None

    identity = registry("ERC8004_IDENTITY_REGISTRY")
    reputation = registry("ERC8004_REPUTATION_REGISTRY")
    return AgentDirectory(RpcChain(rpc_url, identity_registry=identity, reputation_registry=reputation))


def trust_pay(env: dict[str, str], *, directory=None, client_class=None) -> dict:
    """``pay_from_env`` by a client that reads ERC-8004 (``agent_directory(env)``, or ``directory``):
    it refuses an offer whose payTo is not the declared agent's ``agentWallet``. ``client_class``
    (a ``Client`` subclass, for controls) plays the role."""
    parsed = client_env(env)
    opened = None
    try:
        if directory is None:
            directory = opened = agent_directory(env)
        policy = SpendPolicy(max_price=parsed.max_amount)
        with PayingClient(
            parsed.key, networks=(parsed.network,), policy=policy, directory=directory
        ) as client:
            if client_class is not None:
                role = client.role
                client.role = client_class(
                    role.key, networks=role.networks, policy=policy, seed=role.seed, directory=directory
                )
            result = client.get(parsed.url)
    except Exception as exc:  # the verdict says what went wrong, as a client command would
        error = f"{type(exc).__name__}: {exc}"
        return {"success": False, "data": error, "status_code": None, "payment_response": None}
    finally:
        if opened is not None:
            opened.chain.close()
    return client_verdict(result)


@dataclass
class InProcessClient:
    """A client target that runs ``pay`` in this process (``pay`` takes the env, returns a verdict)."""

    pay: Callable[[dict[str, str]], dict] = pay_from_env
    name: str = "x402sim reference"
    kind: TargetKind = "reference"
    role: Role = "client"
    trust: frozenset[str] = frozenset()  # the trust features it advertises
    mechanisms: tuple[str, ...] = MECHANISMS  # the payment mechanisms it speaks

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


def reference_target(role: Role, *, trust: bool = False, **switches):
    """x402sim's own ``role`` as a target; ``trust=True``: the trust-enabled variant (servers and
    clients; it advertises the features it enforces)."""
    if role == "server" and trust:
        return InProcessService(
            "server",
            lambda env: trust_server(env, **switches)[1],
            name="x402sim reference (trust)",
            trust=SERVER_TRUST,
            mechanisms=(DEFAULT_MECHANISM,),  # an AP2 mandate binds an EIP-3009 nonce
        )
    if role == "server":
        return InProcessService("server", lambda env: reference_server(env, **switches)[1])
    if role == "facilitator":
        return InProcessService("facilitator", lambda env: reference_facilitator(env, **switches)[1])
    if trust:
        return InProcessClient(trust_pay, name="x402sim reference (trust)", trust=CLIENT_TRUST)
    return InProcessClient()
