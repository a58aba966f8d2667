"""Policy files: the rules a governor enforces, as validated pydantic models of a TOML file.

A policy file holds ``[projects]`` (project name -> agent names) and one or more ``[[policies]]``,
each a named set of ``rules`` and ``triggers``. A scenario holds the same ``[[policies]]`` tables
(its projects are its agent groups). Every rule and trigger has ``applies_to``: ``"everyone"``
(the default), ``"agent:NAME"`` or ``"project:NAME"``. Counting rules (spend, usage and rate
limits) keep one counter per agent unless ``shared = true``, which gives the agents in scope one
counter between them (a project's budget).

Amounts are written as decimal USDC strings and held in atomic units (6 decimals); limits add up
payments in every asset alike, so a policy that allows several assets should hold only
6-decimal stablecoins (restrict them with an ``allow`` rule). An unknown ``kind`` is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from ..tables import Name, Table, TableError, Usdc, first_error, read_toml, unknown_name, vocabulary

Period = Literal["run", "day", "week", "month"]
Scope = Annotated[str, Field(pattern=r"^(everyone|agent:.+|project:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class PolicyError(TableError):
    """A policy file that cannot be used: ``where`` (file and key path) and ``problem``."""


class Scoped(Table):
    """What every rule and trigger has: an optional label and the agents it applies to."""

    name: str | None = Field(None, description="label in decisions and the audit log (default: kind#index)")
    applies_to: Scope = Field("everyone", description='"everyone", "agent:NAME" or "project:NAME"')


class SpendLimit(Scoped):
    """At most ``max`` USDC committed per ``period`` (calendar periods of the governor's clock, UTC;
    weeks start on Monday)."""

    kind: Literal["spend-limit"]
    max: Usdc
    period: Period = "run"
    shared: bool = False


class RequestCap(Scoped):
    """No single payment above ``max``."""

    kind: Literal["request-cap"]
    max: Usdc


class UsageLimit(Scoped):
    """At most ``max_calls`` paid calls per service (``host``), ``resource`` (host and path) or
    ``payee`` in each ``period``."""

    kind: Literal["usage-limit"]
    max_calls: int = Field(ge=0)
    per: Literal["host", "resource", "payee"] = "host"
    period: Period = "run"
    shared: bool = False


class RateLimit(Scoped):
    """At most ``max_payments`` payments in any ``window`` seconds (a sliding window)."""

    kind: Literal["rate-limit"]
    max_payments: int = Field(ge=0)
    window: Positive = 60.0
    shared: bool = False


class _Lists(Scoped):
    payees: list[str] | None = None
    assets: list[str] | None = None
    networks: list[str] | None = None
    hosts: list[str] | None = None

    @model_validator(mode="after")
    def _some_list(self) -> _Lists:
        if all(getattr(self, k) is None for k in ("payees", "assets", "networks", "hosts")):
            raise ValueError("name at least one of payees, assets, networks, hosts")
        return self

    def matches(self, field: str, value: str) -> bool | None:
        """Whether ``value`` is in this rule's list for ``field`` (None: the rule has no such list)."""
        listed = getattr(self, field)
        if listed is None:
            return None
        return value.lower() in {item.lower() for item in listed}


class Allow(_Lists):
    """Only these payees, assets, networks (CAIP-2) and resource hosts; a list not given allows all."""

    kind: Literal["allow"]


class Block(_Lists):
    """Never these payees, assets, networks or resource hosts."""

    kind: Literal["block"]


class Approval(Scoped):
    """A payment above ``above`` needs a human's (or a simulated approver's) approval."""

    kind: Literal["approval"]
    above: Usdc


Rule = Annotated[
    SpendLimit | RequestCap | UsageLimit | RateLimit | Allow | Block | Approval, Field(discriminator="kind")
]


class Velocity(Scoped):
    """Freeze an agent whose payments in the last ``window`` seconds would add up to more than ``max``."""

    kind: Literal["velocity"]
    max: Usdc
    window: Positive = 60.0


