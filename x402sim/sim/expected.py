"""What a scenario's x402scan figures should come to, worked out from its parameters, without a run.

Assumptions: every request of an honest group is paid once and settles (no faults, no refusals by
policy or governance, enough funds); groups of other behaviours are left out (compromised ones too,
honest until their attack as they are), and so are price changes. Under
them, for each honest group with window ``[start, end)``:

* transactions = agents x the expected requests per agent: the integral of the arrival rate over
  the window (poisson, piecewise, growth), or window / every x size ticks (interval, burst; the
  first tick falls uniformly in the first period, which makes this exact);
* volume = transactions x the mean price of the group's targets weighted by their choice
  probabilities (the mean of each price distribution, or the prices a world drew: ``prices``);
* buyers: an agent pays at least once with probability 1 - exp(-requests per agent) (Poisson);
* sellers: the payments to one endpoint are Poisson (a thinning of the group's arrivals), so a
  payee is paid at least once with probability 1 - exp(-its expected payments).

``max_requests`` caps each agent at E[min(N, cap)] for Poisson N.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

from ..money import UNIT
from . import scenario as sc
from .scenario import Scenario


def requests_per_agent(s: Scenario, group: sc.AgentGroup) -> float:
    """The expected requests each agent of ``group`` starts (before ``max_requests``)."""
    start, end = sc.group_window(s, group)
    a = group.arrivals
    if a.kind == "poisson":
        return a.rate * (end - start)
    if a.kind == "growth":
        return a.expected(end - start)
    if a.kind == "piecewise":
        total = 0.0
        for i, (t, rate) in enumerate(a.steps):
            upto = a.steps[i + 1][0] if i + 1 < len(a.steps) else end
            total += rate * max(0.0, min(upto, end) - max(t, start))
        return total
    size = a.size if a.kind == "burst" else 1
    return (end - start) / a.every * size


def _capped(mean: float, cap: int | None) -> float:
    """E[min(N, cap)] for N Poisson with this mean."""
    if cap is None:
        return mean
    p = math.exp(-mean)
    below = total = 0.0
    for j in range(cap):
        below += p
        total += j * p
        p *= mean / (j + 1)
    return total + cap * (1 - below)


def expected_x402scan(
    s: Scenario, prices: Mapping[tuple[str, str], int] | None = None, transactions: float | None = None
) -> dict:
    """transactions, volume_usdc, buyers and sellers as x402scan would count them, in expectation.
    ``prices`` maps (server, route key) to the atomic price a world drew (``world_prices``); by
    default each endpoint's price is its distribution's mean. ``transactions``, when given (a run's
    count), is taken as known: volume and sellers are then expected values given that count."""
    if transactions is not None:
        scale = transactions / _expected(s, prices)["transactions"]
        return {**_expected(s, prices, scale), "transactions": float(transactions)}
    return _expected(s, prices)


def _expected(s: Scenario, prices: Mapping[tuple[str, str], int] | None, scale: float = 1.0) -> dict:
    copies = {c.name: c for c in s.server_copies()}
    transactions = volume = buyers = 0.0
    to_payee: dict[str, float] = defaultdict(float)
    for group in s.agents:
        if group.behaviour.kind != "honest":
            continue
        per_agent = requests_per_agent(s, group)
        paid = _capped(per_agent, group.max_requests)
        n = group.count * paid * scale
        targets = sc.resolve_targets(s, group)
        weights = sc.choice_weights(group.choice, len(targets))
        total = sum(weights)
        for (server, key), weight in zip(targets, weights, strict=True):
            share = n * weight / total
            volume += share * _price(copies[server], key, prices)
            to_payee[copies[server].payee] += share
        transactions += n
        buyers += group.count * -math.expm1(-per_agent)
    sellers = sum(-math.expm1(-mu) for mu in to_payee.values())
    return {
        "transactions": transactions,
        "volume_usdc": volume / UNIT,
        "buyers": buyers,
        "sellers": sellers,
    }


def _price(copy: sc.ServerCopy, key: str, prices: Mapping[tuple[str, str], int] | None) -> float:
    if prices is not None:
        return prices[(copy.name, key)]
    for e in copy.spec.endpoints:
        if f"{e.method} {e.path}" == key:
            return sc.price_mean(e.price)
    raise KeyError(key)


def world_prices(world) -> dict[tuple[str, str], int]:
    """The price of every endpoint of a built ``World``, as drawn: (server, route key) -> atomic."""
    return {
        (name, key): route.price
        for name, server in world.servers.items()
        for key, route in server.role.routes.items()
    }


__all__ = ["expected_x402scan", "requests_per_agent", "world_prices"]
