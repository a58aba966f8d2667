"""A core install (no extras) imports, registers every command and runs the core ones; a command whose
extra is missing says which extra to install, in one line, and exits 2.

The extras' modules are hidden from a fresh interpreter (``sys.modules[name] = None`` makes importing
them fail as if they were not installed), so this runs in the full development environment;
``test_wheel.py`` checks the same in a real core install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from x402sim.extras import EXTRAS
from x402sim.version import VERSION

SIM = EXTRAS["sim"].modules
DASK = EXTRAS["dask"].modules
AGENTS = EXTRAS["agents"].modules
KEY = ["--key", "0x" + "11" * 32, "--network", "eip155:31337"]


def python_without(hidden: tuple[str, ...], code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the modules ``hidden`` cannot be imported."""
    prelude = f"import sys\nfor name in {hidden!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, capture_output=True, text=True)


def x402sim_without(hidden: tuple[str, ...], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"sys.argv = ['x402sim', *{args!r}]\nfrom x402sim.cli import app\napp(prog_name='x402sim')"
    return python_without(hidden, code, cwd)


def test_the_package_and_its_commands_load_without_extras(tmp_path):
    imported = python_without(SIM + DASK + AGENTS, "import x402sim\nprint(x402sim.__version__)", tmp_path)
    assert (imported.returncode, imported.stdout) == (0, f"{VERSION}\n"), imported.stderr
    helped = x402sim_without(SIM + DASK + AGENTS, ["--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    # The commands box of the help: "│ run    Simulate a scenario ..."
    listed = {
        line.split()[1]
        for line in helped.stdout.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2
    }
    assert {"run", "sweep", "schema", "scenarios", "demo", "conformance"} <= listed


@pytest.mark.parametrize(
    ("hidden", "args", "message"),
    [
        (SIM + DASK, ["run", "quickstart"], "x402sim run needs the simulator: pip install 'x402sim[sim]'"),
        (
            DASK,
            ["run", "quickstart", "--shards", "2"],
            "x402sim run --shards needs Dask: pip install 'x402sim[dask]'",
        ),
        (
            SIM + DASK,
            ["sweep", "quickstart", "--runs", "1"],
            "x402sim sweep needs Dask: pip install 'x402sim[dask]'",
        ),
        (
            DASK,
            ["sweep", "quickstart", "--runs", "1"],
            "x402sim sweep needs Dask: pip install 'x402sim[dask]'",
        ),
        (
            AGENTS,
            ["serve", "mcp", "--stdio", "--facilitator-url", "http://127.0.0.1:1"],
            "x402sim serve mcp needs the MCP and A2A transports: pip install 'x402sim[agents]'",
        ),
        (
            AGENTS,
            ["serve", "a2a"],
            "x402sim serve a2a needs the MCP and A2A transports: pip install 'x402sim[agents]'",
        ),
        (
            AGENTS,
            ["pay", "--mcp", "http://127.0.0.1:9/mcp", "weather", "--args", "{}", *KEY],
            "x402sim pay --mcp needs the MCP and A2A transports: pip install 'x402sim[agents]'",
        ),
        (
            AGENTS,
            ["pay", "--a2a", "http://127.0.0.1:9", "--message", "hi", *KEY],
            "x402sim pay --a2a needs the MCP and A2A transports: pip install 'x402sim[agents]'",
        ),
    ],
    ids=["run", "run-shards", "sweep-core", "sweep-sim", "serve-mcp", "serve-a2a", "pay-mcp", "pay-a2a"],
)
def test_a_command_without_its_extra_names_it_and_exits_2(tmp_path, hidden, args, message):
    done = x402sim_without(hidden, args, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {message}\n")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_schema_and_scenarios_run_on_a_core_install(tmp_path):
    schema = x402sim_without(SIM + DASK, ["schema"], tmp_path)
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "x402sim scenario"
    listing = x402sim_without(SIM + DASK, ["scenarios"], tmp_path)
    assert listing.returncode == 0 and "quickstart" in listing.stdout and "toctou-race" in listing.stdout


def test_the_library_names_the_missing_extra(tmp_path):
    code = (
        "import x402sim\n"
        "from x402sim.sim.shipped import scenario_file\n"
        "print(x402sim.load_scenario(scenario_file('quickstart')).simulation.name)\n"
        "try:\n"
        "    x402sim.run_scenario\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc, exc.name)\n"
    )
    done = python_without(SIM + DASK, code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "quickstart",
        "x402sim.sim.run needs the simulator: pip install 'x402sim[sim]' simpy",
    ]
