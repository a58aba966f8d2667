"""Scenario files: the TOML schema of a simulated world, validated, with errors that say where.

Rules:

* One pydantic model per table; unknown keys are errors (with a "did you mean" suggestion), so a
  typo never silently falls back to a default.
* Money is written as decimal USDC strings (``price = "0.001"``) and stored in atomic units (6
  decimals); times are virtual seconds (floats), latencies and service times are distributions
  (``distributions``).
* ``load_scenario`` takes a path, a TOML string's parsed dict, or a dict, plus ``--set`` style
  overrides (``"facilitators.cdp.dedupe=off"``: a list item is named by its index or its ``name``),
  and raises one ``ScenarioError`` naming the file, the key path and the problem. Nothing runs on a
  scenario that did not validate.
* Names refer to each other (servers to facilitators, agents to endpoints and payees, faults to
  facilitators); every reference is checked here, not when the run reaches it.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ..evm.chain import DEFAULT_START_TIME
from .distributions import ZERO, Distribution

USDC_DECIMALS = 6
ATOMIC = 10**USDC_DECIMALS


class ScenarioError(Exception):
    """A scenario that cannot run: ``where`` (file and key path) and ``problem``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def parse_usdc(value: Any) -> int:
    """A decimal USDC amount (``"0.001"``) in atomic units; at most 6 decimals, never negative."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('write USDC amounts as decimal strings, e.g. "0.001"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} is not a non-negative amount")
    atomic = amount * ATOMIC
    if atomic != atomic.to_integral_value():
        raise ValueError(f"{value!r} has more than {USDC_DECIMALS} decimals")
    return int(atomic)


def format_usdc(atomic: int) -> str:
    return str((Decimal(atomic) / ATOMIC).normalize()) if atomic else "0"


Usdc = Annotated[
    int,
    BeforeValidator(parse_usdc),
    PlainSerializer(format_usdc, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,6})?$", "description": 'USDC, e.g. "0.001"'}),
]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class Window(_Table):
    """A stretch of virtual time, ``[start, end)``."""

    start: Seconds
    end: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


# -- [simulation] ----------------------------------------------------------------------------------


class Simulation(_Table):
    name: Name
    description: str = ""
    seed: int = 0
    duration: float = Field(gt=0, le=366 * 86400, description="virtual seconds during which requests start")
    start_time: int = Field(DEFAULT_START_TIME, ge=0, description="unix time of virtual second 0")
    warmup: Seconds = Field(0, description="requests started before this are left out of statistics")
    timeline_bucket: float | None = Field(None, gt=0, description="seconds per timeline.csv row")
    drain: Seconds = Field(120, description="virtual seconds allowed after duration for work in flight")

    @model_validator(mode="after")
    def _warmup_fits(self) -> Simulation:
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({self.warmup}) must be shorter than duration ({self.duration})")
        return self


# -- [chain] ---------------------------------------------------------------------------------------


class L1Fees(_Table):
    """Fee per gas = max(base fee, floor) + priority fee."""

    model: Literal["l1"]
    base_fee_gwei: float = Field(ge=0)
    base_fee_floor_gwei: float = Field(0, ge=0)
    priority_fee_gwei: float = Field(0, ge=0)


class OpStackFees(_Table):
    """L2 execution fee (gas x (max(base fee, floor) + priority)) plus the L1 data fee of the
    transaction's bytes (Ecotone: calldata gas x (16 x base fee scalar x L1 base fee + blob base fee
    scalar x blob base fee) / 16e6)."""

    model: Literal["op-stack"]
    l2_base_fee_gwei: float = Field(ge=0)
    l2_base_fee_floor_gwei: float = Field(0, ge=0)
    priority_fee_gwei: float = Field(0, ge=0)
    l1_base_fee_gwei: float = Field(ge=0)
    blob_base_fee_gwei: float = Field(ge=0)
    base_fee_scalar: int = Field(ge=0)
    blob_base_fee_scalar: int = Field(ge=0)


FeeModel = Annotated[L1Fees | OpStackFees, Field(discriminator="model")]


class Chain(_Table):
    block_time: float = Field(2.0, gt=0, le=3600)
    preconfirmation: float | None = Field(None, gt=0, description="flashblock interval, seconds")
    confirmations: int = Field(0, ge=0, le=10_000, description="blocks after inclusion that make final")
    block_gas_limit: int = Field(30_000_000, ge=200_000)
    token: Literal["usdc", "pyusd"] = "usdc"
    backend: Literal["evm", "ledger"] = Field(
        "evm", description="evm: py-evm runs the token; ledger: its rules in Python, for scale"
    )
    eth_usd: float = Field(3000.0, gt=0)
    fee: FeeModel = Field(default_factory=lambda: L1Fees(model="l1", base_fee_gwei=1.0))

    @model_validator(mode="after")
    def _preconfirmation_fits(self) -> Chain:
        if self.preconfirmation is not None and self.preconfirmation > self.block_time:
            raise ValueError(
                f"preconfirmation ({self.preconfirmation}) must not exceed block_time ({self.block_time})"
            )
        return self


# -- [[facilitators]] ------------------------------------------------------------------------------


class FacilitatorFees(_Table):
    """What the facilitator bills per settlement: the first ``free_per_month`` settlements of each
    calendar month are free, then ``fixed`` plus ``bps`` of the amount."""

    fixed: Usdc = 0
    bps: float = Field(0, ge=0, le=10_000)
    free_per_month: int = Field(0, ge=0)


class Facilitator(_Table):
    name: Name
    verify_time: Distribution = ZERO
    settle_time: Distribution = ZERO
    concurrency: int = Field(8, ge=1, le=100_000)
    rpc_latency: Distribution | None = Field(None, description="one way to the chain (default [network])")
    fee: FacilitatorFees = Field(default_factory=FacilitatorFees)
    settle_timeout: Seconds | None = Field(None, description="then answer settlement_pending")
    settle_on: Literal["final", "preconfirmation"] = "final"
    outages: list[Window] = Field(default_factory=list)
    verify_error_rate: float = Field(0, ge=0, le=1)
    settle_error_rate: float = Field(0, ge=0, le=1)
    verify: Literal["state", "simulate"] = "state"
    dedupe: Literal["refuse", "share", "off"] = "refuse"
    check_transfer_log: bool = True


# -- [[servers]] -----------------------------------------------------------------------------------


class Change(_Table):
    """From ``at`` on, the endpoint asks another price or names another payee (price bait,
    recipient redirect)."""

    at: Seconds
    price: Usdc | None = None
    pay_to: Name | None = None


class Endpoint(_Table):
    path: str = Field(pattern=r"^/[^\s?#]*$")
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    price: Usdc
    max_timeout_seconds: int = Field(60, ge=1, le=86_400)
    handler_time: Distribution | None = None
    changes: list[Change] = Field(default_factory=list)


class ReplayGuard(_Table):
    ttl: float = Field(3600, gt=0)


class Server(_Table):
    name: Name
    facilitators: list[Name] = Field(min_length=1, description="in order of preference")
    endpoints: list[Endpoint] = Field(min_length=1)
    pay_to: Name | None = Field(None, description="payee label; servers sharing a label share an address")
    order: Literal["authorization", "upfront"] = "authorization"
    handler_time: Distribution = ZERO
    settle_timeout: Seconds | None = None
    replay_guard: ReplayGuard | None = None
    serve_unsettled: bool = False

    @property
    def payee(self) -> str:
        return self.pay_to or self.name


# -- [[agents]] ------------------------------------------------------------------------------------


class Poisson(_Table):
    kind: Literal["poisson"]
    rate: float = Field(gt=0, description="requests per second per agent")


class Interval(_Table):
    kind: Literal["interval"]
    every: float = Field(gt=0)


class Burst(_Table):
    kind: Literal["burst"]
    every: float = Field(gt=0)
    size: int = Field(ge=1, le=10_000)


class Piecewise(_Table):
    """Poisson arrivals whose rate per agent changes at the given times: ``[[t, rate], ...]``."""

    kind: Literal["piecewise"]
    steps: list[tuple[Seconds, Annotated[float, Field(ge=0)]]] = Field(min_length=1)

    @model_validator(mode="after")
    def _sorted(self) -> Piecewise:
        times = [t for t, _ in self.steps]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("steps must be in strictly increasing time order")
        return self

    def rate_at(self, t: float) -> float:
        rate = 0.0
        for start, r in self.steps:
            if start > t:
                break
            rate = r
        return rate


Arrivals = Annotated[Poisson | Interval | Burst | Piecewise, Field(discriminator="kind")]


class Uniform(_Table):
    kind: Literal["uniform"] = "uniform"


class Zipf(_Table):
    kind: Literal["zipf"]
    exponent: float = Field(1.0, gt=0)


class Weights(_Table):
    kind: Literal["weights"]
    weights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)


def _choice_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


Choice = Annotated[Uniform | Zipf | Weights, Field(discriminator="kind"), BeforeValidator(_choice_shorthand)]


class Retry(_Table):
    """Retries of a request whose answer was a 5xx or never came (each retry pays anew)."""

    max: int = Field(0, ge=0, le=10)
    backoff: Distribution = ZERO


class Policy(_Table):
    budget: Usdc | None = None
    max_price: Usdc | None = None
    allowed_pay_to: list[Name] | None = None


class Honest(_Table):
    kind: Literal["honest"] = "honest"


class Replay(_Table):
    """Pays honestly, then sends each settled payment again ``times`` times, ``delay`` apart."""

    kind: Literal["replay"]
    times: int = Field(1, ge=1, le=100)
    delay: Distribution = 1.0


class Race(_Table):
    """Signs one payment and sends it at once ``width`` times, over the group's targets in turn."""

    kind: Literal["race"]
    width: int = Field(2, ge=2, le=100)


