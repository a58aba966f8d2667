"""Scenario files: validation errors that say where, overrides, amounts, distributions, schema."""

import json
import random
import statistics
import tomllib
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from x402sim.sim import ScenarioError, load_scenario, scenario_schema
from x402sim.sim.cli import parse_overrides
from x402sim.sim.distributions import Empirical, Exponential, Lognormal, Normal, Uniform
from x402sim.sim.scenario import resolve_targets
from x402sim.tables import parse_usdc

MINIMAL = """
[simulation]
name = "t"
duration = 60

[[facilitators]]
name = "fac"

[[servers]]
name = "shop"
facilitators = ["fac"]
endpoints = [{ path = "/a", price = "0.001" }]

[[agents]]
name = "buyers"
"""


def _write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def _error(tmp_path, text, overrides=()) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, text), parse_overrides(overrides))
    return str(info.value)


def test_minimal_file_loads_with_defaults(tmp_path):
    s = load_scenario(_write(tmp_path, MINIMAL))
    assert s.servers[0].endpoints[0].price == 1000  # "0.001" USDC in atomic units
    assert s.agents[0].behaviour.kind == "honest" and s.chain.block_time == 2.0
    assert s.network.client_server.mean == 0.05  # defaults are validated distributions too


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        (
            ('name = "fac"', 'name = "fac"\nverfy_time = 0.1'),
            "facilitators[0].verfy_time",
            "did you mean 'verify_time'",
        ),
        (
            ('name = "buyers"', 'name = "buyers"\nbehaviour = { kind = "replay", tims = 2 }'),
            "agents[0].behaviour.tims",
            "did you mean 'times'",
        ),
        (('price = "0.001"', 'price = "0.0000001"'), "servers[0].endpoints[0].price", "more than 6 decimals"),
        (('price = "0.001"', "price = 0.001"), "servers[0].endpoints[0].price", "decimal strings"),
        (
            ('facilitators = ["fac"]', 'facilitators = ["fax"]'),
            "servers[0].facilitators[0]",
            "did you mean 'fac'",
        ),
        (("duration = 60", ""), "simulation.duration", "required key is missing"),
        (
            ('name = "buyers"', 'name = "buyers"\nbehaviour = "saint"'),
            "agents[0].behaviour",
            "'saint' is not one of",
        ),
        (
            ('name = "buyers"', 'name = "buyers"\ntargets = ["shop/b"]'),
            "agents[0].targets[0]",
            "no endpoint named 'shop/b'",
        ),
        (("[simulation]", "[simulation]\nwarmup = 100"), "simulation", "warmup (100.0) must be shorter"),
        (
            ('name = "fac"', 'name = "fac"\nverify_time = { kind = "lognormal", mean = 1 }'),
            "facilitators[0].verify_time.sigma",
            "missing",
        ),
    ],
)
def test_errors_name_file_key_path_and_problem(tmp_path, edit, where, problem):
    message = _error(tmp_path, MINIMAL.replace(*edit, 1))
    assert message.startswith(f"{tmp_path / 's.toml'}: {where}") and problem in message


def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    message = _error(tmp_path, MINIMAL + "\n[oops\n")
    assert str(tmp_path / "s.toml") in message and "TOML syntax" in message and "line" in message


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.toml")


def test_overrides_reach_any_value_by_index_or_name(tmp_path):
    path = _write(tmp_path, MINIMAL)
    s = load_scenario(
        path,
        parse_overrides(
            [
                "facilitators.fac.dedupe=off",
                "servers.0.endpoints.0.price='0.5'",
                "simulation.seed=9",
                "network.client_server={kind='exponential', mean=0.2}",
                "agents.buyers.behaviour=underpay",
            ]
        ),
    )
    assert s.facilitators[0].dedupe == "off" and s.servers[0].endpoints[0].price == 500_000
    assert s.simulation.seed == 9 and s.network.client_server.mean == 0.2
    assert s.agents[0].behaviour.kind == "underpay"


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("agents.sellers.count=3", "agents has no item 'sellers' (items: buyers)"),
        ("simulation.name.x=1", "simulation.name is a value"),
        ("no-equals-sign", "expected key.path=value"),
        ("facilitators.fac.dedupe=maybe", "facilitators[0].dedupe"),
    ],
)
def test_bad_overrides_are_named(tmp_path, override, problem):
    assert problem in _error(tmp_path, MINIMAL, [override])


