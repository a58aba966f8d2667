"""Choosing among discovered services: by price, mechanism, reputation and policy (no I/O).

A Bazaar listing (an HTTP endpoint or an MCP tool) is reduced to a ``Candidate``: what it costs in
the asset's atomic units, the mechanisms it can be paid by, and its reputation where its server
declares an ERC-8004 identity. ``choose`` filters the candidates a buyer may take and ranks them
by a named rule; the client of the discovery endpoints (``discover``) and the simulator's planning
agents both call it, so one rule is one ranking everywhere.

Rules:

* A candidate is kept when it names a mechanism the buyer pays by (``mechanisms``; None: any), costs
  at most ``max_price`` (None: no cap), has at least ``min_reputation`` when that is set (an unknown
  reputation then fails), and passes ``allowed`` (a policy's predicate, e.g. the governor's).
* Ranking, ties broken by ``(resource, tool)`` so equal inputs give equal orders:
  ``cheapest``: the lowest price first; ``reputation``: the best reputation first (unknown last),
  then the lowest price; ``value``: the most reputation per unit of price first (an unknown
  reputation counts as ``UNKNOWN_REPUTATION``); ``first``: as listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHOICE_RULES", "UNKNOWN_REPUTATION", "Candidate", "choose"]

CHOICE_RULES = ("cheapest", "reputation", "value", "first")
UNKNOWN_REPUTATION = 0.5  # what ``value`` assumes of a service that declares no reputation (0..1)


@dataclass(frozen=True)
class Candidate:
    """A service a buyer could pay: ``resource`` (its URL; for an MCP tool the server's URL) and
    ``tool`` (the MCP tool's name, None for HTTP), its ``price`` in atomic units, the ``mechanisms``
    it accepts (``"scheme/transferMethod"``, e.g. ``"exact/eip3009"``), its ``reputation`` (0..1,
    None: not declared), its ``tags``, its ``description``, for HTTP the ``method`` its listing names
    ("" when unknown), and the ``example`` input its listing gives (an MCP tool's arguments; None:
    none; not compared)."""

    resource: str
    price: int
    mechanisms: tuple[str, ...] = ()
    tool: str | None = None
    reputation: float | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    method: str = ""
    example: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.resource, self.tool or "")


def _rank(rule: str) -> Callable[[Candidate], tuple[object, ...]]:
    if rule == "cheapest":
        return lambda c: (c.price, c.key)
    if rule == "reputation":
        return lambda c: (c.reputation is None, -(c.reputation or 0.0), c.price, c.key)
    if rule == "value":

        def value(c: Candidate) -> tuple[object, ...]:
            reputation = UNKNOWN_REPUTATION if c.reputation is None else c.reputation
            return (-(reputation / max(c.price, 1)), c.price, c.key)

        return value
    raise ValueError(f"choice rule {rule!r}: expected one of {', '.join(CHOICE_RULES)}")


def choose(
    candidates: Iterable[Candidate],
    rule: str = "cheapest",
    *,
    mechanisms: Iterable[str] | None = None,
    max_price: int | None = None,
    min_reputation: float | None = None,
    allowed: Callable[[Candidate], bool] | None = None,
) -> list[Candidate]:
    """The candidates a buyer may take, best first by ``rule`` (see the module's rules)."""
    if rule not in CHOICE_RULES:
        raise ValueError(f"choice rule {rule!r}: expected one of {', '.join(CHOICE_RULES)}")
    accepted = None if mechanisms is None else frozenset(mechanisms)
    kept = [
        c
        for c in candidates
        if (accepted is None or accepted.intersection(c.mechanisms))
        and (max_price is None or c.price <= max_price)
        and (min_reputation is None or (c.reputation is not None and c.reputation >= min_reputation))
        and (allowed is None or allowed(c))
    ]
    return kept if rule == "first" else sorted(kept, key=_rank(rule))
