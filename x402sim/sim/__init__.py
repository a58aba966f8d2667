"""The simulator: scenario files, a SimPy world of paying agents, and what a run produces.

``load_scenario(path_or_dict)`` validates a scenario; ``run(scenario, seed=..., out=...)`` runs it
and returns a ``SimResult`` (summary and rows). See the README's "Scenarios" section.
"""

from .run import OutputExists, SimResult, run
from .scenario import Scenario, ScenarioError, load_scenario, scenario_schema

__all__ = [
    "OutputExists",
    "Scenario",
    "ScenarioError",
    "SimResult",
    "load_scenario",
    "run",
    "scenario_schema",
]
