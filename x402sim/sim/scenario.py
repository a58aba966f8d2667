"""Scenario files: the TOML schema of a simulated world, validated, with errors that say where.

Rules:

* One pydantic model per table; unknown keys are errors (with a "did you mean" suggestion), so a
  typo never silently falls back to a default.
* Money is written as decimal USDC strings (``price = "0.001"``) and stored in atomic units (6
  decimals); times are virtual seconds (floats), latencies and service times are distributions
  (``distributions``).
* ``load_scenario`` takes a path, a TOML string's parsed dict, or a dict, plus overrides: a mapping
  of ``--set`` key paths to values (``{"facilitators.cdp.dedupe": "off"}``: a list item is named by
  its index or its ``name``; ``cli.parse_overrides`` reads ``--set`` text into one),
  and raises one ``ScenarioError`` naming the file, the key path and the problem. Nothing runs on a
  scenario that did not validate.
* Names refer to each other (servers to facilitators, agents to endpoints, payees and policies,
  faults to facilitators, policy rules to agent groups and payees); every reference is checked
  here, not when the run reaches it.
* Governance: ``[[policies]]`` are the very tables of a policy file (``x402sim.governance.policy``);
  a group names one with ``policy = "name"`` (its agents then ask a governor before they sign), and
  a rule's ``applies_to = "project:G"`` names agent group G. In a scenario, payees in ``allow``,
  ``block`` and ``new-payee`` lists may be payee labels (the world turns them into addresses).
* Trust (``sim.trust``): servers may be ERC-8004 agents (``identity``), deliver garbage
  (``deliver``), verify AP2 mandates (``mandates``) or sit behind a pay-per-crawl policy
  (``crawl``); groups may rate deliveries on chain (``feedback``), choose by reputation
  (``choice = { kind = "reputation" }``), pay under a ``mandate`` or sign their requests
  (``signature``). These run on the EVM backend only (``chain.backend = "ledger"`` is refused,
  naming the key), and only through the reference client (not with forged behaviours or races).
* Mechanisms: an endpoint names its ``scheme`` (``exact``, ``upto``) and ``transfer_method``
  (``eip3009``, ``permit2``; upto is Permit2 only), and an upto endpoint its ``usage`` (units drawn
  per request times a unit price, capped at its price, the signed maximum). A group's ``approval``
  says how its agents come by their allowance for Permit2; a facilitator's ``sponsoring`` lists the
  gas-sponsoring extensions it offers. The ledger backend is refused for a mechanism it has no rules
  for (``ledger_refusal`` of the mechanisms the endpoints use), and the forged behaviours for
  Permit2 endpoints (they sign EIP-3009 authorizations only); see ``_check_mechanisms``.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections import Counter
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..evm.backend import BACKENDS
from ..evm.chain import DEFAULT_START_TIME
from ..evm.channels import MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY
from ..governance.policy import Allow, Block, NewPayee, PolicyError, check_policies
from ..governance.policy import Policy as GovernancePolicy
from ..mechanisms import (
    BATCH_EIP3009,
    BATCH_PERMIT2,
    EXACT_EIP3009,
    EXACT_PERMIT2,
    UPTO_PERMIT2,
    Mechanism,
    ledger_refusal,
)
from ..mechanisms.sponsoring import EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING
from ..tables import (
    Name,
    Seconds,
    Table,
    TableError,
    Usdc,
    first_error,
    format_usdc,
    read_toml,
    unknown_name,
    vocabulary,
)
from .distributions import ZERO, Distribution

# the gas-sponsoring extension each sponsored ``approval`` of an agent group relies on
APPROVAL_EXTENSIONS = {
    "sponsored-eip2612": EIP2612_GAS_SPONSORING,
    "sponsored-erc20": ERC20_APPROVAL_GAS_SPONSORING,
}


CHANNEL_SCHEME = "batch-settlement"
DEFAULT_WITHDRAW_DELAY = 900  # the SDK server's default
# the endpoint keys that only a batch-settlement endpoint takes
CHANNEL_KEYS = ("min_deposit", "withdraw_delay", "claim_interval", "settle_interval")
# the agent group keys that only matter with a batch-settlement target
GROUP_CHANNEL_KEYS = ("deposit", "top_up", "refund", "max_withdraw_delay")


class ScenarioError(TableError):
    """A scenario that cannot run: ``where`` (file and key path) and ``problem``."""


_Table = Table
# Every table validates its defaults (``Table.model_config``), so a default may be written as the file
# would write it: a number of seconds for a distribution, a decimal string for USDC. Such a default is
# ``Field(default=..., validate_default=True)``, which tells the type checker that it is converted.


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
    start_time: int = Field(default=DEFAULT_START_TIME, ge=0, description="unix time of virtual second 0")
    warmup: Seconds = Field(default=0, description="requests started before this are left out of statistics")
    timeline_bucket: float | None = Field(default=None, gt=0, description="seconds per timeline.csv row")
    drain: Seconds = Field(
        default=120, description="virtual seconds allowed after duration for work in flight"
    )
    payments: Literal["all", "sample", "none"] = Field(
        default="all", description="payments.csv: every row, a sample (first 1,000, then 1 %) or none"
    )

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
    base_fee_floor_gwei: float = Field(default=0, ge=0)
    priority_fee_gwei: float = Field(default=0, ge=0)


class OpStackFees(_Table):
    """L2 execution fee (gas x (max(base fee, floor) + priority)) plus the L1 data fee of the
    transaction's bytes (Ecotone: calldata gas x (16 x base fee scalar x L1 base fee + blob base fee
    scalar x blob base fee) / 16e6)."""

    model: Literal["op-stack"]
    l2_base_fee_gwei: float = Field(ge=0)
    l2_base_fee_floor_gwei: float = Field(default=0, ge=0)
    priority_fee_gwei: float = Field(default=0, ge=0)
    l1_base_fee_gwei: float = Field(ge=0)
    blob_base_fee_gwei: float = Field(ge=0)
    base_fee_scalar: int = Field(ge=0)
    blob_base_fee_scalar: int = Field(ge=0)


FeeModel = Annotated[L1Fees | OpStackFees, Field(discriminator="model")]


class ChainSpec(_Table):
    block_time: float = Field(default=2.0, gt=0, le=3600)
    preconfirmation: float | None = Field(default=None, gt=0, description="flashblock interval, seconds")
    confirmations: int = Field(
        default=0, ge=0, le=10_000, description="blocks after inclusion that make final"
    )
    block_gas_limit: int = Field(default=30_000_000, ge=200_000)
    token: Literal["usdc", "pyusd"] = "usdc"
    backend: str = Field(
        default="evm",
        description="; ".join(f"{name}: {what}" for name, (what, _) in BACKENDS.items()),
        json_schema_extra={"enum": list(BACKENDS)},
    )
    eth_usd: float = Field(default=3000.0, gt=0)
    deposit_rate: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="annual rate at which money locked in batch-settlement deposits costs its payers",
    )
    fee: FeeModel = Field(default_factory=lambda: L1Fees(model="l1", base_fee_gwei=1.0))

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown chain backend {value!r}: one of {', '.join(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _preconfirmation_fits(self) -> ChainSpec:
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
    bps: float = Field(default=0, ge=0, le=10_000)
    free_per_month: int = Field(default=0, ge=0)


SponsoringName = Literal["eip2612GasSponsoring", "erc20ApprovalGasSponsoring"]


class FacilitatorSpec(_Table):
    name: Name
    verify_time: Distribution = ZERO
    settle_time: Distribution = ZERO
    concurrency: int = Field(default=8, ge=1, le=100_000)
    rpc_latency: Distribution | None = Field(
        default=None, description="one way to the chain (default [network])"
    )
    fee: FacilitatorFees = Field(default_factory=FacilitatorFees)
    settle_timeout: Seconds | None = Field(default=None, description="then answer settlement_pending")
    settle_on: Literal["final", "preconfirmation"] = "final"
    outages: list[Window] = Field(default_factory=list)
    verify_error_rate: float = Field(default=0, ge=0, le=1)
    settle_error_rate: float = Field(default=0, ge=0, le=1)
    verify: Literal["state", "simulate"] = "state"
    dedupe: Literal["refuse", "share", "off"] = "refuse"
    check_transfer_log: bool = True
    sponsoring: list[SponsoringName] = Field(
        default_factory=list, description="gas-sponsoring extensions offered to Permit2 payers"
    )


# -- prices ----------------------------------------------------------------------------------------
#
# An endpoint's price is a decimal USDC string, or a distribution drawn once per endpoint (per copy
# of a server template) when the world is built. Drawn prices are whole atomic units, never below
# one.


def _check_price_range(low: int, high: int, what: str = "low") -> None:
    if low < 1:
        raise ValueError(f"{what} ({format_usdc(low)}) must be at least 0.000001: a drawn price is never 0")
    if high < low:
        raise ValueError(f"high ({format_usdc(high)}) is below low ({format_usdc(low)})")


def _check_weights(weights: list[float], n: int, what: str) -> None:
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} {what}")
    if not sum(weights) > 0:
        raise ValueError("the weights must not all be 0")


class UniformPrice(_Table):
    """Every atomic amount from ``low`` to ``high`` (both included) equally likely."""

    kind: Literal["uniform"]
    low: Usdc
    high: Usdc

    @model_validator(mode="after")
    def _range(self) -> UniformPrice:
        _check_price_range(self.low, self.high)
        return self

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def bounds(self) -> tuple[int, int]:
        return self.low, self.high


class LogUniformPrice(_Table):
    """Uniform in the logarithm from ``low`` to ``high`` (as many prices between $0.001 and $0.01 as
    between $0.01 and $0.1), rounded to the atomic unit."""

    kind: Literal["log-uniform"]
    low: Usdc
    high: Usdc

    @model_validator(mode="after")
    def _range(self) -> LogUniformPrice:
        _check_price_range(self.low, self.high)
        return self

    def sample(self, rng: random.Random) -> int:
        drawn = round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return min(self.high, max(self.low, drawn))

    @property
    def mean(self) -> float:
        """The mean before rounding to the atomic unit (off by at most half a unit)."""
        if self.high == self.low:
            return float(self.low)
        return (self.high - self.low) / math.log(self.high / self.low)

    def bounds(self) -> tuple[int, int]:
        return self.low, self.high


class ChoicePrice(_Table):
    """One of ``values``, chosen by ``weights`` (default: equally likely)."""

    kind: Literal["choice"]
    values: list[Usdc] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None

    @model_validator(mode="after")
    def _valid(self) -> ChoicePrice:
        for value in self.values:
            _check_price_range(value, value, "a value")
        if self.weights is not None:
            _check_weights(self.weights, len(self.values), "values")
        return self

    def sample(self, rng: random.Random) -> int:
        if self.weights is None:
            return self.values[rng.randrange(len(self.values))]
        return rng.choices(self.values, weights=self.weights)[0]

    @property
    def mean(self) -> float:
        weights = self.weights or [1.0] * len(self.values)
        return sum(w * v for w, v in zip(weights, self.values, strict=True)) / sum(weights)

    def bounds(self) -> tuple[int, int]:
        return min(self.values), max(self.values)


class MixturePart(_Table):
    weight: float = Field(ge=0, allow_inf_nan=False)
    price: Price


class MixturePrice(_Table):
    """A price drawn from one of several prices or price distributions, chosen by weight."""

    kind: Literal["mixture"]
    of: list[MixturePart] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> MixturePrice:
        _check_weights([p.weight for p in self.of], len(self.of), "parts")
        for part in self.of:
            low, high = price_bounds(part.price)
            _check_price_range(low, high, "a part's price")
        return self

    def sample(self, rng: random.Random) -> int:
        part = rng.choices(self.of, weights=[p.weight for p in self.of])[0]
        return draw_price(part.price, rng)

    @property
    def mean(self) -> float:
        total = sum(p.weight for p in self.of)
        return sum(p.weight * price_mean(p.price) for p in self.of) / total

    def bounds(self) -> tuple[int, int]:
        ranges = [price_bounds(p.price) for p in self.of if p.weight > 0]
        return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def _fixed_price(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"kind", "value"}:
            raise ValueError('a fixed price is written "0.01" (or { kind = "fixed", value = "0.01" })')
        return value["value"]
    return value


def _price_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind")
    return getattr(value, "kind", "fixed")


PriceDistribution = UniformPrice | LogUniformPrice | ChoicePrice | MixturePrice
Price = Annotated[
    Annotated[Usdc, BeforeValidator(_fixed_price), Tag("fixed")]
    | Annotated[UniformPrice, Tag("uniform")]
    | Annotated[LogUniformPrice, Tag("log-uniform")]
    | Annotated[ChoicePrice, Tag("choice")]
    | Annotated[MixturePrice, Tag("mixture")],
    Discriminator(_price_kind),
]
MixturePart.model_rebuild()


def draw_price(price: int | PriceDistribution, rng: random.Random) -> int:
    """An endpoint's price in atomic units: the fixed amount, or one draw from ``rng``."""
    return price if isinstance(price, int) else price.sample(rng)