def test_dict_scenarios_are_validated_the_same_way():
    with pytest.raises(ScenarioError, match=r"^scenario: simulation\.duration: required key is missing"):
        load_scenario({"simulation": {"name": "x"}, "facilitators": [], "servers": [], "agents": []})


def test_schema_describes_every_table():
    schema = scenario_schema()
    assert set(schema["properties"]) == {
        "simulation",
        "chain",
        "network",
        "facilitators",
        "servers",
        "agents",
        "faults",
        "x402scan",
        "policies",
        "governance",
        "transports",
        "bazaar",
    }
    json.dumps(schema)  # serialisable for editors


@given(st.integers(min_value=0, max_value=10**15))
def test_usdc_amounts_round_trip_exactly(atomic):
    text = str(Decimal(atomic) / 10**6)
    assert parse_usdc(text) == atomic


@given(st.one_of(st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=8)))
def test_usdc_amounts_refuse_anything_but_decimal_text(value):
    if isinstance(value, str):
        try:
            with localcontext(prec=1000):  # exact, whatever the exponent (e.g. "1E100")
                amount = Decimal(value.strip())
                ok = amount.is_finite() and amount >= 0 and (amount * 10**6) % 1 == 0
                ok = ok and amount * 10**6 < 2**256
        except ArithmeticError:
            ok = False
        if ok:
            assert parse_usdc(value) >= 0
            return
    with pytest.raises(ValueError):
        parse_usdc(value)


DISTRIBUTIONS = st.one_of(
    st.builds(lambda lo, w: Uniform(kind="uniform", low=lo, high=lo + w), st.floats(0, 10), st.floats(0, 10)),
    st.builds(lambda m: Exponential(kind="exponential", mean=m), st.floats(0.001, 10)),
    st.builds(
        lambda m, s: Lognormal(kind="lognormal", mean=m, sigma=s), st.floats(0.001, 10), st.floats(0, 1.5)
    ),
    st.builds(lambda m, s: Normal(kind="normal", mean=m, sd=s), st.floats(0, 10), st.floats(0, 5)),
    st.builds(
        lambda v: Empirical(kind="empirical", values=v), st.lists(st.floats(0, 100), min_size=1, max_size=20)
    ),
)


@given(DISTRIBUTIONS, st.integers(0, 2**32))
def test_samples_are_finite_non_negative_and_average_to_the_mean(dist, seed):
    rng = random.Random(seed)
    samples = [dist.sample(rng) for _ in range(4000)]
    assert all(x >= 0 and x == x and x != float("inf") for x in samples)
    sd = statistics.pstdev(samples)
    # the sample mean is within 6 standard errors of the stated mean (plus rounding slack)
    assert abs(statistics.fmean(samples) - dist.mean) <= 6 * sd / 4000**0.5 + 1e-9 * (1 + dist.mean)


def test_the_annotated_example_of_the_docs_is_a_valid_scenario():
    example = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "scenario-annotated.toml"
    s = load_scenario(tomllib.loads(example.read_text()))
    assert s.simulation.name == "example" and s.servers[0].endpoints[1].changes[1].pay_to == "attacker"


