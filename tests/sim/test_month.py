"""The x402scan month (scenarios/x402scan-month.toml): its expectation, its world, its arrivals, and
a run at 1/100 scale.

The article's month: 1.35 M payments, $1.48 M, 72,150 buyers, 960 sellers, in 30 days. The 1/100
version is the same file with ``agents.buyers.count=721`` (arrival rates are per agent): its
targets are the month's transactions, volume and buyers divided by 100, and for sellers the number
of distinct payees expected for the payments the run made (``expected_x402scan`` given its
transactions: about 780, since at 13,500 payments most of the rarely used endpoints are never
paid). Across seeds the 1/100 figures vary with standard deviations of about 0.85% (transactions),
1.2% (volume) and 1.4% (sellers given transactions); the scenario's seed is fixed, so the run is
exact, and the expectation itself is checked against the article apart from any seed.
"""

import itertools
import math
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.sim import load_scenario, run
from x402sim.sim import scenario as sc
from x402sim.sim.agents import growth_times
from x402sim.sim.cli import parse_overrides
from x402sim.sim.expected import expected_x402scan, requests_per_agent, world_prices
from x402sim.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
MONTH = ROOT / "scenarios" / "x402scan-month.toml"
ARTICLE = {"transactions": 1_350_000, "volume_usdc": 1_480_000, "buyers": 72_150, "sellers": 960}
HUNDREDTH = ["agents.buyers.count=721"]
DAY = 86_400


def _month(*overrides: str) -> sc.Scenario:
    return load_scenario(MONTH, parse_overrides(list(overrides)))


def _close(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance * target


# -- the expectation, from the parameters alone ----------------------------------------------------


def test_the_expectation_is_the_articles_month_within_1_percent():
    expected = expected_x402scan(_month())
    for key, target in ARTICLE.items():
        assert _close(expected[key], target, 0.01), (key, expected[key], target)
    # the pieces: the rate's integral times the agents, and the popularity-weighted mean price
    group = _month().agents[0]
    assert _close(group.count * requests_per_agent(_month(), group), 1_350_000, 1e-5)
    assert _close(expected["volume_usdc"] / expected["transactions"], 1.48 / 1.35, 0.001)


def test_the_expectation_holds_with_the_prices_the_seed_draws_and_at_1_100():
    world = World(_month("agents.buyers.count=1"))  # prices do not depend on the agents
    drawn = expected_x402scan(_month(), world_prices(world))
    assert _close(drawn["volume_usdc"], ARTICLE["volume_usdc"], 0.01)
    small = expected_x402scan(_month(*HUNDREDTH))
    for key in ("transactions", "volume_usdc", "buyers"):
        assert _close(small[key], ARTICLE[key] / 100, 0.01), key
    assert 700 < small["sellers"] < 860  # why the 1/100 test compares sellers with the expectation


def test_the_expectation_of_a_small_run_is_what_it_does(tmp_path):
    """The helper against a run: quickstart's Poisson arrivals and Zipf choice, every request paid."""
    s = load_scenario(ROOT / "scenarios" / "quickstart.toml", parse_overrides(["chain.backend=ledger"]))
    expected = expected_x402scan(s)
    assert expected["transactions"] == pytest.approx(20 * 0.2 * 120)
    summary = run(s, plots=False, keep_rows=False).summary["x402scan"]
    sd = math.sqrt(expected["transactions"])
    assert abs(summary["transactions"] - expected["transactions"]) < 4 * sd
    assert summary["buyers"] == round(expected["buyers"]) and summary["sellers"] == 2


# -- the world -------------------------------------------------------------------------------------


def test_the_world_has_960_endpoints_each_with_its_own_payee():
    s = _month("agents.buyers.count=1")
    world = World(s)
    assert len(world.servers) == 960 and len(s.endpoint_keys()) == 960
    assert len({server.role.pay_to for server in world.servers.values()}) == 960
    assert list(world.servers)[:2] == ["mint-0", "mint-1"] and "api-919" in world.servers
    # the agents' targets are ranked mint, premium, api: Zipf's top ranks are the mint endpoints
    targets = sc.resolve_targets(s, s.agents[0])
    assert len(targets) == 960 and targets[0] == ("mint-0", "POST /mint") and targets[-1][0] == "api-919"
    # every copy is served by one facilitator, dealt out by the shares
    api = [server for name, server in world.servers.items() if name.startswith("api-")]
    dealt = {
        name: sum(1 for v in api if v.facilitators[0].name == name) for name in ("cdp", "payai", "x402rs")
    }
    assert dealt == {"cdp": 552, "payai": 230, "x402rs": 138}
    prices = world_prices(world)
    assert {prices[(f"mint-{i}", "POST /mint")] for i in range(10)} == {1_000_000}
    assert {prices[(f"premium-{i}", "GET /report")] for i in range(30)} == {3_000_000}
    api_prices = [prices[(f"api-{i}", "GET /call")] for i in range(920)]
    assert min(api_prices) >= 100 and max(api_prices) <= 100_000 and len(set(api_prices)) > 300
    # a copy's price comes from its own stream: the same seed draws the same prices
    assert world_prices(World(s)) == prices


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32))
def test_every_drawn_price_is_in_the_declared_distribution(seed):
    s = _month()
    api = next(v for v in s.servers if v.name == "api").endpoints[0].price
    fixed = {0.001, 0.005, 0.01, 0.05, 0.1}
    rng = random.Random(seed)
    drawn = [sc.draw_price(api, rng) for _ in range(2000)]
    assert all(100 <= p <= 100_000 for p in drawn)  # the log-uniform range covers the fixed values
    on_grid = sum(1 for p in drawn if p / 1e6 in fixed)
    # half the draws are one of the five round prices (the log-uniform half lands on them rarely)
    assert abs(on_grid / len(drawn) - 0.5) < 5 * math.sqrt(0.25 / len(drawn)) + 0.01
    assert statistics.fmean(drawn) == pytest.approx(sc.price_mean(api), rel=0.15)