def price_mean(price: int | PriceDistribution) -> float:
    return float(price) if isinstance(price, int) else price.mean


def price_bounds(price: int | PriceDistribution) -> tuple[int, int]:
    """The least and the greatest price ``draw_price`` can give."""
    return (price, price) if isinstance(price, int) else price.bounds()


# -- [[servers]] -----------------------------------------------------------------------------------


TransportName = Literal["http", "mcp", "a2a"]
TRANSPORTS: tuple[TransportName, ...] = get_args(TransportName)
TOOL_PATH = re.compile(r"^/[A-Za-z0-9_.\-]{1,128}$")  # an MCP tool name as a route (``mcp_carry``)


class Change(_Table):
    """From ``at`` on, the endpoint asks another price or names another payee (price bait,
    recipient redirect). With ``attack``, payments quoted by the endpoint from then on are
    attack-bound (the governance summary counts them as the attacker's); a later change without it
    ends that."""

    at: Seconds
    price: Usdc | None = None
    pay_to: Name | None = None
    attack: bool = Field(
        default=False, description="payments quoted from now on are attack-bound (price bait)"
    )


class Usage(_Table):
    """What an ``upto`` request is charged: ``units`` drawn per request (rounded to a whole unit,
    e.g. tokens generated) times ``unit_price``, capped at the endpoint's price (the signed maximum)."""

    units: Distribution
    unit_price: Usdc

    def charge(self, rng: random.Random, maximum: int) -> int:
        return min(maximum, round(self.units.sample(rng)) * self.unit_price)