PRICE = 'price = "0.001"'
TEMPLATE = MINIMAL.replace('name = "shop"', 'name = "shop"\ncount = 3').replace(
    '[[facilitators]]\nname = "fac"', '[[facilitators]]\nname = "fac"\n\n[[facilitators]]\nname = "alt"'
)


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        (
            (PRICE, 'price = { kind = "log-uniform", low = "0", high = "0.1" }'),
            "endpoints[0].price",
            "at least",
        ),
        (
            (PRICE, 'price = { kind = "uniform", low = "0.2", high = "0.1" }'),
            "endpoints[0].price",
            "below low",
        ),
        (
            (PRICE, 'price = { kind = "lognormal", mean = "1" }'),
            "endpoints[0].price",
            "kind 'lognormal' is not",
        ),
        ((PRICE, 'price = { low = "0.1" }'), "endpoints[0].price", "needs a kind"),
        (
            (PRICE, 'price = { kind = "choice", values = ["0.1", "0.2"], weights = [1] }'),
            "endpoints[0].price",
            "1 weights for 2 values",
        ),
        (
            (PRICE, 'price = { kind = "mixture", of = [{ weight = 1, price = "0" }] }'),
            "endpoints[0].price",
            "a part's price (0) must be at least 0.000001",
        ),
        (('facilitators = ["fac"]', "facilitators = { fax = 1 }"), "facilitators.fax", "did you mean 'fac'"),
        (('facilitators = ["fac"]', "facilitators = { fac = 0 }"), "facilitators.fac", "greater than 0"),
        (("count = 3", "count = 0"), "count", "greater than or equal to 1"),
    ],
)
def test_template_and_price_errors_say_where(tmp_path, edit, where, problem):
    message = _error(tmp_path, TEMPLATE.replace(*edit, 1))
    assert message.startswith(f"{tmp_path / 's.toml'}: servers[0].{where}") and problem in message, message


@pytest.mark.parametrize(
    ("arrivals", "problem"),
    [
        ('{ kind = "growth", rate = 1, requests = 2, doubling = 10 }', "either rate"),
        ('{ kind = "growth", rate = 1 }', "either doubling, or last and share_in_last"),
        ('{ kind = "growth", rate = 1, last = 10 }', "last and share_in_last go together"),
        ('{ kind = "growth", requests = 5, last = 60, share_in_last = 0.5 }', "shorter than the window"),
        ('{ kind = "growth", requests = 5, doubling = 0.01 }', "more than e^700"),
        ('{ kind = "growth", requests = 5, last = 1, share_in_last = 0.999999 }', "more than e^700"),
    ],
)
def test_growth_arrival_errors_say_where(tmp_path, arrivals, problem):
    message = _error(tmp_path, MINIMAL.replace('name = "buyers"', f'name = "buyers"\narrivals = {arrivals}'))
    assert message.startswith(f"{tmp_path / 's.toml'}: agents[0].arrivals") and problem in message, message


def test_template_copies_and_their_names(tmp_path):
    s = load_scenario(
        _write(tmp_path, TEMPLATE), parse_overrides(["servers.shop.facilitators={fac=2, alt=1}"])
    )
    assert [(c.name, c.facilitators, c.payee) for c in s.server_copies()] == [
        ("shop-0", ("fac",), "shop-0"),
        ("shop-1", ("alt",), "shop-1"),
        ("shop-2", ("fac",), "shop-2"),
    ]
    for targets, n in ((["shop"], 3), (["shop/a"], 3), (["shop-1"], 1), (["shop-1/a", "shop-0"], 2)):
        s = load_scenario(_write(tmp_path, TEMPLATE), parse_overrides([f"agents.buyers.targets={targets}"]))
        assert len(resolve_targets(s, s.agents[0])) == n
    assert "no endpoint named 'shop-3'" in _error(tmp_path, TEMPLATE, ["agents.buyers.targets=['shop-3']"])
    shared = load_scenario(_write(tmp_path, TEMPLATE), parse_overrides(["servers.shop.pay_to=one"]))
    assert {c.payee for c in shared.server_copies()} == {"one"}
    other = '[[servers]]\nname = "shop-1"\nfacilitators = ["fac"]\nendpoints = [{ path = "/a", price = "1" }]'
    clash = TEMPLATE + other
    assert "servers[0].count: copy 'shop-1' has the name of servers[1]" in _error(tmp_path, clash)
    # a dumped scenario loads again unchanged (prices and shares serialise as they are written)
    s = load_scenario(
        _write(tmp_path, TEMPLATE),
        parse_overrides(['servers.shop.endpoints.0.price={kind="log-uniform", low="0.001", high="0.1"}']),
    )
    assert load_scenario(s.model_dump(mode="json", by_alias=True)) == s
