"""December 2025 (scenarios/x402-december-2025.toml): its expectation against the published figures,
the sizes its header documents, its facilitators' shares, its wash-trading group, and runs.

Published: 63 M transactions, $7.5 M, 64,000 buyers, 10,000 sellers; Dexter about half of the daily
transactions from 15 December, cdp a quarter to a third; wash trading 47 % of the transactions and
14 % of the USD (Artemis). The expectation (``expected_x402scan``, from the parameters alone) is
checked against them at every size the header gives; the runs are checked against their own
expectation with bounds of 4 standard deviations worked out in the test. A run at 1/1000 for the
whole month takes about 2 minutes (63,000 payments), so the default suite runs its first day (1/1000
of the population, wash trading on: about 3,800 payments); the month at 1/1000, with and without
wash trading, is a soak test.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from pathlib import Path

import pytest

from x402sim.sim import load_scenario, run
from x402sim.sim import scenario as sc
from x402sim.sim.cli import parse_overrides
from x402sim.sim.expected import expected_x402scan, requests_per_agent

ROOT = Path(__file__).resolve().parents[2]
DECEMBER = ROOT / "scenarios" / "x402-december-2025.toml"
PUBLISHED = {"transactions": 63_000_000, "volume_usdc": 7_500_000, "buyers": 64_000, "sellers": 10_000}
FACILITATORS = ("dexter", "cdp", "payai", "daydreams")
DAY = 86_400
# each facilitator's share of the transactions of 1-7, 8-14 and 15-31 December, as the file's table
SHARES = {
    "dexter": (0.25, 0.375, 0.50),
    "cdp": (0.33, 0.31, 0.29),
    "payai": (0.27, 0.20, 0.13),
    "daydreams": (0.15, 0.115, 0.08),
}
PERIODS = ((0, 7), (7, 14), (14, 31))  # days


def _header_commands() -> dict[str, list[str]]:
    """The --set options of each command in the file's header, by the label that opens its line:
    "wash" (switching wash trading on), "1/1000", "1/100", "1/10"."""
    lines = [line.removeprefix("#").strip() for line in DECEMBER.read_text().splitlines()]
    header = lines[: next(i for i, line in enumerate(lines) if line.startswith("[simulation]"))]
    commands: dict[str, list[str]] = {}
    label = None
    for i, line in enumerate(header):
        size = re.match(r"^(1/\d+) \(", line)
        if size:
            label = size.group(1)
        elif line.startswith("x402sim run") and label is None:
            label = "wash"
        if line.startswith("x402sim run"):
            text = line
            j = i
            while text.endswith("\\"):
                j += 1
                text = text[:-1] + " " + header[j]
            words = shlex.split(text)
            assert label is not None and label not in commands, line
            commands[label] = [words[k + 1] for k, w in enumerate(words) if w == "--set"]
            label = None
    return commands


COMMANDS = _header_commands()


@functools.cache
def _december(*overrides: str) -> sc.Scenario:
    return load_scenario(DECEMBER, parse_overrides(list(overrides)))


def _close(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance * target


def _group_rates(s: sc.Scenario) -> dict[str, list[float]]:
    """Each organic group's rate (all its agents, per second) in each of the three periods."""
    out = {}
    for name in FACILITATORS:
        group = next(g for g in s.agents if g.name == name)
        assert group.arrivals.kind == "piecewise"
        out[name] = [group.count * group.arrivals.rate_at(start * DAY) for start, _ in PERIODS]
    return out


# -- the expectation, from the parameters alone ----------------------------------------------------


def test_the_header_documents_switching_wash_on_and_three_sizes():
    assert set(COMMANDS) == {"wash", "1/1000", "1/100", "1/10"}
    assert COMMANDS["wash"] == ['agents.wash.arrivals={ kind = "poisson", rate = 0.0208587 }']


def test_the_expectation_is_the_published_month():
    s = _december()
    assert s.chain.backend == "ledger" and s.simulation.duration == 31 * DAY
    assert s.simulation.start_time == 1764547200  # 2025-12-01 00:00 UTC
    expected = expected_x402scan(s)
    for key, target in PUBLISHED.items():
        assert _close(expected[key], target, 0.001), (key, expected[key], target)
    # the published average payment, $0.12, is $7.5 M / 63 M rounded
    assert expected["volume_usdc"] / expected["transactions"] == pytest.approx(7.5 / 63, rel=0.001)
    assert round(expected["volume_usdc"] / expected["transactions"], 2) == 0.12
    targets = s.x402scan
    assert targets is not None
    assert (targets.transactions, targets.volume_usdc, targets.buyers, targets.sellers) == (
        63_000_000,
        7_500_000 * 10**6,
        64_000,
        10_000,
    )
    copies = s.server_copies()
    organic = [c for c in copies if c.spec.name != "wash"]
    assert len(organic) == 10_000 and len({c.payee for c in organic}) == 10_000
    # wash trading is off as shipped: its agents make no request
    wash = next(g for g in s.agents if g.name == "wash")
    assert requests_per_agent(s, wash) == 0