class EndpointSpec(_Table):
    path: str = Field(pattern=r"^/[^\s?#]*$")
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    price: Price = Field(
        description="USDC, or a price distribution drawn once per endpoint (upto: the signed maximum)"
    )
    max_timeout_seconds: int = Field(default=60, ge=1, le=86_400)
    handler_time: Distribution | None = None
    changes: list[Change] = Field(default_factory=list)
    scheme: Literal["exact", "upto", "batch-settlement"] = Field(
        default="exact",
        description="exact: the price is charged; upto: the usage, at most the price; batch-settlement: "
        "a cumulative voucher per request on the payer's channel, claimed and settled in batches",
    )
    transfer_method: Literal["eip3009", "permit2"] | None = Field(
        default=None, description="how the payer signs (default: eip3009 for exact; upto is permit2 only)"
    )
    usage: Usage | None = Field(
        default=None, description="upto: { units = <distribution>, unit_price = USDC } per request"
    )
    # batch-settlement only (see ``CHANNEL_KEYS``)
    min_deposit: Usdc | None = Field(
        default=None, description="batch-settlement: the least deposit (default: 10 x the price)"
    )
    withdraw_delay: int = Field(
        default=DEFAULT_WITHDRAW_DELAY,
        ge=MIN_WITHDRAW_DELAY,
        le=MAX_WITHDRAW_DELAY,
        description="batch-settlement: seconds a payer's withdrawal waits (its channels name it)",
    )
    claim_interval: int | None = Field(
        default=None, ge=1, description="batch-settlement: seconds between claim rounds (default 60)"
    )
    settle_interval: int | None = Field(
        default=None, ge=1, description="batch-settlement: seconds between settlements (default 120)"
    )
    # agents and tools (``sim.toolchain``): how the endpoint is reached, and its Bazaar listing
    transport: TransportName = Field(
        default="http",
        description='how agents reach it: "http", "mcp" (a tool: the route POST /<tool name>) or "a2a"; '
        "each has its latency model in [transports]",
    )
    kind: Name | None = Field(
        default=None,
        description="the kind of tool it is: listed in the Bazaar under it (task steps name kinds)",
    )
    reputation: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="the reputation its listing declares (0-1)"
    )
    fails: float = Field(
        default=0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="share of calls its handler answers with a tool error (500): not settled under "
        'order = "authorization", charged all the same under "upfront"',
    )

    @field_validator(*CHANNEL_KEYS)
    @classmethod
    def _channel_key(cls, value: Any, info: ValidationInfo) -> Any:
        default = DEFAULT_WITHDRAW_DELAY if info.field_name == "withdraw_delay" else None
        if value != default and info.data.get("scheme") != CHANNEL_SCHEME:
            raise ValueError(
                f'{info.field_name} is a batch-settlement key: write scheme = "batch-settlement"'
            )
        return value

    @model_validator(mode="after")
    def _mechanism_fits(self) -> EndpointSpec:
        if self.scheme == "upto" and self.transfer_method == "eip3009":
            raise ValueError(
                'upto is paid through Permit2 only: write transfer_method = "permit2" or leave it out'
            )
        if self.scheme == "exact" and self.usage is not None:
            raise ValueError(
                'usage sets an upto charge: an exact endpoint charges its price (scheme = "upto")'
            )
        if self.transport == "mcp" and (self.method != "POST" or not TOOL_PATH.match(self.path)):
            raise ValueError(
                "an MCP tool is the route POST /<tool name> (1-128 of A-Z a-z 0-9 _ . -): write "
                f'method = "POST" and a path of one such name (got {self.method} {self.path})'
            )
        return self

    @property
    def method_of_transfer(self) -> str:
        """The transfer method the endpoint's payments use (its default spelled out)."""
        return self.transfer_method or ("permit2" if self.scheme == "upto" else "eip3009")

    @property
    def mechanism(self) -> Mechanism:
        """The mechanism that pays this endpoint."""
        if self.scheme == "upto":
            return UPTO_PERMIT2
        if self.scheme == CHANNEL_SCHEME:
            return BATCH_PERMIT2 if self.method_of_transfer == "permit2" else BATCH_EIP3009
        return EXACT_PERMIT2 if self.method_of_transfer == "permit2" else EXACT_EIP3009

    @property
    def permit2(self) -> bool:
        return self.method_of_transfer == "permit2"

    @property
    def channels(self) -> bool:
        return self.scheme == CHANNEL_SCHEME


class ReplayGuardSpec(_Table):
    ttl: float = Field(default=3600, gt=0)


def _list_or_shares(value: Any) -> str:
    return "shares" if isinstance(value, dict) else "list"


Share = Annotated[float, Field(gt=0, allow_inf_nan=False)]
ServerFacilitators = Annotated[
    Annotated[list[Name], Field(min_length=1), Tag("list")]
    | Annotated[dict[Name, Share], Field(min_length=1), Tag("shares")],
    Discriminator(_list_or_shares),
]


# -- who is paying, and on whose behalf (trust) ----------------------------------------------------
#
# ERC-8004 identities and reputation, AP2 mandates and RFC 9421 agent signatures. They run on the
# EVM backend only (the ledger backend models the token, not the registries); see ``sim.trust``.


class GoodDelivery(_Table):
    kind: Literal["good"] = "good"


class GarbageDelivery(_Table):
    """The server takes payment and answers 200 with a useless body, for a ``share`` of its paid
    requests (the others are served properly)."""

    kind: Literal["garbage"]
    share: float = Field(default=1.0, gt=0, le=1)


def _kind_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


Delivery = Annotated[
    GoodDelivery | GarbageDelivery, Field(discriminator="kind"), BeforeValidator(_kind_shorthand)
]


class Crawl(_Table):
    """A pay-per-crawl policy in front of the server (``x402sim.trust.CrawlPolicy``): a request must
    carry a verified RFC 9421 signature (Web Bot Auth or TAP) to be charged; the groups in ``allow``
    are served free; an unsigned request is refused (403) unless ``block_unsigned`` is false."""

    allow: list[Name] = Field(default_factory=list, description="agent groups served free")
    block_unsigned: bool = True


def _mandates_shorthand(value: Any) -> Any:
    if value is True:
        return "shared"
    if value is False:
        return "off"
    return value


ServerMandates = Annotated[Literal["off", "shared", "own"], BeforeValidator(_mandates_shorthand)]


@dataclass(frozen=True)
class ServerCopy:
    """One server of the world: a ``[[servers]]`` table, or one copy of a template (``count``)."""

    name: str
    spec: Server
    index: int | None  # the copy's number, None for a table without count
    facilitators: tuple[str, ...]  # in order of preference
    payee: str  # payee label


class Server(_Table):
    name: Name
    count: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="a template: copies name-0 .. name-<count-1>, each its own payee",
    )
    facilitators: ServerFacilitators = Field(
        description="in order of preference, or { name = share }: one each, dealt out over the copies"
    )
    endpoints: list[EndpointSpec] = Field(min_length=1)
    pay_to: Name | None = Field(
        default=None, description="payee label; servers sharing a label share an address"
    )
    order: Literal["authorization", "upfront"] = "authorization"
    handler_time: Distribution = ZERO
    settle_timeout: Seconds | None = None
    replay_guard: ReplayGuardSpec | None = None
    serve_unsettled: bool = False
    identity: bool = Field(
        default=False,
        description="register as an ERC-8004 agent at the start (agentWallet = its payTo) and declare it "
        "in every 402 (8004-reputation)",
    )
    deliver: Delivery = Field(
        default_factory=GoodDelivery, description='"good", or { kind = "garbage", share }'
    )
    mandates: ServerMandates = Field(
        default="off",
        description='verify AP2 payment mandates: true or "shared" (one verifier for every such server, '
        'so budgets hold across them), "own" (this server\'s own verifier), false or "off"',
    )
    crawl: Crawl | None = Field(default=None, description="a pay-per-crawl policy (RFC 9421 signatures)")

    @property
    def payee(self) -> str:
        """The payee label of a server without ``count`` (each copy of a template has its own)."""
        return self.pay_to or self.name

    def copies(self) -> list[ServerCopy]:
        """The servers this table stands for: itself, or ``count`` copies ``name-0``, ``name-1``, ...
        each paid to its own label (its name) unless ``pay_to`` names one for all of them."""
        names = [self.name] if self.count is None else [f"{self.name}-{i}" for i in range(self.count)]
        if isinstance(self.facilitators, dict):
            preferences: list[tuple[str, ...]] = [
                (name,) for name in split_by_shares(self.facilitators, len(names))
            ]
        else:
            preferences = [tuple(self.facilitators)] * len(names)
        return [
            ServerCopy(name, self, None if self.count is None else i, preferences[i], self.pay_to or name)
            for i, name in enumerate(names)
        ]


def split_by_shares(shares: dict[str, float], n: int) -> list[str]:
    """Deal ``n`` copies out by ``shares`` (smooth weighted round robin): copy i goes to the name
    furthest behind its share of the first i + 1 copies (ties to the first listed). The copies dealt
    so far always match the shares to within two copies (about one in practice), so a template's
    copies ranked by popularity are shared out evenly too."""
    total = sum(shares.values())
    credit = dict.fromkeys(shares, 0.0)
    out = []
    for _ in range(n):
        for name, share in shares.items():
            credit[name] += share
        chosen = max(credit, key=credit.__getitem__)
        credit[chosen] -= total
        out.append(chosen)
    return out


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


MAX_GROWTH = 700.0  # bound on |k| x window: the rate may grow (or fall) by a factor of e^700 at most