class Underpay(_Table):
    """Signs for ``fraction`` of the price, leaving the offer it claims to accept unchanged."""

    kind: Literal["underpay"]
    fraction: float = Field(0.5, ge=0, lt=1)


class Expired(_Table):
    kind: Literal["expired"]


class NotYetValid(_Table):
    kind: Literal["not-yet-valid"]


class Tamper(_Table):
    """Changes the recipient or the amount of the signed authorization after signing."""

    kind: Literal["tamper"]
    field: Literal["recipient", "amount"] = "recipient"


class Unfunded(_Table):
    """Pays from a wallet that holds nothing (the group's funding is ignored)."""

    kind: Literal["unfunded"]


class Drain(_Table):
    """Moves its whole balance to another wallet ``after`` seconds after sending a paid request."""

    kind: Literal["drain"]
    after: Distribution = 0.05


def _behaviour_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


Behaviour = Annotated[
    Honest | Replay | Race | Underpay | Expired | NotYetValid | Tamper | Unfunded | Drain,
    Field(discriminator="kind"),
    BeforeValidator(_behaviour_shorthand),
]


class AgentGroup(_Table):
    name: Name
    count: int = Field(1, ge=1, le=1_000_000)
    funding: Usdc = Field(default=10 * ATOMIC, description="USDC minted to each agent")
    arrivals: Arrivals = Field(default_factory=lambda: Poisson(kind="poisson", rate=0.1))
    start: Seconds = 0
    stop: Seconds | None = None
    max_requests: int | None = Field(None, ge=1, description="per agent")
    targets: list[str] | None = Field(None, description='"server/path" (or "server" for all its paths)')
    choice: Choice = Field(default_factory=Uniform)
    retry: Retry = Field(default_factory=Retry)
    policy: Policy | None = None
    behaviour: Behaviour = Field(default_factory=Honest)