@pytest.mark.parametrize("size", ["1/1000", "1/100", "1/10"])
def test_each_documented_size_expects_its_own_targets(size):
    s = _december(*COMMANDS[size])
    divisor = int(size.removeprefix("1/"))
    expected = expected_x402scan(s)
    targets = s.x402scan
    assert targets is not None and targets.transactions and targets.volume_usdc and targets.buyers
    assert targets.transactions == PUBLISHED["transactions"] // divisor
    assert targets.volume_usdc == PUBLISHED["volume_usdc"] * 10**6 // divisor
    assert targets.buyers == PUBLISHED["buyers"] // divisor
    assert _close(expected["transactions"], targets.transactions, 0.001)
    assert _close(expected["volume_usdc"], targets.volume_usdc / 10**6, 0.001)
    assert expected["buyers"] == pytest.approx(targets.buyers)
    # the sellers to expect at this size: the target the header gives (10,000 unless it says)
    assert targets.sellers is not None and abs(expected["sellers"] - targets.sellers) < 1
    # the wash group is scaled with the others
    assert next(g for g in s.agents if g.name == "wash").count == 1000 // divisor


def test_the_facilitators_carry_the_published_shares_of_each_period():
    rates = _group_rates(_december())
    total = [sum(r[p] for r in rates.values()) for p in range(3)]
    for p in range(3):
        # a flat 63 M over 31 days
        assert total[p] == pytest.approx(63_000_000 / (31 * DAY), rel=1e-5)
        for name in FACILITATORS:
            assert rates[name][p] / total[p] == pytest.approx(SHARES[name][p], abs=1e-5), (name, p)
        # published: cdp a quarter to a third; from 15 December Dexter about half
        assert 0.25 <= rates["cdp"][p] / total[p] <= 1 / 3
    assert rates["dexter"][2] / total[2] == pytest.approx(0.5, abs=1e-5)
    # and each group pays only servers of its own facilitator
    s = _december()
    copies = {c.name: c for c in s.server_copies()}
    for name in FACILITATORS:
        group = next(g for g in s.agents if g.name == name)
        assert {copies[server].facilitators for server, _ in sc.resolve_targets(s, group)} == {(name,)}


def test_switched_on_wash_trading_is_47_percent_of_transactions_and_14_percent_of_usd():
    off = expected_x402scan(_december())
    on = expected_x402scan(_december(*COMMANDS["wash"]))
    wash_tx = on["transactions"] - off["transactions"]
    wash_usd = on["volume_usdc"] - off["volume_usdc"]
    assert wash_tx / on["transactions"] == pytest.approx(0.47, abs=0.0005)
    assert wash_usd / on["volume_usdc"] == pytest.approx(0.14, abs=0.0005)
    s = _december(*COMMANDS["wash"])
    copies = [c for c in s.server_copies() if c.spec.name == "wash"]
    # the ring's sellers are in the same hands: one payee for all of them
    assert {c.payee for c in copies} == {"wash-ring"}
    wash = next(g for g in s.agents if g.name == "wash")
    assert wash.behaviour.kind == "honest" and wash.targets == ["wash"]
    assert on["sellers"] == pytest.approx(off["sellers"] + 1) and on["buyers"] == off["buyers"] + 1000


# -- a run: the first day at 1/1000, wash trading on -----------------------------------------------


def _binomial_bound(p: float, n: float) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)


