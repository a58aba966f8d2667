"""``import x402sim`` stays light: the command line, the simulator and the web server load on first use."""

import subprocess
import sys

# Loaded by `x402sim --help`, a simulation or `x402sim serve`, never by the library import.
HEAVY = ("typer", "rich", "dask", "distributed", "matplotlib", "numpy", "uvicorn", "simpy", "ddsketch")


def loaded_after_import(*modules: str) -> list[str]:
    """Which of ``modules`` a fresh interpreter has in ``sys.modules`` after ``import x402sim``."""
    code = f"import sys, x402sim; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_import_x402sim_loads_no_heavy_module():
    assert loaded_after_import(*HEAVY) == []


def test_simulator_names_still_import_from_the_package():
    from x402sim import ScenarioError, X402simError, load_scenario, run, run_scenario, sweep
    from x402sim.sim import load_scenario as sim_load_scenario
    from x402sim.sim import run as sim_run
    from x402sim.sim import sweep as sim_sweep

    assert run is run_scenario is sim_run and sweep is sim_sweep and load_scenario is sim_load_scenario
    assert issubclass(ScenarioError, X402simError)
