"""x402sim sweep: seeds, grid parsing, statistics, and whole sweeps on a real two-process LocalCluster."""

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.sim.cli import parse_grid, split_values
from x402sim.sim.cluster import local_cluster
from x402sim.sim.headline import METRICS
from x402sim.sim.stats import describe, t_critical
from x402sim.sim.sweep import SEED_BITS, SweepError, combinations, derive_seed, sweep
from x402sim.sim.toml_text import toml_literal, toml_value

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.toml"
TINY = ["--grid", "simulation.duration=15", "--grid", "agents.agents.count=4"]
FEE = "chain.fee.l2_base_fee_gwei"
NOWHERE = "tcp://127.0.0.1:9"  # nothing listens there: a command that got that far would fail to connect
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# -- grid values, seeds, statistics ------------------------------------------------------------------

keys = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4).map(".".join)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.booleans() | text | st.dates()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@given(values)
def test_a_grid_value_reads_back_as_written(value):
    assert toml_value(toml_literal(value)) == value


@given(keys, st.lists(values, min_size=1, max_size=5, unique_by=toml_literal))
def test_grid_options_parse_into_their_values(key, vals):
    option = f"{key}=" + ",".join(toml_literal(v) for v in vals)
    assert parse_grid([option]) == {key: vals}


def test_grid_values_are_toml_with_bare_words_as_strings():
    grid = parse_grid(
        [
            "chain.token=usdc, pyusd",
            'chain.fee={model = "l1", base_fee_gwei = 20},{ model = "l1", base_fee_gwei = 1e-3 }',
            "facilitators.main.fee.bps=0,2.5",
            "servers.api.endpoints=[{path='/a,b', price=\"0.001\"}]",
        ]
    )
    assert grid["chain.token"] == ["usdc", "pyusd"]
    assert grid["chain.fee"] == [
        {"model": "l1", "base_fee_gwei": 20},
        {"model": "l1", "base_fee_gwei": 0.001},
    ]
    assert grid["facilitators.main.fee.bps"] == [0, 2.5]
    assert grid["servers.api.endpoints"] == [[{"path": "/a,b", "price": "0.001"}]]
    assert split_values('"a\\",b",c') == ['"a\\",b"', "c"]
    assert [c for c in combinations({"a": [1, 2], "b": ["x", "y", "z"]})][:2] == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
    ]
    assert len(combinations({"a": [1, 2], "b": ["x", "y", "z"]})) == 6


@pytest.mark.parametrize(
    "options, problem",
    [
        (["chain.block_time"], "expected key.path=value1,value2"),
        (["=1,2"], "expected key.path=value1,value2"),
        (["chain.block_time=1,,2"], "an empty value"),
        (["chain.block_time=1", "chain.block_time=2"], "given twice"),
    ],
)
def test_malformed_grid_options_are_refused(options, problem):
    with pytest.raises(SweepError, match=problem):
        parse_grid(options)


@given(
    st.integers(-(2**40), 2**40),
    st.dictionaries(keys, scalars, min_size=1, max_size=4),
    st.integers(0, 10_000),
)
def test_seeds_are_deterministic_and_ignore_the_order_of_grid_keys(seed, params, run):
    first = derive_seed(seed, params, run)
    assert first == derive_seed(seed, dict(reversed(list(params.items()))), run)
    assert 0 <= first < 2**SEED_BITS
    assert first != derive_seed(seed, params, run + 1)
    assert first != derive_seed(seed + 1, params, run)


@given(st.dictionaries(keys, scalars, min_size=1, max_size=3), st.integers(1, 60))
def test_the_runs_of_a_combination_get_distinct_seeds(params, runs):
    seeds = [derive_seed(1, params, r) for r in range(runs)]
    assert len(set(seeds)) == runs


def test_a_value_has_one_seed_whatever_its_spelling():
    (a,), (b,) = parse_grid(["x.y=1e-3"]).values(), parse_grid(["x.y=0.001"]).values()
    assert derive_seed(1, {"x.y": a}, 0) == derive_seed(1, {"x.y": b}, 0)
    assert derive_seed(1, {"x.y": 1}, 0) != derive_seed(1, {"x.y": 2}, 0)