def test_the_first_day_at_1_1000_with_wash_trading():
    overrides = [*COMMANDS["1/1000"], *COMMANDS["wash"], f"simulation.duration={DAY}"]
    s = _december(*overrides)
    summary = run(s, plots=False, keep_rows=False).summary
    assert all(summary["invariants"].values()), summary["invariants"]
    assert summary["paid_requests"] == summary["requests"] == summary["settled_payments"]
    scan, agents = summary["x402scan"], summary["agents"]
    # every payment through a facilitator is its group's (organic) or through a wash server it serves
    wash_servers = {c.name: c.facilitators[0] for c in s.server_copies() if c.spec.name == "wash"}
    for name in FACILITATORS:
        through = sum(summary["servers"][v]["paid"] for v, f in wash_servers.items() if f == name)
        assert scan["per_facilitator"][name]["transactions"] == agents[name]["paid"] + through
    # what the ring's agent spent is what the ring's payee received (read from the Transfer logs)
    assert agents["wash"]["spend_usdc"] == summary["payees"]["wash-ring"] > 0
    assert scan["buyers"] == 64 + 1
    # the organic payments of the first week's mix
    organic = sum(agents[name]["paid"] for name in FACILITATORS)
    for name in FACILITATORS:
        share = SHARES[name][0]
        assert abs(agents[name]["paid"] / organic - share) < _binomial_bound(share, organic), name
    # the wash share of the transactions: 47 % (Poisson counts: binomial given the total)
    n = scan["transactions"]
    assert abs(agents["wash"]["paid"] / n - 0.47) < _binomial_bound(0.47, n)
    # and of the USD: 14 % of the month's; on the first day the organic mix is the early one, so the
    # expected share is worked out for the day. Its spread comes from both volumes: the organic one's
    # variance is its payments times the mean squared price, the wash one's is Poisson.
    day = expected_x402scan(s)
    organic_day = expected_x402scan(_december(*COMMANDS["1/1000"], f"simulation.duration={DAY}"))
    wash_usd = day["volume_usdc"] - organic_day["volume_usdc"]
    expected_share = wash_usd / day["volume_usdc"]
    assert 0.13 < expected_share < 0.15
    square = _mean_square_price(_december(*COMMANDS["1/1000"], f"simulation.duration={DAY}"))
    wash_paid = agents["wash"]["paid"]
    relative = math.sqrt(organic * square / organic_day["volume_usdc"] ** 2 + 1 / wash_paid)
    sd = expected_share * (1 - expected_share) * relative
    share = agents["wash"]["spend_usdc"] / scan["volume_usdc"]
    assert abs(share - expected_share) < 4 * sd, (share, expected_share, sd)


def _mean_square_price(s: sc.Scenario) -> float:
    """E[price^2] of an organic payment (USDC^2), weighted by the groups' expected payments."""
    copies = {c.name: c for c in s.server_copies()}
    total = weighted = 0.0
    for group in s.agents:
        n = group.count * requests_per_agent(s, group)
        targets = sc.resolve_targets(s, group)
        weights = sc.choice_weights(group.choice, len(targets))
        for (server, _), w in zip(targets, weights, strict=True):
            price = sc.price_mean(copies[server].spec.endpoints[0].price) / 10**6
            weighted += n * w / sum(weights) * price**2
        total += n
    return weighted / total


# -- the month at 1/1000 (about 2 minutes each) ----------------------------------------------------


@pytest.mark.soak
def test_the_month_at_1_1000_lands_on_its_scaled_figures():
    s = _december(*COMMANDS["1/1000"])
    result = run(s, plots=False, keep_rows=False)
    summary = result.summary
    assert all(summary["invariants"].values()), summary["invariants"]
    assert summary["paid_requests"] == summary["requests"] == summary["settled_payments"]
    scan = summary["x402scan"]
    assert scan["within_tolerance"], scan["targets"]
    assert all(abs(t["deviation"]) <= 0.02 for t in scan["targets"].values())
    sellers = expected_x402scan(s, transactions=scan["transactions"])["sellers"]
    assert abs(scan["sellers"] - sellers) < 0.01 * sellers
    # each period's facilitator shares, from the daily Transfer-log figures
    for p, (first, last) in enumerate(PERIODS):
        days = result.daily[first:last]
        n = sum(d["transactions"] for d in days)
        for name in FACILITATORS:
            share = sum(d[f"{name}.transactions"] for d in days) / n
            assert abs(share - SHARES[name][p]) < _binomial_bound(SHARES[name][p], n), (name, p, share)


@pytest.mark.soak
def test_the_month_at_1_1000_with_wash_trading_is_47_and_14_percent_wash():
    summary = run(_december(*COMMANDS["1/1000"], *COMMANDS["wash"]), plots=False, keep_rows=False).summary
    assert all(summary["invariants"].values()), summary["invariants"]
    scan, wash = summary["x402scan"], summary["agents"]["wash"]
    assert abs(wash["paid"] / scan["transactions"] - 0.47) < 0.01
    assert abs(wash["spend_usdc"] / scan["volume_usdc"] - 0.14) < 0.01
    assert wash["spend_usdc"] == summary["payees"]["wash-ring"]