# -- [network], [[faults]] -------------------------------------------------------------------------


class Network(_Table):
    """One-way latencies."""

    client_server: Distribution = 0.05
    server_facilitator: Distribution = 0.02
    facilitator_chain: Distribution = 0.01


class FacilitatorDown(Window):
    kind: Literal["facilitator-down"]
    facilitator: Name


class FacilitatorSlow(Window):
    kind: Literal["facilitator-slow"]
    facilitator: Name
    factor: float = Field(10, ge=1)


class RpcErrors(Window):
    """Transaction submissions fail with this probability (for one facilitator, or all)."""

    kind: Literal["rpc-errors"]
    facilitator: Name | None = None
    probability: float = Field(1, ge=0, le=1)


class SettleAnswerLost(Window):
    """The transfer lands on chain, but the settle answer never reaches the server."""

    kind: Literal["settle-answer-lost"]
    facilitator: Name | None = None
    probability: float = Field(1, ge=0, le=1)


class ChainStall(Window):
    kind: Literal["chain-stall"]


Fault = Annotated[
    FacilitatorDown | FacilitatorSlow | RpcErrors | SettleAnswerLost | ChainStall, Field(discriminator="kind")
]


class Scenario(_Table):
    """A whole simulated world."""

    model_config = ConfigDict(extra="forbid", title="x402sim scenario")

    simulation: Simulation
    chain: Chain = Field(default_factory=Chain)
    network: Network = Field(default_factory=Network)
    facilitators: list[Facilitator] = Field(min_length=1)
    servers: list[Server] = Field(min_length=1)
    agents: list[AgentGroup] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)

    def endpoint_keys(self) -> list[str]:
        return [f"{s.name}{e.path}" for s in self.servers for e in s.endpoints]


