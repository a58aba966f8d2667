"""The shipped scenarios: listed and run by name from anywhere, a path always winning over a name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.sim import ScenarioError
from x402sim.sim.shipped import scenario_file, shipped_scenarios

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_shipped_scenarios_are_the_repository_scenarios():
    shipped = shipped_scenarios()
    assert list(shipped) == sorted(path.stem for path in (ROOT / "scenarios").glob("*.toml"))
    assert all(
        shipped[name].read_bytes() == (ROOT / "scenarios" / f"{name}.toml").read_bytes() for name in shipped
    )


def test_a_bare_name_is_the_shipped_scenario_unless_a_file_has_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quickstart = shipped_scenarios()["quickstart"]
    assert scenario_file("quickstart") == scenario_file("quickstart.toml") == quickstart
    Path("quickstart").write_text("[simulation]\n")
    assert scenario_file("quickstart") == Path("quickstart")  # an existing path wins
    assert scenario_file("elsewhere/quickstart.toml") == Path("elsewhere/quickstart.toml")  # a path stays one


def test_an_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ScenarioError, match=r"^nope: no such file, and no shipped scenario of that name \(shipped: "
    ):
        scenario_file("nope")
    result = runner.invoke(app, ["run", "nope"])
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: nope: no such file") and "quickstart, replay-attack" in result.output
    )
    assert result.output.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_run_a_shipped_scenario_by_name_and_list_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "quickstart", "--set", "simulation.duration=12", "--quiet", "--no-plots", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scenario"] == "quickstart"
    assert (tmp_path / "runs" / "quickstart" / "summary.json").is_file()
    listing = runner.invoke(app, ["scenarios"])
    assert (
        listing.exit_code == 0 and "x402scan-month" in listing.output and "x402sim run NAME" in listing.output
    )