class Growth(_Table):
    """Poisson arrivals whose rate per agent grows exponentially over the group's window
    ``[start, stop)``: r(t) = r0 x exp(k (t - start)). Give r0 as ``rate``, or as ``requests``, the
    expected requests per agent over the window; and k as a ``doubling`` time, or as
    ``share_in_last``, the share of the window's requests that fall in its ``last`` seconds."""

    kind: Literal["growth"]
    rate: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="per agent at the start")
    requests: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="per agent, in all")
    doubling: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="seconds")
    last: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="seconds")
    share_in_last: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_of_each(self) -> Growth:
        if (self.rate is None) == (self.requests is None):
            raise ValueError("give either rate (per agent at the start) or requests (per agent, in all)")
        by_share = self.last is not None or self.share_in_last is not None
        if (self.doubling is None) == (not by_share):
            raise ValueError("give either doubling, or last and share_in_last")
        if by_share and (self.last is None or self.share_in_last is None):
            raise ValueError("last and share_in_last go together")
        return self

    def profile(self, window: float) -> tuple[float, float]:
        """(r0, k) over a window of ``window`` seconds; ``ValueError`` when the growth cannot fit it."""
        if self.doubling is not None:
            k = math.log(2) / self.doubling
            if k * window > MAX_GROWTH:
                raise ValueError(f"doubling every {self.doubling:g} s for {window:g} s: more than e^700")
        elif self.last is not None and self.share_in_last is not None:
            if self.last >= window:
                raise ValueError(f"last ({self.last:g}) must be shorter than the window ({window:g} s)")
            k = _growth_for_share(self.share_in_last, self.last, window)
        else:  # refused by _one_of_each
            raise ValueError("give either doubling, or last and share_in_last")
        if self.rate is not None:
            return self.rate, k
        if self.requests is not None:
            return self.requests / _integral(k, window), k
        raise ValueError("give either rate (per agent at the start) or requests (per agent, in all)")

    def expected(self, window: float) -> float:
        """Requests per agent expected over a window of ``window`` seconds."""
        r0, k = self.profile(window)
        return r0 * _integral(k, window)


def _integral(k: float, t: float) -> float:
    """The integral of exp(k s) for s from 0 to t."""
    return t if k == 0 else math.expm1(k * t) / k


def _share_in_last(k: float, last: float, window: float) -> float:
    if k == 0:
        return last / window
    if k > 0:
        return math.expm1(-k * last) / math.expm1(-k * window)
    return math.exp(k * (window - last)) * math.expm1(k * last) / math.expm1(k * window)


def _growth_for_share(share: float, last: float, window: float) -> float:
    """The k that puts ``share`` of the requests in the ``last`` seconds (the share grows with k)."""
    lo, hi = -MAX_GROWTH / window, MAX_GROWTH / window
    if not _share_in_last(lo, last, window) <= share <= _share_in_last(hi, last, window):
        raise ValueError(
            f"share_in_last {share:g} in the last {last:g} s of {window:g} s: the rate would change by more"
            " than e^700"
        )
    for _ in range(200):
        mid = (lo + hi) / 2
        if _share_in_last(mid, last, window) < share:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


Arrivals = Annotated[Poisson | Interval | Burst | Piecewise | Growth, Field(discriminator="kind")]


class UniformChoice(_Table):
    kind: Literal["uniform"] = "uniform"


class Zipf(_Table):
    kind: Literal["zipf"]
    exponent: float = Field(default=1.0, gt=0)


class Weights(_Table):
    kind: Literal["weights"]
    weights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)


class Reputation(_Table):
    """Choose among the targets by the on-chain reputation of their servers: the ERC-8004
    ``getSummary`` mean of the feedback tagged ``x402-resource-delivered`` (0-100 here), read through
    an ``AgentDirectory``. With probability ``explore`` a target at random; otherwise one drawn with
    weight max(reputation, 0) ** ``exponent`` (``prior`` stands for a server without feedback or
    without identity). Reputations are read from the chain again at most every ``refresh`` seconds."""

    kind: Literal["reputation"]
    explore: float = Field(default=0.1, ge=0, le=1)
    prior: float = Field(default=50, ge=0, allow_inf_nan=False)
    exponent: float = Field(default=2, ge=0, le=20)
    refresh: float = Field(default=10, gt=0, allow_inf_nan=False)


def choice_weights(choice: UniformChoice | Zipf | Weights | Reputation, n: int) -> list[float]:
    """The relative weights of ``n`` targets under a choice model (Zipf: 1 / rank^exponent; by
    reputation, before any is read: all alike)."""
    if choice.kind == "uniform" or choice.kind == "reputation":
        return [1.0] * n
    if choice.kind == "zipf":
        return [1 / rank**choice.exponent for rank in range(1, n + 1)]
    return list(choice.weights)


def _choice_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


Choice = Annotated[
    UniformChoice | Zipf | Weights | Reputation,
    Field(discriminator="kind"),
    BeforeValidator(_choice_shorthand),
]


class Retry(_Table):
    """Retries of a request whose answer was a 5xx or never came (each retry pays anew)."""

    max: int = Field(default=0, ge=0, le=10)
    backoff: Distribution = ZERO


class SpendPolicySpec(_Table):
    """The reference client's own spend policy, written inline: ``policy = { budget = "5", ... }``
    (a governance policy is named instead: ``policy = "name"``)."""

    budget: Usdc | None = None
    max_price: Usdc | None = None
    allowed_pay_to: list[Name] | None = None


def _policy_form(value: Any) -> str:
    return "name" if isinstance(value, str) else "table"


GroupPolicy = Annotated[
    Annotated[Name, Tag("name")] | Annotated[SpendPolicySpec, Tag("table")],
    Discriminator(_policy_form),
]


class Approver(_Table):
    """The simulated human who answers a group's payments that need approval (an ``approval``
    rule): after ``delay``, grants an honest payment with probability ``grant`` and an attack-bound
    one with probability ``attack_grant``."""

    grant: float = Field(default=0.95, ge=0, le=1)
    attack_grant: float = Field(default=0.1, ge=0, le=1)
    delay: Distribution = Field(default=60.0, validate_default=True)


class Honest(_Table):
    kind: Literal["honest"] = "honest"


class Replay(_Table):
    """Pays honestly, then sends each settled payment again ``times`` times, ``delay`` apart."""

    kind: Literal["replay"]
    times: int = Field(default=1, ge=1, le=100)
    delay: Distribution = Field(default=1.0, validate_default=True)


class Race(_Table):
    """Signs one payment and sends it at once ``width`` times, over the group's targets in turn."""

    kind: Literal["race"]
    width: int = Field(default=2, ge=2, le=100)


class Underpay(_Table):
    """Signs for ``fraction`` of the price, leaving the offer it claims to accept unchanged."""

    kind: Literal["underpay"]
    fraction: float = Field(default=0.5, ge=0, lt=1)


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
    after: Distribution = Field(default=0.05, validate_default=True)


class PromptInjected(_Table):
    """Honest until ``at``; from then on a ``share`` of its requests go to ``target`` (an attacker's
    endpoint, or one whose payTo the injected prompt names), each attack-bound."""

    kind: Literal["prompt-injected"]
    at: Seconds
    target: str = Field(description='"server/path" (or "server": one of its paths at random)')
    share: float = Field(default=1.0, gt=0, le=1, description="of its requests after at")


class Runaway(_Table):
    """Honest until ``at``; from then on also a loop that requests ``target`` again ``interval``
    seconds after each answer, every request attack-bound, until the group stops."""

    kind: Literal["runaway"]
    at: Seconds
    target: str | None = Field(default=None, description="default: the group's first target")
    interval: float = Field(default=0.5, gt=0, allow_inf_nan=False)


class SlowDrain(_Table):
    """Honest until ``at``; from then on, on top of its traffic, one attack-bound request to
    ``target`` every ``every`` seconds (priced just under the caps, to stay unnoticed)."""

    kind: Literal["slow-drain"]
    at: Seconds
    target: str
    every: float = Field(default=60, gt=0, allow_inf_nan=False)


class WithdrawRace(_Table):
    """Pays honestly through its channels, then at ``at`` asks the chain to withdraw all of each
    channel's escrow (``initiateWithdraw``, its own transaction) and finalizes once the delay has
    passed: whatever the receiver has not claimed by then is lost to it."""

    kind: Literal["withdraw-race"]
    at: Seconds


class ChannelReuse(_Table):
    """Pays its first target honestly; every later request to another server sends a voucher of its
    channel with the first one (the receiver it names is not the server's)."""

    kind: Literal["channel-reuse"]


class NeverTopUp(_Table):
    """Deposits once, then signs vouchers past its channel's balance instead of topping up."""

    kind: Literal["never-top-up"]


COMPROMISED = ("prompt-injected", "runaway", "slow-drain")  # honest agents until their ``at``
CHANNEL_BEHAVIOURS = ("withdraw-race", "channel-reuse", "never-top-up")  # channel payers
FORGED = ("underpay", "expired", "not-yet-valid", "tamper")  # sign without the reference client


def _behaviour_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