# -- loading ---------------------------------------------------------------------------------------


def load_scenario(
    source: str | Path | dict, overrides: list[str] | tuple[str, ...] = (), *, where: str | None = None
) -> Scenario:
    """Validate a scenario from a TOML file path or a dict, after applying ``key.path=value``
    overrides. Raises ``ScenarioError`` (file, key path, problem) when it cannot run."""
    if isinstance(source, dict):
        label = where or "scenario"
        data = json.loads(json.dumps(source))  # a deep copy that the overrides may change
    else:
        path = Path(source)
        label = where or str(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(label, "no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(label, f"cannot read: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(label, f"TOML syntax: {exc}") from None
    for override in overrides:
        _apply_override(data, override, label)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, data, label) from None
    _check_references(scenario, label)
    return scenario


def scenario_schema() -> dict:
    """The JSON Schema of scenario files (for editors)."""
    return Scenario.model_json_schema(mode="validation")


def _apply_override(data: dict, override: str, label: str) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"--set {override}", "expected key.path=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                names = [str(item.get("name")) for item in node if isinstance(item, dict)]
                raise ScenarioError(
                    f"--set {key}",
                    f"{'.'.join(parts[:i]) or 'scenario'} has no item {part!r}"
                    + (f" (items: {', '.join(names)})" if names else ""),
                )
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ScenarioError(f"--set {key}", f"{'.'.join(parts[:i])} is a value, not a table")


def _list_index(items: list, part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    return None


def _vocabulary() -> list[str]:
    """Every key a scenario file may use (from the JSON Schema), for "did you mean" suggestions."""
    words: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            words.update(node.get("properties", {}))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(scenario_schema())
    return sorted(words)


def _first_error(exc: ValidationError, data: Any, label: str) -> ScenarioError:
    errors = exc.errors(include_url=False)
    # a misspelt key explains the "missing" error of the key it was meant to be: name it first
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _data_path(error["loc"], data)
    path = _key_path(loc)
    problem = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        problem = "unknown key"
        close = difflib.get_close_matches(str(loc[-1]), _vocabulary(), n=1, cutoff=0.6)
        if close:
            problem += f" (did you mean {close[0]!r}?)"
    elif error["type"] == "missing":
        problem = "required key is missing"
    elif error["type"] == "union_tag_invalid":
        ctx = error["ctx"]
        problem = f"{ctx['discriminator']} {ctx['tag']!r} is not one of {ctx['expected_tags']}"
    return ScenarioError(f"{label}: {path}" if path else label, problem)


def _data_path(loc: tuple, data: Any) -> list:
    """``loc`` without the parts pydantic adds for the member of a union it tried (its tag or a
    validator's name): only keys and indexes that exist in the input, plus a missing last key."""
    out, node = [], data
    for i, part in enumerate(loc):
        present = part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)
        if isinstance(node, dict | list) and present:
            node = node[part]
        elif i < len(loc) - 1 or not isinstance(node, dict):
            continue
        out.append(part)
    return out


def _key_path(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_references(s: Scenario, label: str) -> None:
    def fail(path: str, problem: str) -> None:
        raise ScenarioError(f"{label}: {path}", problem)

    def unique(kind: str, names: list[str]) -> None:
        seen = set()
        for i, name in enumerate(names):
            if name in seen:
                fail(f"{kind}[{i}].name", f"{name!r} is used twice")
            seen.add(name)

    unique("facilitators", [f.name for f in s.facilitators])
    unique("servers", [v.name for v in s.servers])
    unique("agents", [a.name for a in s.agents])
    facilitators = {f.name for f in s.facilitators}
    for i, server in enumerate(s.servers):
        for j, name in enumerate(server.facilitators):
            if name not in facilitators:
                fail(f"servers[{i}].facilitators[{j}]", _unknown("facilitator", name, facilitators))
        routes = [f"{e.method} {e.path}" for e in server.endpoints]
        for j, route in enumerate(routes):
            if route in routes[:j]:
                fail(f"servers[{i}].endpoints[{j}].path", f"{route!r} is listed twice")
    payees = {server.payee for server in s.servers} | {
        c.pay_to for server in s.servers for e in server.endpoints for c in e.changes if c.pay_to
    }
    endpoints = set(s.endpoint_keys())
    servers = {v.name for v in s.servers}
    for i, group in enumerate(s.agents):
        for j, target in enumerate(group.targets or []):
            if target not in endpoints and target not in servers:
                fail(f"agents[{i}].targets[{j}]", _unknown("endpoint", target, endpoints | servers))
        if group.targets is not None and not group.targets:
            fail(f"agents[{i}].targets", "name at least one endpoint")
        n_targets = len(resolve_targets(s, group))
        if group.choice.kind == "weights" and len(group.choice.weights) != n_targets:
            count = len(group.choice.weights)
            fail(f"agents[{i}].choice.weights", f"{count} weights for {n_targets} targets")
        if group.stop is not None and group.stop <= group.start:
            fail(f"agents[{i}].stop", "must be after start")
        if group.policy and group.policy.allowed_pay_to:
            for j, payee in enumerate(group.policy.allowed_pay_to):
                if payee not in payees:
                    fail(f"agents[{i}].policy.allowed_pay_to[{j}]", _unknown("payee", payee, payees))
    for i, fault in enumerate(s.faults):
        name = getattr(fault, "facilitator", None)
        if name is not None and name not in facilitators:
            fail(f"faults[{i}].facilitator", _unknown("facilitator", name, facilitators))
    for i, f in enumerate(s.facilitators):
        if f.settle_on == "preconfirmation" and s.chain.preconfirmation is None:
            fail(f"facilitators[{i}].settle_on", "preconfirmation needs [chain] preconfirmation")


def resolve_targets(s: Scenario, group: AgentGroup) -> list[tuple[str, str]]:
    """The (server name, route key) pairs a group's agents may request, in file order."""
    out = []
    for target in group.targets or [v.name for v in s.servers]:
        server_name, _, path = target.partition("/")
        for server in s.servers:
            if server.name != server_name:
                continue
            for e in server.endpoints:
                if not path or e.path == "/" + path:
                    out.append((server.name, f"{e.method} {e.path}"))
    return out


def _unknown(kind: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
    return f"no {kind} named {name!r}{hint}"
