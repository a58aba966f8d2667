"""A sharded run with a shard folder: each finished shard is kept, a stopped run goes on where it
stopped and merges into the summary an uninterrupted run gives, and a folder or file of another run
is refused without touching anything."""

from __future__ import annotations

import importlib
import json
import os
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.sim import load_scenario
from x402sim.sim.bars import _duration
from x402sim.sim.cli import parse_overrides
from x402sim.sim.cluster import local_cluster
from x402sim.sim.shard_store import ShardFolderError, ShardStore
from x402sim.sim.shards import run_shard
from x402sim.sim.summary import stable

run = importlib.import_module("x402sim.sim.run").run
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
COMPROMISED = ROOT / "scenarios" / "compromised-agent.toml"
SMALL = ["chain.backend=ledger", "simulation.duration=40"]


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as c:
        yield c


@pytest.fixture(scope="module")
def whole(cluster):
    """The uninterrupted run, without a folder."""
    return run(QUICKSTART, overrides=parse_overrides(SMALL), shards=3, scheduler=cluster.scheduler_address)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def test_a_stopped_run_goes_on_where_it_stopped(cluster, whole, tmp_path):
    folder = tmp_path / "shards"
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    done = run_shard(scenario, None, 1, 3)  # the one shard a run finished before it stopped
    ShardStore(folder, scenario, None, 3).save(done)
    out = tmp_path / "out"
    resumed = run(
        QUICKSTART,
        overrides=parse_overrides(SMALL),
        shards=3,
        scheduler=cluster.scheduler_address,
        shard_dir=folder,
        out=out,
        plots=False,
    )
    s = resumed.summary
    assert s["resources"]["shards_resumed"] == [1]
    # the kept shard was taken, not simulated again: its wall time is the one it was kept with
    assert s["resources"]["shard_wall_seconds"][1] == round(done.wall_seconds, 3)
    assert stable(s) == stable(whole.summary) and all(s["invariants"].values())
    assert {p.name for p in folder.iterdir()} == {"run.json", *(f"shard-{k}-of-3.pkl" for k in range(3))}
    assert (out / "summary.json").exists()
    again = run(
        QUICKSTART,
        overrides=parse_overrides(SMALL),
        shards=3,
        shard_dir=folder,
        scheduler="tcp://127.0.0.1:1",
    )  # every shard is in the folder: no cluster is needed, and the unreachable one is never asked
    assert again.summary["resources"]["shards_resumed"] == [0, 1, 2]
    assert stable(again.summary) == stable(whole.summary)


def test_a_governed_run_keeps_its_counterfactual_shards_apart(cluster, tmp_path):
    folder = tmp_path / "shards"
    short = parse_overrides(["simulation.duration=420"])
    first = run(COMPROMISED, overrides=short, shards=2, scheduler=cluster.scheduler_address, shard_dir=folder)
    names = {p.name for p in folder.iterdir()}
    assert names == {"run.json"} | {f"{u}shard-{k}-of-2.pkl" for u in ("", "ungoverned-") for k in range(2)}
    again = run(COMPROMISED, overrides=short, shards=2, shard_dir=folder, scheduler="tcp://127.0.0.1:1")
    g = again.summary["governance"]
    assert g["loss_prevented_usdc"] == first.summary["governance"]["loss_prevented_usdc"] > 0
    assert stable(again.summary) == stable(first.summary)


@pytest.mark.parametrize(
    ("overrides", "seed", "shards"),
    [
        (["chain.backend=ledger", "simulation.duration=41"], None, 3),  # another setting
        (SMALL, 7, 3),  # another seed
        (SMALL, None, 2),  # another shard count
    ],
)
def test_a_folder_of_another_run_is_refused_and_left_as_it_was(whole, tmp_path, overrides, seed, shards):
    folder = tmp_path / "shards"
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    ShardStore(folder, scenario, None, 3).save(run_shard(scenario, None, 0, 3))
    before = _snapshot(folder)
    out = tmp_path / "out"
    with pytest.raises(ShardFolderError, match="holds the shards of another run"):
        run(
            QUICKSTART,
            overrides=parse_overrides(overrides),
            seed=seed,
            shards=shards,
            shard_dir=folder,
            out=out,
        )
    assert _snapshot(folder) == before and not out.exists()
    args = ["run", str(QUICKSTART), "--shards", str(shards), "--shard-dir", str(folder), "--out", str(out)]
    args += [x for o in overrides for x in ("--set", o)] + (["--seed", str(seed)] if seed else [])
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 2 and "another run" in result.output and str(folder) in result.output
    assert _snapshot(folder) == before and not out.exists()