Behaviour = Annotated[
    Honest
    | Replay
    | Race
    | Underpay
    | Expired
    | NotYetValid
    | Tamper
    | Unfunded
    | Drain
    | PromptInjected
    | Runaway
    | SlowDrain
    | WithdrawRace
    | ChannelReuse
    | NeverTopUp,
    Field(discriminator="kind"),
    BeforeValidator(_behaviour_shorthand),
]
Compromised = PromptInjected | Runaway | SlowDrain


def is_compromised(behaviour: Behaviour) -> TypeGuard[Compromised]:
    """Whether ``behaviour`` is a compromised agent's (its kind is in ``COMPROMISED``)."""
    return behaviour.kind in COMPROMISED


class AmountRange(_Table):
    min: Usdc = 0
    max: Usdc

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.max < self.min:
            raise ValueError(f"max ({format_usdc(self.max)}) is below min ({format_usdc(self.min)})")
        return self


Frequency = Literal["ON_DEMAND", "DAILY", "WEEKLY", "BIWEEKLY", "MONTHLY", "QUARTERLY", "ANNUALLY"]
FREQUENCIES: tuple[Frequency, ...] = get_args(Frequency)


class Recurrence(_Table):
    """AP2's ``payment.agent_recurrence``: at most one payment per ``frequency`` period (ON_DEMAND: no
    period), and at most ``max_occurrences`` in all."""

    frequency: Frequency = "ON_DEMAND"
    max_occurrences: int | None = Field(default=None, ge=1)


class Mandate(_Table):
    """An AP2 open Payment Mandate that the group's user signs for each of its agents at the start:
    its constraints are ``amount_range``, ``budget`` (USDC settled under the mandate, in all),
    ``recurrence`` and ``allowed_payees`` (server names: their payTo addresses). Each payment the
    agent makes carries a closed mandate, and its EIP-3009 nonce is keccak256 of the chain."""

    amount_range: AmountRange
    budget: Usdc
    recurrence: Recurrence = Field(default_factory=Recurrence)
    allowed_payees: list[str] | None = Field(default=None, description="server names (default: any payee)")
    valid_for: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="seconds from the start (default: the whole run)"
    )


class Signature(_Table):
    """The RFC 9421 signature the group's agents put on every request: Web Bot Auth (with a
    Signature-Agent naming the group's key directory) or Visa TAP (``agent-browser-auth``). A
    ``flaw`` makes it fail verification: a key the server's directory does not hold, a signature
    over another authority, an expired one, or any of the three (``mixed``, drawn per request)."""

    protocol: Literal["web-bot-auth", "tap"]
    flaw: Literal["none", "unknown-key", "bad-signature", "expired", "mixed"] = "none"


def _signature_shorthand(value: Any) -> Any:
    return {"protocol": value} if isinstance(value, str) else value


SignatureSpec = Annotated[Signature, BeforeValidator(_signature_shorthand)]


class TopUp(_Table):
    """A channel is topped up when fewer than ``below_requests`` requests' worth would remain after
    the next voucher."""

    below_requests: int = Field(ge=1)


class RefundRule(_Table):
    """When an agent asks its channels' servers for the unclaimed escrow back: never, once its group
    stops sending (``done``), or once a channel has been idle ``after`` seconds (``idle``)."""

    kind: Literal["never", "done", "idle"]
    after: Seconds | None = None

    @model_validator(mode="after")
    def _idle_after(self) -> RefundRule:
        if (self.kind == "idle") != (self.after is not None):
            raise ValueError('after is the idle refund\'s, and it needs one: { kind = "idle", after = S }')
        return self


def _refund_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


ChoiceRule = Literal["cheapest", "reputation", "value", "first"]  # ``actors.discovery.CHOICE_RULES``


class Task(_Table):
    """What an agent of the group does at each arrival (``sim.toolchain``): the ``steps`` in order,
    each needing a tool of a kind, found through the Bazaar and ranked by ``choose`` (the rules of
    ``actors.discovery.choose``); a step whose call fails is tried with the next candidate, at most
    ``attempts`` candidates in all; a step with none left abandons the task."""

    steps: list[Name] = Field(min_length=1, max_length=64, description="tool kinds, in order")
    choose: ChoiceRule = Field(
        default="cheapest", description="cheapest, reputation, value or first (as the Bazaar lists them)"
    )
    attempts: int = Field(default=3, ge=1, le=20, description="candidates tried per step, at most")


class AgentGroup(_Table):
    name: Name
    count: int = Field(default=1, ge=1, le=1_000_000)
    funding: Usdc = Field(default="10", validate_default=True, description="USDC minted to each agent")
    arrivals: Arrivals = Field(default_factory=lambda: Poisson(kind="poisson", rate=0.1))
    start: Seconds = 0
    stop: Seconds | None = None
    max_requests: int | None = Field(default=None, ge=1, description="per agent")
    targets: list[str] | None = Field(
        default=None, description='"server/path" (or "server" for all its paths)'
    )
    choice: Choice = Field(default_factory=UniformChoice)
    retry: Retry = Field(default_factory=Retry)
    policy: GroupPolicy | None = Field(
        default=None,
        description="a [[policies]] name (a governor judges each payment), or an inline spend policy",
    )
    approver: Approver = Field(default_factory=Approver)
    behaviour: Behaviour = Field(default_factory=Honest)
    feedback: bool = Field(
        default=False,
        description="rate each paid delivery of a registered server (100 good, 0 garbage) and post it "
        "with giveFeedback, the settlement as proof of payment",
    )
    mandate: Mandate | None = Field(default=None, description="an AP2 payment mandate every payment carries")
    signature: SignatureSpec | None = Field(
        default=None,
        description='sign every request (RFC 9421): "web-bot-auth", "tap", or { protocol, flaw }',
    )
    approval: Literal["approved", "self", "sponsored-eip2612", "sponsored-erc20"] = Field(
        default="approved",
        description="Permit2 allowance at the start: approved (set in the set-up blocks, its gas not "
        "counted), self (the agent pays its own approve transaction before traffic starts), "
        "sponsored-eip2612 / sponsored-erc20 (no ether, no allowance: a facilitator's extension pays)",
    )

    deposit: Usdc | None = Field(
        default=None,
        description="batch-settlement: USDC per deposit (default: the server's minDeposit, 10 x price)",
    )
    top_up: TopUp | None = Field(
        default=None,
        description="batch-settlement: { below_requests = N }: top up when fewer than N requests' worth "
        "remain (default: only when the next voucher would not be backed)",
    )
    refund: Annotated[RefundRule, BeforeValidator(_refund_shorthand)] = Field(
        default_factory=lambda: RefundRule(kind="never"),
        description='batch-settlement: "never", "done" (when the group stops) or { kind = "idle", after }',
    )
    max_withdraw_delay: int | None = Field(
        default=None, ge=1, description="batch-settlement: refuse offers whose withdrawDelay is longer"
    )
    task: Task | None = Field(
        default=None,
        description="each arrival is a task of steps, each a tool kind found through the Bazaar "
        "({ steps = [...], choose, attempts })",
    )

    @property
    def policy_name(self) -> str | None:
        """The governance policy the group names (None: none, or an inline spend policy)."""
        return self.policy if isinstance(self.policy, str) else None

    @property
    def spend_policy(self) -> SpendPolicySpec | None:
        return self.policy if isinstance(self.policy, SpendPolicySpec) else None

    @property
    def compromised(self) -> bool:
        return is_compromised(self.behaviour)


# -- [network], [[faults]] -------------------------------------------------------------------------


class Network(_Table):
    """One-way latencies, and how the facilitator's round trips to the chain are charged."""

    client_server: Distribution = Field(default=0.05, validate_default=True)
    server_facilitator: Distribution = Field(default=0.02, validate_default=True)
    facilitator_chain: Distribution = Field(default=0.01, validate_default=True)
    facilitator_chain_reads: Literal["fixed", "counted"] = Field(
        default="fixed",
        description="fixed: two facilitator_chain round trips per verify and settle, one more to submit "
        "a settlement; counted: one per call the facilitator role actually makes to the chain",
    )


class FacilitatorDown(Window):
    kind: Literal["facilitator-down"]
    facilitator: Name


class FacilitatorSlow(Window):
    kind: Literal["facilitator-slow"]
    facilitator: Name
    factor: float = Field(default=10, ge=1)


class RpcErrors(Window):
    """Transaction submissions fail with this probability (for one facilitator, or all)."""

    kind: Literal["rpc-errors"]
    facilitator: Name | None = None
    probability: float = Field(default=1, ge=0, le=1)


