"""The simulator: scenario files, a SimPy world of paying agents, and what a run produces.

``load_scenario(path_or_dict)`` validates a scenario; ``run(scenario, seed=..., out=...)`` runs it
(in one process, or ``shards=N`` in parallel on Dask) and returns a ``SimResult`` (summary, metrics,
rows if kept); ``sweep(scenario, grid, runs)`` runs a grid of overrides many times on Dask;
``governance_tradeoff`` varies one governance setting against a run without governors. See the
README's "Scenarios", "Scale" and "Sweeps" sections.
"""

from .run import OutputExists, SimResult, run
from .scenario import Scenario, ScenarioError, load_scenario, scenario_schema
from .study import governance_tradeoff
from .sweep import SweepError, SweepResult, sweep

__all__ = [
    "OutputExists",
    "Scenario",
    "ScenarioError",
    "SimResult",
    "SweepError",
    "SweepResult",
    "governance_tradeoff",
    "load_scenario",
    "run",
    "scenario_schema",
    "sweep",
]
