"""The version comes from one place, pyproject.toml: the package, ``x402sim --version`` and a run's
summary say the same (``test_wheel.py`` checks them and the conformance report in an installed wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

import x402sim
from x402sim.cli import app
from x402sim.sim import load_scenario, run
from x402sim.sim.shipped import scenario_file
from x402sim.version import VERSION

ROOT = Path(__file__).resolve().parents[2]
DECLARED = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_and_the_command_line_say_the_declared_version():
    assert x402sim.__version__ == VERSION == DECLARED
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"x402sim {DECLARED}\n")


def test_a_run_summary_names_the_tool_and_its_version():
    scenario = load_scenario(scenario_file("quickstart"), {"simulation.duration": 12})
    summary = run(scenario, keep_rows=False, plots=False).summary
    assert summary["tool"] == {"name": "x402sim", "version": DECLARED}