class SettleAnswerLost(Window):
    """The transfer lands on chain, but the settle answer never reaches the server."""

    kind: Literal["settle-answer-lost"]
    facilitator: Name | None = None
    probability: float = Field(default=1, ge=0, le=1)


class ChainStall(Window):
    kind: Literal["chain-stall"]


Fault = Annotated[
    FacilitatorDown | FacilitatorSlow | RpcErrors | SettleAnswerLost | ChainStall, Field(discriminator="kind")
]


class TransportLatency(_Table):
    """The time a transport adds on top of ``[network] client_server``: ``session_setup`` once per
    agent and server (MCP's initialize handshake and tools/list, A2A's agent card fetch), and
    ``per_call`` on each call (the JSON-RPC envelope of a tool call or a task message)."""

    session_setup: Distribution = ZERO
    per_call: Distribution = ZERO


class Transports(_Table):
    """Each transport's latency model. The defaults are assumptions, not measurements: HTTP adds
    nothing to the network's latency; MCP a 0.15 s session set-up (initialize, initialized and
    tools/list: about three round trips) and 2 ms a call; A2A a 0.1 s set-up (fetching the agent
    card) and 10 ms a call (a task message and its status)."""

    http: TransportLatency = Field(default_factory=TransportLatency)
    mcp: TransportLatency = Field(
        default_factory=lambda: TransportLatency.model_validate({"session_setup": 0.15, "per_call": 0.002})
    )
    a2a: TransportLatency = Field(
        default_factory=lambda: TransportLatency.model_validate({"session_setup": 0.1, "per_call": 0.01})
    )

    def of(self, name: str) -> TransportLatency:
        latency: TransportLatency = getattr(self, name)
        return latency


class BazaarSpec(_Table):
    """The discovery service agents with a ``task`` query: each query (one per tool kind a task
    needs) takes ``latency`` (a round trip, seconds) and lists every endpoint of that ``kind``."""

    latency: Distribution = Field(default=0.1, validate_default=True)


class X402scanTargets(_Table):
    """Headline figures the run should reproduce (e.g. a day of x402scan); the summary reports the
    relative deviation of each one given."""

    transactions: int | None = Field(default=None, gt=0)
    volume_usdc: Usdc | None = Field(default=None, gt=0)
    buyers: int | None = Field(default=None, gt=0)
    sellers: int | None = Field(default=None, gt=0)
    tolerance: float = Field(
        default=0.02, ge=0, description="largest relative deviation that counts as a match"
    )


class GovernanceSpec(_Table):
    """How a scenario with governance policies is run."""

    counterfactual: bool = Field(
        default=True, description="also run the same seed without governance, to measure the loss prevented"
    )


class Scenario(_Table):
    """A whole simulated world."""

    model_config = ConfigDict(extra="forbid", title="x402sim scenario")

    simulation: Simulation
    chain: ChainSpec = Field(default_factory=ChainSpec)
    network: Network = Field(default_factory=Network)
    facilitators: list[FacilitatorSpec] = Field(min_length=1)
    servers: list[Server] = Field(min_length=1)
    agents: list[AgentGroup] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)
    x402scan: X402scanTargets | None = None
    policies: list[GovernancePolicy] = Field(default_factory=list)
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    transports: Transports = Field(default_factory=Transports)
    bazaar: BazaarSpec = Field(default_factory=BazaarSpec)

    def tasks(self) -> bool:
        """Whether a group completes tasks from tools found in the Bazaar (the summary then has its
        ``toolchain`` section)."""
        return any(g.task is not None for g in self.agents)

    def tool_endpoints(self) -> list[tuple[str, EndpointSpec]]:
        """Every endpoint listed in the Bazaar (one with a ``kind``), as ("server/path", its spec),
        templates expanded, in file order."""
        return [
            (f"{c.name}{e.path}", e)
            for c in self.server_copies()
            for e in c.spec.endpoints
            if e.kind is not None
        ]

    def policy(self, name: str) -> GovernancePolicy:
        return next(p for p in self.policies if p.name == name)

    def governed(self) -> dict[str, list[str]]:
        """The policies in use, each with the groups that name it (in file order)."""
        out: dict[str, list[str]] = {}
        for group in self.agents:
            if group.policy_name is not None:
                out.setdefault(group.policy_name, []).append(group.name)
        return out

    def attacks(self) -> bool:
        """Whether anything in the scenario is attack-bound: a compromised group or a price change
        marked ``attack``."""
        return any(g.compromised for g in self.agents) or any(
            c.attack for v in self.servers for e in v.endpoints for c in e.changes
        )

    def shared_counter(self) -> str | None:
        """The key path of the first ``shared = true`` rule of a policy in use (None: none)."""
        used = self.governed()
        for i, policy in enumerate(self.policies):
            for j, rule in enumerate(policy.rules):
                if policy.name in used and getattr(rule, "shared", False):
                    return f"policies[{i}].rules[{j}].shared"
        return None

    def trust_keys(self) -> list[str]:
        """The key paths of the trust features the scenario uses (ERC-8004 identities, reputation
        choice and feedback, AP2 mandates, RFC 9421 signatures and crawl policies), in file order."""
        keys = []
        for i, v in enumerate(self.servers):
            if v.identity:
                keys.append(f"servers[{i}].identity")
            if v.mandates != "off":
                keys.append(f"servers[{i}].mandates")
            if v.crawl is not None:
                keys.append(f"servers[{i}].crawl")
            if v.deliver.kind != "good":
                keys.append(f"servers[{i}].deliver")
        for i, g in enumerate(self.agents):
            for key in ("feedback", "mandate", "signature"):
                if getattr(g, key):
                    keys.append(f"agents[{i}].{key}")
            if g.choice.kind == "reputation":
                keys.append(f"agents[{i}].choice")
        return keys

    def unshardable(self) -> str | None:
        """The key path of the first feature a sharded run cannot keep (None: none): an ERC-8004
        identity, whose reputation would be split over the shards' chains."""
        return next((f"servers[{i}].identity" for i, v in enumerate(self.servers) if v.identity), None)

    def server_copies(self) -> list[ServerCopy]:
        """Every server of the world, templates expanded, in file order."""
        return [copy for server in self.servers for copy in server.copies()]

    def endpoint_keys(self) -> list[str]:
        return [f"{c.name}{e.path}" for c in self.server_copies() for e in c.spec.endpoints]

    def mechanisms_used(self) -> list[Mechanism]:
        """The mechanisms the scenario's endpoints are paid by, each once, in file order."""
        out: list[Mechanism] = []
        for server in self.servers:
            for e in server.endpoints:
                if e.mechanism not in out:
                    out.append(e.mechanism)
        return out

    def uses_permit2(self) -> bool:
        """Whether an endpoint is paid through Permit2 (``exact`` with Permit2, or ``upto``): then
        the summary and report have their per-mechanism sections."""
        return any(e.permit2 for server in self.servers for e in server.endpoints)


# -- loading ---------------------------------------------------------------------------------------


def load_scenario(
    source: str | Path | dict,
    overrides: Mapping[str, Any] = MappingProxyType({}),
    *,
    where: str | None = None,
) -> Scenario:
    """Validate a scenario from a TOML file path or a dict, after applying ``overrides`` (dotted
    key path -> value, e.g. ``{"facilitators.cdp.dedupe": "off"}``). Raises ``ScenarioError``
    (file, key path, problem) when it cannot run."""
    if not isinstance(overrides, Mapping):
        raise TypeError("overrides map key paths to values (cli.parse_overrides reads --set options)")
    if isinstance(source, dict):
        label = where or "scenario"
        data = json.loads(json.dumps(source))  # a deep copy that the overrides may change
    else:
        label = where or str(source)
        data = read_toml(source, label, ScenarioError)
    for key, value in overrides.items():
        _apply_override(data, key, deepcopy(value))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, data, label, list(_words()), ScenarioError) from None
    _check_references(scenario, label)
    return scenario


@functools.cache
def _words() -> tuple[str, ...]:
    """The schema's key names, for "did you mean" (the schema is static: built once)."""
    return tuple(vocabulary(scenario_schema()))


def scenario_schema() -> dict:
    """The JSON Schema of scenario files (for editors)."""
    return Scenario.model_json_schema(mode="validation")


