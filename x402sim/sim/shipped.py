"""The scenarios that ship inside the package, and how a command's scenario argument finds its file.

The scenario files live at the top of the repository (``scenarios/``); pyproject.toml installs that
folder as the data package ``x402sim.scenarios``, in an editable install as in a wheel, so an
installed x402sim has them wherever it runs.

Rules: an argument that names an existing file is that file (a path always wins); a bare name that
is not a file (``quickstart``, or ``quickstart.toml``) is the shipped scenario of that name; a bare
name that is neither is a ``ScenarioError`` listing the shipped names. A path with a folder that does
not exist is left to ``load_scenario`` ("no such file").
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .scenario import ScenarioError

__all__ = ["PACKAGE", "scenario_file", "shipped_scenarios"]

PACKAGE = "x402sim.scenarios"


def shipped_scenarios() -> dict[str, Path]:
    """The shipped scenario files by name (the file name without ``.toml``), in name order."""
    folder = Path(str(resources.files(PACKAGE)))
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def scenario_file(argument: str | Path) -> Path:
    """The scenario file ``argument`` names: itself when it exists or has a folder, else the shipped
    scenario of that name; ``ScenarioError`` (listing the shipped names) for an unknown bare name."""
    path = Path(argument)
    if path.exists() or path.parent != Path():
        return path
    shipped = shipped_scenarios()
    name = path.stem if path.suffix == ".toml" else path.name
    if name in shipped:
        return shipped[name]
    raise ScenarioError(
        str(argument), f"no such file, and no shipped scenario of that name (shipped: {', '.join(shipped)})"
    )
