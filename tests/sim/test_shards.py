"""A run split by agent population: the shards partition the agents, run on a real Dask cluster,
and merge into one honest summary."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.sim import load_scenario
from x402sim.sim.cli import parse_overrides
from x402sim.sim.cluster import local_cluster
from x402sim.sim.records import RowWriter
from x402sim.sim.shards import run_shard
from x402sim.sim.summary import stable
from x402sim.sim.world import World

run = importlib.import_module("x402sim.sim.run").run
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
SMALL = ["chain.backend=ledger", "simulation.duration=40"]


@settings(max_examples=15, deadline=None)
@given(count=st.integers(1, 9), shards=st.integers(1, 4))
def test_shards_partition_every_group_by_agent_index(count, shards):
    scenario = load_scenario(QUICKSTART, parse_overrides([*SMALL, f"agents.agents.count={count}"]))
    names = []
    for k in range(shards):
        world = World(scenario, writer=RowWriter(None, keep=False), shard=(k, shards))
        names += [a.name for a in world.agents]
        assert all(int(a.name.rsplit("-", 1)[1]) % shards == k for a in world.agents)
    whole = World(scenario, writer=RowWriter(None, keep=False))
    assert sorted(names) == sorted(a.name for a in whole.agents)


def test_shards_draw_their_own_traffic_but_share_the_world():
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    a, b = (World(scenario, writer=RowWriter(None, keep=False), shard=(k, 2)) for k in range(2))
    assert a.rng("arrivals:agents").random() != b.rng("arrivals:agents").random()
    assert a.rng("prices", shared=True).random() == b.rng("prices", shared=True).random()
    assert a.payees == b.payees and a.chain.usdc == b.chain.usdc


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as c:
        yield c


def test_a_sharded_run_merges_into_one_summary_that_holds(cluster, tmp_path):
    out = tmp_path / "sharded"
    sharded = run(
        QUICKSTART, overrides=parse_overrides(SMALL), shards=2, scheduler=cluster.scheduler_address, out=out
    )
    whole = run(QUICKSTART, overrides=parse_overrides(SMALL), keep_rows=False, plots=False)
    s, w = sharded.summary, whole.summary
    assert s["shards"] == 2 and all(s["invariants"].values())
    assert s["agents"]["agents"]["agents"] == w["agents"]["agents"]["agents"]
    # The same population and rates: the totals agree statistically (Poisson, ~700 requests each).
    assert abs(s["paid_requests"] - w["paid_requests"]) < 5 * w["paid_requests"] ** 0.5
    assert s["x402scan"]["buyers"] == w["x402scan"]["buyers"]
    assert len(s["resources"]["shard_wall_seconds"]) == 2
    # Shards run in separate processes: their parts are the same as running each one here.
    parts = [run_shard(load_scenario(QUICKSTART, parse_overrides(SMALL)), None, k, 2) for k in range(2)]
    assert sum(p.metrics.tally.rows for p in parts) == s["requests"]
    files = {p.name for p in out.iterdir()}
    assert {"summary.json", "timeline.csv", "daily.csv", "report.md"} <= files and "payments.csv" not in files
    assert json.loads((out / "summary.json").read_text())["shards"] == 2


def test_a_sharded_run_is_deterministic(cluster):
    first = run(QUICKSTART, overrides=parse_overrides(SMALL), shards=2, scheduler=cluster.scheduler_address)
    again = run(QUICKSTART, overrides=parse_overrides(SMALL), shards=2, scheduler=cluster.scheduler_address)
    assert stable(first.summary) == stable(again.summary)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--workers", "2"], "go with --shards"),
        (["--shard-dir", "somewhere"], "go with --shards"),
        (["--shards", "2", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
        (["--shards", "2", "--scheduler", "tcp://192.0.2.1:8786"], "not a loopback address"),
    ],
)
def test_cli_shard_options_are_checked(tmp_path, args, problem):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), "--out", str(out), "--quiet", *args])
    assert result.exit_code == 2 and problem in result.output
    assert not out.exists()