class FailureStreak(Scoped):
    """Freeze an agent after ``count`` failed or denied payments in a row."""

    kind: Literal["failure-streak"]
    count: int = Field(ge=1)


class NewPayee(Scoped):
    """Freeze an agent that would pay more than ``above`` to a payee it has never paid (``known``
    payees count as paid)."""

    kind: Literal["new-payee"]
    above: Usdc
    known: list[str] = Field(default_factory=list)


class EndpointBurst(Scoped):
    """Freeze an agent that tries to pay one resource more than ``max_requests`` times in ``window``
    seconds."""

    kind: Literal["endpoint-burst"]
    max_requests: int = Field(ge=1)
    window: Positive = 10.0


Trigger = Annotated[Velocity | FailureStreak | NewPayee | EndpointBurst, Field(discriminator="kind")]


class Policy(Table):
    """A named set of rules and anomaly triggers."""

    name: Name
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)

    def labels(self) -> dict[int, str]:
        """Each rule's and trigger's label, by ``id``: its ``name``, else ``kind#index``."""
        out = {}
        for items in (self.rules, self.triggers):
            for i, item in enumerate(items):
                out[id(item)] = item.name or f"{item.kind}#{i}"
        return out

    def projects_named(self) -> set[str]:
        return {
            item.applies_to.removeprefix("project:")
            for item in [*self.rules, *self.triggers]
            if item.applies_to.startswith("project:")
        }


class PolicyFile(Table):
    """A policy file: projects and named policies."""

    projects: dict[Name, list[str]] = Field(default_factory=dict)
    policies: list[Policy] = Field(min_length=1)

    def policy(self, name: str | None = None) -> Policy:
        """The policy named ``name`` (the only one when None and there is one); ``KeyError`` names the
        known ones."""
        if name is None:
            if len(self.policies) == 1:
                return self.policies[0]
            raise KeyError(f"the file has {len(self.policies)} policies: name one of {self.names()}")
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(unknown_name("policy", name, set(self.names())))

    def names(self) -> list[str]:
        return [p.name for p in self.policies]


def check_policies(policies: list[Policy], projects: set[str], where: str, path: str = "policies") -> None:
    """``PolicyError`` when two policies share a name or a rule names a project not in ``projects``."""
    seen = set()
    for i, policy in enumerate(policies):
        if policy.name in seen:
            raise PolicyError(f"{where}: {path}[{i}].name", f"{policy.name!r} is used twice")
        seen.add(policy.name)
        for key, items in (("rules", policy.rules), ("triggers", policy.triggers)):
            for j, item in enumerate(items):
                project = item.applies_to.removeprefix("project:")
                if item.applies_to.startswith("project:") and project not in projects:
                    raise PolicyError(
                        f"{where}: {path}[{i}].{key}[{j}].applies_to",
                        unknown_name("project", project, projects),
                    )


def _words() -> list[str]:
    return vocabulary(PolicyFile.model_json_schema(mode="validation"))


def parse_policies(data: dict[str, Any], where: str = "policy file") -> PolicyFile:
    """Validate a parsed policy file; ``PolicyError`` names ``where``, the key path and the problem."""
    try:
        parsed = PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, data, where, _words(), PolicyError) from None
    check_policies(parsed.policies, set(parsed.projects), where)
    return parsed


def load_policies(path: str | Path) -> PolicyFile:
    """The policy file at ``path``, validated (``PolicyError`` on any problem)."""
    return parse_policies(read_toml(path, str(path), PolicyError), str(path))


__all__ = [
    "Allow",
    "Approval",
    "Block",
    "EndpointBurst",
    "FailureStreak",
    "NewPayee",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "RateLimit",
    "RequestCap",
    "Rule",
    "Scoped",
    "SpendLimit",
    "Trigger",
    "UsageLimit",
    "Velocity",
    "check_policies",
    "load_policies",
    "parse_policies",
]
