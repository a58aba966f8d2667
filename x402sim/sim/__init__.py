"""The simulator: scenario files, a SimPy world of paying agents, and what a run produces.

``load_scenario(path_or_dict)`` validates a scenario; ``run(scenario, seed=..., out=...)`` runs it
(in one process, or ``shards=N`` in parallel on Dask, kept in ``shard_dir`` to resume a stopped run)
and returns a ``SimResult`` (summary, metrics, rows if kept); ``sweep(scenario, grid, runs)`` runs a
grid of overrides many times on Dask; ``governance_tradeoff`` varies one governance setting against
a run without governors. See the docs' how-to guides (docs/how-to: write-a-scenario,
x402scan-month, sweep-on-dask).

Running needs the ``sim`` extra (SimPy, matplotlib, NumPy, DDSketch; sweeps and shards also ``dask``).
Without it this package still imports, with the scenario model (``load_scenario``,
``scenario_schema``: what ``x402sim schema`` needs); the names that run something then raise a
``ModuleNotFoundError`` that names the extra to install (``x402sim.extras``).
"""

from ..extras import installed, missing
from .cluster import SweepError
from .scenario import Scenario, ScenarioError, load_scenario, scenario_schema
from .shard_store import ShardFolderError

_RUNNING = ("OutputExists", "SimResult", "SweepResult", "governance_tradeoff", "run", "sweep")

if installed("sim"):
    from .run import OutputExists, SimResult, run
    from .study import governance_tradeoff
    from .sweep import SweepResult, sweep
else:

    def __getattr__(name: str):
        if name in _RUNNING:
            raise missing("sim", f"x402sim.sim.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OutputExists",
    "Scenario",
    "ScenarioError",
    "ShardFolderError",
    "SimResult",
    "SweepError",
    "SweepResult",
    "governance_tradeoff",
    "load_scenario",
    "run",
    "scenario_schema",
    "sweep",
]