def _apply_override(data: dict, key: str, value: Any) -> None:
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
    copies = s.server_copies()
    # a template's name and every copy's name each name servers in targets: none may be taken twice
    taken = {v.name: i for i, v in enumerate(s.servers) if v.count is None}
    for i, server in enumerate(s.servers):
        for copy in server.copies() if server.count is not None else []:
            if copy.name in taken:
                fail(f"servers[{i}].count", f"copy {copy.name!r} has the name of servers[{taken[copy.name]}]")
            taken[copy.name] = i
    for i, server in enumerate(s.servers):
        if server.count is not None and server.name in taken and taken[server.name] != i:
            fail(f"servers[{i}].name", f"{server.name!r} is also a copy of servers[{taken[server.name]}]")
        listed = server.facilitators
        for j, name in enumerate(listed):
            if name not in facilitators:
                at = f"[{j}]" if isinstance(listed, list) else f".{name}"
                fail(f"servers[{i}].facilitators{at}", unknown_name("facilitator", name, facilitators))
        routes = [f"{e.method} {e.path}" for e in server.endpoints]
        for j, route in enumerate(routes):
            if route in routes[:j]:
                fail(f"servers[{i}].endpoints[{j}].path", f"{route!r} is listed twice")
    payees = {copy.payee for copy in copies} | {
        c.pay_to for server in s.servers for e in server.endpoints for c in e.changes if c.pay_to
    }
    templates = [v for v in s.servers if v.count is not None]
    endpoints = set(s.endpoint_keys()) | {f"{v.name}{e.path}" for v in templates for e in v.endpoints}
    servers = {c.name for c in copies} | {v.name for v in templates}
    for i, group in enumerate(s.agents):
        for j, target in enumerate(group.targets or []):
            if target not in endpoints and target not in servers:
                fail(f"agents[{i}].targets[{j}]", unknown_name("endpoint", target, endpoints | servers))
        if group.targets is not None and not group.targets:
            fail(f"agents[{i}].targets", "name at least one endpoint")
        n_targets = len(resolve_targets(s, group))
        if group.choice.kind == "weights" and len(group.choice.weights) != n_targets:
            count = len(group.choice.weights)
            fail(f"agents[{i}].choice.weights", f"{count} weights for {n_targets} targets")
        if group.stop is not None and group.stop <= group.start:
            fail(f"agents[{i}].stop", "must be after start")
        start, end = group_window(s, group)
        if end <= start:
            fail(f"agents[{i}].start", f"must be before the end of the simulation ({end:g} s)")
        if group.arrivals.kind == "growth":
            try:
                group.arrivals.profile(end - start)
            except ValueError as exc:
                fail(f"agents[{i}].arrivals", str(exc))
        spend = group.spend_policy
        if spend is not None and spend.allowed_pay_to:
            for j, payee in enumerate(spend.allowed_pay_to):
                if payee not in payees:
                    fail(f"agents[{i}].policy.allowed_pay_to[{j}]", unknown_name("payee", payee, payees))
        behaviour = group.behaviour
        if is_compromised(behaviour):
            if behaviour.target is not None and behaviour.target not in endpoints | servers:
                fail(
                    f"agents[{i}].behaviour.target",
                    unknown_name("endpoint", behaviour.target, endpoints | servers),
                )
            if behaviour.at >= end:
                fail(f"agents[{i}].behaviour.at", f"must be before the group stops ({end:g} s): no attack")
    _check_governance(s, label, payees)
    _check_tasks(s, label)
    _check_trust(s, label)
    _check_mechanisms(s, label)
    for i, fault in enumerate(s.faults):
        facilitator = getattr(fault, "facilitator", None)
        if facilitator is not None and facilitator not in facilitators:
            fail(f"faults[{i}].facilitator", unknown_name("facilitator", facilitator, facilitators))
    for i, f in enumerate(s.facilitators):
        if f.settle_on == "preconfirmation" and s.chain.preconfirmation is None:
            fail(f"facilitators[{i}].settle_on", "preconfirmation needs [chain] preconfirmation")


ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def _check_governance(s: Scenario, label: str, payees: set[str]) -> None:
    """The ``[[policies]]`` and the groups naming them: names known, every scope a group (or an
    agent of a group) that uses the policy, every listed payee a label or an address."""

    def fail(path: str, problem: str) -> None:
        raise ScenarioError(f"{label}: {path}", problem)

    try:
        check_policies(s.policies, {g.name for g in s.agents}, label)
    except PolicyError as exc:
        raise ScenarioError(exc.where, exc.problem) from None
    names = {p.name for p in s.policies}
    for i, group in enumerate(s.agents):
        name = group.policy_name
        if name is None:
            continue
        if name not in names:
            fail(f"agents[{i}].policy", unknown_name("policy", name, names))
        if group.behaviour.kind in FORGED:
            fail(
                f"agents[{i}].policy",
                f"behaviour {group.behaviour.kind!r} signs without the reference client: no governor would"
                " ever be asked (drop the policy, or use an honest or compromised behaviour)",
            )
    used = s.governed()
    counts = {g.name: g.count for g in s.agents}
    for i, policy in enumerate(s.policies):
        for key, items in (("rules", policy.rules), ("triggers", policy.triggers)):
            for j, item in enumerate(items):
                at = f"policies[{i}].{key}[{j}]"
                scope = item.applies_to
                if policy.name in used and scope.startswith("project:"):
                    project = scope.removeprefix("project:")
                    if project not in used[policy.name]:
                        fail(
                            f"{at}.applies_to",
                            f"group {project!r} does not use policy {policy.name!r}: the {item.kind} would "
                            f"never apply (groups using it: {', '.join(used[policy.name])})",
                        )
                if policy.name in used and scope.startswith("agent:"):
                    group_name, _, index = scope.removeprefix("agent:").rpartition("-")
                    if (
                        group_name not in used[policy.name]
                        or not index.isdigit()
                        or int(index) >= counts[group_name]
                    ):
                        fail(
                            f"{at}.applies_to",
                            f"no agent {scope[6:]!r} uses policy {policy.name!r} (agents are named "
                            "GROUP-INDEX, INDEX from 0)",
                        )
                lists = []
                if isinstance(item, Allow | Block) and item.payees is not None:
                    lists.append(("payees", item.payees))
                if isinstance(item, NewPayee):
                    lists.append(("known", item.known))
                for field, values in lists:
                    for k, payee in enumerate(values):
                        if payee not in payees and not ADDRESS.match(payee):
                            fail(f"{at}.{field}[{k}]", unknown_name("payee", payee, payees) + " or address")


def _check_tasks(s: Scenario, label: str) -> None:
    """Groups with a ``task``: honest agents paying through the reference client, whose steps each
    name a kind of tool that one of the group's targets is listed as; no other way to pick targets
    or to retry (a task tries the next candidate instead)."""

    def fail(path: str, problem: str) -> None:
        raise ScenarioError(f"{label}: {path}", problem)

    copies = {c.name: c for c in s.server_copies()}
    for i, group in enumerate(s.agents):
        task = group.task
        if task is None:
            continue
        if group.behaviour.kind != "honest":
            fail(
                f"agents[{i}].behaviour",
                f"a group with a task is made of honest agents (behaviour {group.behaviour.kind!r} is not)",
            )
        if group.choice.kind != "uniform":
            fail(f"agents[{i}].choice", "a task chooses its tools by task.choose: drop choice")
        if group.retry.max:
            fail(
                f"agents[{i}].retry", "a task tries the next candidate on failure (task.attempts): drop retry"
            )
        kinds = {_endpoint_of(copies, t).kind for t in resolve_targets(s, group)}
        for j, kind in enumerate(task.steps):
            if kind not in kinds:
                listed = {k for k in kinds if k is not None}
                fail(
                    f"agents[{i}].task.steps[{j}]",
                    unknown_name("tool kind", kind, listed)
                    + " among the group's targets (an endpoint's kind)",
                )