PRICES = st.one_of(
    st.builds(
        lambda lo, w: sc.UniformPrice(kind="uniform", low=lo, high=lo + w),
        st.integers(1, 10**7),
        st.integers(0, 10**7),
    ),
    st.builds(
        lambda lo, w: sc.LogUniformPrice(kind="log-uniform", low=lo, high=lo + w),
        st.integers(1, 10**7),
        st.integers(0, 10**9),
    ),
    st.builds(
        lambda v: sc.ChoicePrice(kind="choice", values=v),
        st.lists(st.integers(1, 10**8), min_size=1, max_size=6),
    ),
)


@given(PRICES, st.integers(0, 2**32))
def test_price_distributions_draw_whole_units_within_their_bounds(price, seed):
    rng = random.Random(seed)
    low, high = sc.price_bounds(price)
    mixture = sc.MixturePrice(kind="mixture", of=[{"weight": 1, "price": price}, {"weight": 1, "price": "2"}])
    for _ in range(200):
        p = sc.draw_price(price, rng)
        assert isinstance(p, int) and 1 <= low <= p <= high
        q = sc.draw_price(mixture, rng)
        assert q == 2_000_000 or low <= q <= high


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.floats(0.001, 1000), min_size=1), st.integers(1, 300))
def test_shares_deal_copies_out_in_step(shares, n):
    dealt = sc.split_by_shares(shares, n)
    total = sum(shares.values())
    counts = dict.fromkeys(shares, 0)
    for i, name in enumerate(dealt, 1):
        counts[name] += 1
        assert all(abs(counts[k] - i * shares[k] / total) < 2 for k in shares)


# -- growth arrivals -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_growth_puts_the_declared_share_of_arrivals_in_the_last_7_days(seed):
    s = _month("agents.buyers.count=5000")
    group = s.agents[0]
    start, end = sc.group_window(s, group)
    r0, k = group.arrivals.profile(end - start)
    times = list(growth_times(r0 * group.count, k, start, end, random.Random(seed)))
    expected = group.count * requests_per_agent(s, group)  # 93,555
    assert abs(len(times) - expected) < 5 * math.sqrt(expected)  # Poisson: sd = sqrt(mean)
    assert all(start <= t < end for t in times) and times == sorted(times)
    # given the count, each arrival falls in the last week with probability 0.8 (binomial)
    late = sum(1 for t in times if t >= end - 7 * DAY) / len(times)
    assert abs(late - 0.8) < 5 * math.sqrt(0.8 * 0.2 / len(times))  # 5 sd, about 0.0065
    # and the rate doubles about every 3 days: each week holds e^(7 days x k) = 4.98 times the one before
    # (the first week's ~370 arrivals make that ratio's sd about 0.3)
    weeks = [sum(1 for t in times if w * 7 * DAY <= t < (w + 1) * 7 * DAY) for w in range(4)]
    growth = math.exp(7 * DAY * k)
    assert growth == pytest.approx(4.98, abs=0.01)
    for before, after in itertools.pairwise(weeks):
        assert abs(after / before - growth) < 5 * growth * math.sqrt(1 / before + 1 / after)


def test_growth_parametrisations_agree():
    window = 4 * DAY
    by_doubling = sc.Growth(kind="growth", rate=0.01, doubling=DAY)
    r0, k = by_doubling.profile(window)
    assert r0 == 0.01 and k == pytest.approx(math.log(2) / DAY)
    assert by_doubling.expected(window) == pytest.approx(0.01 * DAY / math.log(2) * 15)
    # the same process given as requests and as the share of the last day: 8 of 15 parts
    by_share = sc.Growth(kind="growth", requests=by_doubling.expected(window), last=DAY, share_in_last=8 / 15)
    assert by_share.profile(window) == pytest.approx((r0, k))
    # a share below last / window makes a falling rate; exactly last / window a constant one
    falling = sc.Growth(kind="growth", requests=100, last=DAY, share_in_last=0.1)
    assert falling.profile(window)[1] < 0
    flat = sc.Growth(kind="growth", requests=100, last=DAY, share_in_last=0.25)
    assert flat.profile(window)[1] == pytest.approx(0, abs=1e-12)
    times = list(
        growth_times(
            falling.profile(window)[0] * 1000, falling.profile(window)[1], 0, window, random.Random(1)
        )
    )
    assert abs(len(times) - 100_000) < 5 * math.sqrt(100_000)
    assert abs(sum(1 for t in times if t >= 3 * DAY) / len(times) - 0.1) < 0.005


# -- the run at 1/100 ------------------------------------------------------------------------------


@pytest.mark.soak  # make test runs the same month in notebooks/scale.ipynb, which asserts the same
def test_the_month_at_1_100_reproduces_its_scaled_figures():
    s = _month(*HUNDREDTH)
    assert s.chain.backend == "ledger"
    summary = run(s, plots=False, keep_rows=False).summary
    assert all(summary["invariants"].values()), summary["invariants"]
    # every request was paid and settled: nothing failed for funds, queues or timeouts
    assert summary["paid_requests"] == summary["requests"] == summary["settled_payments"]
    got = summary["x402scan"]
    scaled = {"transactions": 13_500, "volume_usdc": 14_800, "buyers": 721.5}
    for key, target in scaled.items():
        assert _close(got[key], target, 0.02), (key, got[key], target)
    sellers = expected_x402scan(s, transactions=got["transactions"])["sellers"]
    assert _close(got["sellers"], sellers, 0.02), (got["sellers"], sellers)