def test_a_broken_or_foreign_shard_file_is_refused_naming_it(tmp_path):
    folder = tmp_path / "shards"
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    store = ShardStore(folder, scenario, None, 3)
    store.save(run_shard(scenario, None, 0, 3))
    kept = store.path(0).read_bytes()
    store.path(0).write_bytes(kept[: len(kept) // 2])  # truncated
    with pytest.raises(ShardFolderError, match=r"shard-0-of-3\.pkl: not a shard file"):
        store.load(0)
    store.path(2).write_bytes(kept)  # shard 0's result under shard 2's name
    with pytest.raises(ShardFolderError, match=r"shard-2-of-3\.pkl: not shard 2 of this run"):
        store.load(2)
    store.path(1).write_bytes(pickle.dumps(("another fingerprint", "anything")))
    with pytest.raises(ShardFolderError, match=r"shard-1-of-3\.pkl: not shard 1 of this run"):
        store.load(1)


def test_only_an_empty_folder_or_a_shard_folder_is_taken(tmp_path):
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ShardFolderError, match="not a shard folder"):
        ShardStore(busy, scenario, None, 3)
    (tmp_path / "file").write_text("")
    with pytest.raises(ShardFolderError, match="not a folder"):
        ShardStore(tmp_path / "file", scenario, None, 3)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    with pytest.raises(ShardFolderError, match=r"run\.json: not a shard folder's run\.json"):
        ShardStore(broken, scenario, None, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ShardStore(empty, scenario, None, 3).load(0) is None


def test_a_shard_stopped_while_being_written_is_missing_not_half_written(tmp_path, monkeypatch):
    folder = tmp_path / "shards"
    scenario = load_scenario(QUICKSTART, parse_overrides(SMALL))
    store = ShardStore(folder, scenario, None, 3)
    done = run_shard(scenario, None, 0, 3)
    store.save(done)  # the folder and its run.json exist from here

    def stopped(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        store.save(run_shard(scenario, None, 1, 3))
    monkeypatch.undo()
    assert {p.name for p in folder.iterdir()} == {"run.json", "shard-0-of-3.pkl"}
    assert store.load(1) is None and store.load(0).metrics.tally.rows == done.metrics.tally.rows


def test_a_shard_folder_goes_with_shards():
    with pytest.raises(ValueError, match="shard_dir goes with shards > 1"):
        run(QUICKSTART, overrides=parse_overrides(SMALL), shard_dir="anywhere")


def test_the_command_says_each_shard_done_and_each_taken(cluster, tmp_path):
    folder, out = tmp_path / "shards", tmp_path / "out"
    args = ["run", str(QUICKSTART), *[x for o in SMALL for x in ("--set", o)], "--shards", "2"]
    args += ["--shard-dir", str(folder), "--scheduler", cluster.scheduler_address, "--no-plots"]
    first = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert all(f"quickstart: shard {k} of 2 done in " in first.output for k in range(2))
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert f"quickstart: taken from {folder}: shards 0, 1" in " ".join(again.output.split())
    assert "done in" not in again.output
    summaries = [json.loads((o / "summary.json").read_text()) for o in (out, tmp_path / "again")]
    assert stable(summaries[0]) == stable(summaries[1])


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.44, "0.4 s"), (59.94, "59.9 s"), (59.96, "1 min 0 s"), (3599.4, "59 min 59 s"), (7384, "2 h 3 min")],
)
def test_a_shard_time_is_said_in_the_unit_that_reads(seconds, said):
    assert _duration(seconds) == said