def _check_trust(s: Scenario, label: str) -> None:
    """The trust features: on the EVM backend only; registered servers each paid to their own
    address; allow lists naming groups that sign properly; reputation choice and feedback aimed at
    registered servers; mandate payees naming servers; all of it through the reference client."""

    def fail(path: str, problem: str) -> None:
        raise ScenarioError(f"{label}: {path}", problem)

    if s.chain.backend == "ledger" and (refused := ledger_refusal(s.mechanisms_used())):
        fail("chain.backend", refused)
    used = s.trust_keys()
    if used and s.chain.backend == "ledger":
        fail(
            "chain.backend",
            f"the ledger backend does not model the ERC-8004 registries, AP2 mandates or agent signatures "
            f'({used[0]} needs them): use backend = "evm"',
        )
    copies = s.server_copies()
    labels = Counter(c.payee for c in copies)
    for i, server in enumerate(s.servers):
        if server.identity and any(labels[c.payee] > 1 for c in server.copies()):
            shared = next(c.payee for c in server.copies() if labels[c.payee] > 1)
            fail(
                f"servers[{i}].pay_to" if server.pay_to else f"servers[{i}].identity",
                f"payee {shared!r} is shared by several servers: a registered agent's agentWallet is its "
                "own payTo (give each registered server its own payee)",
            )
    groups = {g.name: g for g in s.agents}
    for i, server in enumerate(s.servers):
        for j, name in enumerate(server.crawl.allow if server.crawl else []):
            if name not in groups:
                fail(f"servers[{i}].crawl.allow[{j}]", unknown_name("agent group", name, set(groups)))
            sig = groups[name].signature
            if sig is None or sig.flaw != "none":
                fail(
                    f"servers[{i}].crawl.allow[{j}]",
                    f"group {name!r} does not sign its requests properly: the policy could never "
                    "tell it apart",
                )
    registered = {c.name for c in copies if c.spec.identity}
    servers = {c.name for c in copies} | {v.name for v in s.servers if v.count is not None}
    for i, group in enumerate(s.agents):
        trust = [k for k in ("feedback", "mandate", "signature") if getattr(group, k)]
        if group.choice.kind == "reputation":
            trust.append("choice")
        if trust and (group.behaviour.kind in FORGED or group.behaviour.kind == "race"):
            fail(
                f"agents[{i}].{trust[0]}",
                f"behaviour {group.behaviour.kind!r} pays without the reference client: its requests would "
                "carry no signature, mandate or feedback",
            )
        targeted = {server for server, _ in resolve_targets(s, group)}
        for key in ("feedback", "choice"):
            wanted = group.feedback if key == "feedback" else group.choice.kind == "reputation"
            if wanted and not targeted & registered:
                fail(
                    f"agents[{i}].{key}",
                    "none of the group's targets is a registered server (identity = true): there is no "
                    "reputation to " + ("give" if key == "feedback" else "read"),
                )
        payees = group.mandate.allowed_payees if group.mandate else None
        for j, name in enumerate(payees or []):
            if name not in servers:
                fail(f"agents[{i}].mandate.allowed_payees[{j}]", unknown_name("server", name, servers))


def _check_mechanisms(s: Scenario, label: str) -> None:
    """Permit2 and upto: upto settles after the work (a server of ``order = "authorization"``); the
    forged behaviours sign EIP-3009 authorizations only (no Permit2 endpoint among their targets); a
    group's ``approval`` matters only with a Permit2 target, and a sponsored one needs each such
    target's first facilitator to offer its extension."""

    def fail(path: str, problem: str) -> None:
        raise ScenarioError(f"{label}: {path}", problem)

    for i, server in enumerate(s.servers):
        for j, e in enumerate(server.endpoints):
            if e.scheme == "upto" and server.order == "upfront":
                fail(
                    f"servers[{i}].endpoints[{j}].scheme",
                    "upto charges what the work used, so it settles after it: the server's order must be "
                    '"authorization"',
                )
    copies = {c.name: c for c in s.server_copies()}
    offered = {f.name: set(f.sponsoring) for f in s.facilitators}
    for i, group in enumerate(s.agents):
        permit2 = []
        for server_name, route in resolve_targets(s, group):
            copy = copies[server_name]
            spec = next(e for e in copy.spec.endpoints if f"{e.method} {e.path}" == route)
            if spec.permit2:
                permit2.append((copy, f"{server_name}{spec.path}"))
        if permit2 and group.behaviour.kind in FORGED:
            fail(
                f"agents[{i}].behaviour",
                f"behaviour {group.behaviour.kind!r} forges EIP-3009 authorizations only, and target "
                f"{permit2[0][1]} is paid through Permit2: aim it at EIP-3009 endpoints",
            )
        channel_targets = [
            t for t in resolve_targets(s, group) if _endpoint_of(copies, t).scheme == CHANNEL_SCHEME
        ]
        kind = group.behaviour.kind
        if channel_targets and (kind in FORGED or kind in ("race", "replay", "drain")):
            fail(
                f"agents[{i}].behaviour",
                f"behaviour {kind!r} forges or copies one-off authorizations; a batch-settlement target "
                f"({channel_targets[0][0]} {channel_targets[0][1]}) is paid by channel: use withdraw-race, "
                "channel-reuse or never-top-up",
            )
        if not channel_targets:
            if kind in CHANNEL_BEHAVIOURS:
                fail(
                    f"agents[{i}].behaviour",
                    f"behaviour {kind!r} needs a batch-settlement target, and the group has none",
                )
            for key in GROUP_CHANNEL_KEYS:
                value = getattr(group, key)
                if value is not None and not (key == "refund" and value.kind == "never"):
                    fail(f"agents[{i}].{key}", "none of the group's targets is paid by batch-settlement")
        elif kind == "channel-reuse" and len({server for server, _ in channel_targets}) < 2:
            fail(
                f"agents[{i}].behaviour",
                "channel-reuse sends one server's voucher to another: give the group batch-settlement "
                "targets on two servers at least",
            )
        if group.approval != "approved" and not permit2:
            fail(
                f"agents[{i}].approval",
                "none of the group's targets is paid through Permit2: an approval would never be used",
            )
        extension = APPROVAL_EXTENSIONS.get(group.approval)
        for copy, endpoint in permit2 if extension else []:
            first = copy.facilitators[0]
            if extension not in offered[first]:
                fail(
                    f"agents[{i}].approval",
                    f"{endpoint} settles through facilitator {first!r}, which does not offer {extension} "
                    f"(add it to its sponsoring = [...])",
                )


def _endpoint_of(copies: dict[str, ServerCopy], target: tuple[str, str]) -> EndpointSpec:
    server_name, route = target
    return next(e for e in copies[server_name].spec.endpoints if f"{e.method} {e.path}" == route)


def uses_channels(s: Scenario) -> bool:
    """Whether an endpoint is paid by batch-settlement (the summary then has its channel sections)."""
    return any(e.channels for server in s.servers for e in server.endpoints)


def resolve_target(s: Scenario, target: str) -> list[tuple[str, str]]:
    """The (server name, route key) pairs ``target`` names: ``"server/path"`` one endpoint, a
    server's name all its endpoints; a template's name stands for its copies, in order."""
    return _resolve(s, [target])


def resolve_targets(s: Scenario, group: AgentGroup) -> list[tuple[str, str]]:
    """The (server name, route key) pairs a group's agents may request, in the order of its
    targets (default: every endpoint, in file order); a template's name stands for its copies, in
    order."""
    return _resolve(s, group.targets or [c.name for c in s.server_copies()])


def _resolve(s: Scenario, targets: list[str]) -> list[tuple[str, str]]:
    copies = s.server_copies()
    named: dict[str, list[ServerCopy]] = {}
    for copy in copies:
        named.setdefault(copy.name, []).append(copy)
        if copy.index is not None:
            named.setdefault(copy.spec.name, []).append(copy)
    out = []
    for target in targets:
        server_name, _, path = target.partition("/")
        for copy in named.get(server_name, []):
            for e in copy.spec.endpoints:
                if not path or e.path == "/" + path:
                    out.append((copy.name, f"{e.method} {e.path}"))
    return out


def group_window(s: Scenario, group: AgentGroup) -> tuple[float, float]:
    """The virtual seconds ``[start, end)`` in which a group's agents start requests."""
    end = s.simulation.duration
    return group.start, min(end, group.stop) if group.stop is not None else end


def attack_targets(s: Scenario, group: AgentGroup) -> list[tuple[str, str]]:
    """The endpoints a compromised group's attack requests (empty for other behaviours): its
    behaviour's ``target`` (a server's name: each of its endpoints alike), or for a runaway without
    one, the group's first target."""
    behaviour = group.behaviour
    if not is_compromised(behaviour):
        return []
    if behaviour.target is None:
        return resolve_targets(s, group)[:1]
    return resolve_target(s, behaviour.target)