# Two-sided 95% critical values of Student's t, from published tables.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
T_TABLE |= {10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


@pytest.mark.parametrize("df, expected", sorted(T_TABLE.items()))
def test_t_critical_values_match_the_tables(df, expected):
    assert t_critical(df) == pytest.approx(expected, abs=5e-4)


def test_t_critical_values_at_other_levels_and_in_the_limit():
    assert t_critical(1, 0.99) == pytest.approx(63.657, abs=5e-3)
    assert t_critical(10, 0.90) == pytest.approx(1.812, abs=5e-4)
    assert t_critical(10**7) == pytest.approx(1.959964, abs=1e-6)
    # the exact inversion and the expansion used past 1000 degrees of freedom agree at the seam
    assert t_critical(1000) == pytest.approx(t_critical(1001), abs=1e-5)
    assert all(t_critical(df) > t_critical(df + 1) for df in range(1, 1200, 7))


def test_describe_gives_the_student_interval():
    d = describe([1, 2, 3, 4, None])
    assert d["n"] == 4 and d["mean"] == 2.5
    assert d["std"] == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    half = 3.182446305 * d["std"] / 2
    assert d["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    assert describe([7]) == {"n": 1, "mean": 7.0, "std": None, "ci95": None}
    assert describe([None]) == {"n": 0, "mean": None, "std": None, "ci95": None}
    assert describe([True, False, True])["mean"] == pytest.approx(2 / 3)


# -- sweeps on a real cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as c:
        yield c


def test_the_local_cluster_listens_on_loopback_only(cluster):
    from distributed import Client

    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    with Client(cluster) as client:
        client.wait_for_workers(2)  # the cluster object returns before every worker has registered
        workers = client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert all(info["nthreads"] == 1 for info in workers.values())
    assert "127.0.0.1" in cluster.dashboard_link


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "fee"
    args = ["sweep", str(QUICKSTART), *TINY, "--grid", f"{FEE}=0.0002,0.02", "--runs", "2"]
    result = CliRunner().invoke(app, [*args, "--scheduler", cluster.scheduler_address, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result, out


def test_a_sweep_runs_every_combination_with_derived_seeds(swept):
    result, out = swept
    rows = _csv(out / "sweep.csv")
    assert len(rows) == 4
    assert list(rows[0])[:5] == ["simulation.duration", "agents.agents.count", FEE, "run", "seed"]
    assert list(rows[0])[-2:] == ["wall_seconds", "error"] and set(METRICS) <= set(rows[0])
    for row in rows:
        params = {"simulation.duration": 15, "agents.agents.count": 4, FEE: float(row[FEE])}
        assert int(row["seed"]) == derive_seed(1, params, int(row["run"]))  # quickstart's seed is 1
        assert row["error"] == "" and row["invariants_hold"] == "True" and int(row["paid_requests"]) > 0
    assert len({row["seed"] for row in rows}) == 4
    assert [(row[FEE], row["run"]) for row in rows] == [
        ("0.0002", "0"),
        ("0.0002", "1"),
        ("0.02", "0"),
        ("0.02", "1"),
    ]
    assert "a $0.001 request" in result.output


def test_sweep_json_states_the_csv_rows_with_confidence_intervals(swept):
    _, out = swept
    rows = _csv(out / "sweep.csv")
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["runs"] == 2 and doc["runs_ok"] == 4 and doc["runs_failed"] == 0 and doc["gas_key"] == FEE
    assert len(doc["combinations"]) == 2
    for combo in doc["combinations"]:
        mine = [r for r in rows if float(r[FEE]) == combo["parameters"][FEE]]
        assert combo["runs_ok"] == 2 and combo["runs_failed"] == 0 and combo["failures"] == []
        assert combo["seeds"] == [int(r["seed"]) for r in mine]
        for name in (
            "paid_requests",
            "latency_p50_ms",
            "gas_usd_per_settlement",
            "margin_usd",
            "success_rate",
        ):
            stats = combo["metrics"][name]
            column = [float(r[name]) for r in mine]
            assert stats["n"] == 2
            assert stats["mean"] == pytest.approx(statistics.fmean(column))
            assert stats["std"] == pytest.approx(statistics.stdev(column))
            low, high = stats["ci95"]
            assert low <= stats["mean"] <= high
            assert high - stats["mean"] == pytest.approx(t_critical(1) * stats["std"] / math.sqrt(2))
    cheap, dear = (c["metrics"]["break_even_price_usd"]["mean"] for c in doc["combinations"])
    assert 0 < cheap < 0.001 < dear  # a $0.001 request pays for its settlement at 0.0002 gwei, not at 0.02
    (line,) = doc["break_even"]
    assert 0.0002 < line["crossings"]["0.001"] < 0.02


def test_a_sweep_draws_each_metric_with_its_band_and_the_break_even_plot(swept):
    _, out = swept
    doc = json.loads((out / "sweep.json").read_text())
    expected = {f"{m}-vs-{FEE}.png" for m in ("success_rate", "latency_p50_ms", "margin_usd")}
    assert expected | {"break_even.png"} <= set(doc["plots"])
    for name in doc["plots"]:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert not list(out.parent.glob(".fee.*"))  # no staging folder left behind


def test_the_same_sweep_gives_the_same_seeds_and_results(swept, cluster):
    _, out = swept
    rows = _csv(out / "sweep.csv")
    # the grid keys in another order, the fee values spelt otherwise, the output folder replaced
    grid = {FEE: [2e-4, 2e-2], "agents.agents.count": [4], "simulation.duration": [15]}
    again = sweep(QUICKSTART, grid, 2, scheduler=cluster.scheduler_address, out=out, force=True, plots=[])
    assert again.out == out and not again.failures
    assert [r["seed"] for r in again.rows] == [int(r["seed"]) for r in rows]
    for old, new in zip(rows, again.rows, strict=True):
        for name in ("requests", "paid_requests", "gas_per_settlement", "latency_p99_ms", "margin_usd"):
            assert float(old[name]) == new[name]
    assert not list(out.parent.glob(".fee.*"))


def test_a_crashing_combination_is_reported_and_the_others_complete(cluster, tmp_path):
    # 200,000 gas is a valid block gas limit, but too small for the token's deployment
    out = tmp_path / "crash"
    args = ["sweep", str(QUICKSTART), *TINY, "--grid", "chain.block_gas_limit=200000,30000000", "--runs", "2"]
    result = CliRunner().invoke(app, [*args, "--scheduler", cluster.scheduler_address, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("run failed: ") == 2 and "block gas limit" in result.stderr
    assert "2 of 4 runs failed" in result.stderr
    rows = _csv(out / "sweep.csv")
    crashed = [r for r in rows if r["chain.block_gas_limit"] == "200000"]
    fine = [r for r in rows if r["chain.block_gas_limit"] == "30000000"]
    assert len(crashed) == len(fine) == 2
    assert all("ChainError" in r["error"] and r["paid_requests"] == "" for r in crashed)
    assert all(r["error"] == "" and int(r["paid_requests"]) > 0 for r in fine)
    bad, good = json.loads((out / "sweep.json").read_text())["combinations"]
    assert bad["runs_ok"] == 0 and bad["runs_failed"] == 2 and bad["metrics"]["requests"]["n"] == 0
    assert [f["seed"] for f in bad["failures"]] == [int(r["seed"]) for r in crashed]
    assert all(f["traceback"].startswith("Traceback (most recent call last)") for f in bad["failures"])
    assert good["runs_ok"] == 2 and good["failures"] == []


def test_a_sweep_in_which_every_run_failed_exits_1(cluster, tmp_path):
    args = [
        "sweep",
        str(QUICKSTART),
        *TINY,
        "--grid",
        "chain.block_gas_limit=200000",
        "--runs",
        "2",
        "--quiet",
    ]
    result = CliRunner().invoke(
        app, [*args, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "every run failed" in result.stderr
    assert json.loads((tmp_path / "x" / "sweep.json").read_text())["runs_failed"] == 2


# -- refused before anything starts -------------------------------------------------------------------


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, ["sweep", str(QUICKSTART), *args])
    assert result.exit_code == 2, result.output
    assert "cannot connect" not in result.stderr
    return " ".join(result.stderr.split())


def test_a_misspelt_grid_key_fails_at_once_naming_it(tmp_path):
    out = tmp_path / "never"
    message = _refused("--grid", "simulation.duratoin=15,20", "--scheduler", NOWHERE, "--out", str(out))
    assert "simulation.duratoin: unknown key (did you mean 'duration'?)" in message
    message = _refused("--grid", "facilitators.facilitatr.concurrency=2", "--scheduler", NOWHERE)
    assert "--grid facilitators.facilitatr.concurrency" in message and "no item 'facilitatr'" in message
    message = _refused("--grid", "simulation.duration=5,60", "--scheduler", NOWHERE)
    assert (
        "warmup (10.0) must be shorter than duration (5.0)" in message and "simulation.duration=5" in message
    )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_options_that_exclude_each_other_or_point_away_are_refused():
    message = _refused("--grid", "chain.block_time=1,2", "--workers", "2", "--scheduler", NOWHERE)
    assert "--workers and --scheduler exclude each other" in message
    message = _refused("--grid", "chain.block_time=1,2", "--scheduler", "tcp://192.0.2.1:8786")
    assert "not a loopback address" in message and "--allow-remote" in message
    assert "--plot" in _refused("--grid", "chain.block_time=1,2", "--plot", "latency", "--scheduler", NOWHERE)
    assert "at least one --grid" in _refused("--scheduler", NOWHERE)


def test_an_existing_output_folder_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    message = _refused("--grid", "chain.block_time=1,2", "--scheduler", NOWHERE, "--out", str(out))
    assert "exists; give --force" in message
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_without_a_scheduler_a_sweep_starts_its_own_cluster_and_closes_it(tmp_path):
    import multiprocessing

    before = set(multiprocessing.active_children())
    grid = {"simulation.duration": [15], "agents.agents.count": [2], "chain.block_time": [1, 2]}
    result = sweep(QUICKSTART, grid, 1, workers=1, out=tmp_path / "own", plots=["paid_requests"])
    assert not result.failures and [r["chain.block_time"] for r in result.rows] == [1, 2]
    assert (tmp_path / "own" / "paid_requests-vs-chain.block_time.png").read_bytes().startswith(PNG_MAGIC)
    assert set(multiprocessing.active_children()) <= before  # the worker processes are gone
