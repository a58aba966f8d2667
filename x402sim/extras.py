"""The optional extras of the package: which extra brings which module, and the line that says so.

A core install (``pip install x402sim``) runs the protocol, the chain, the roles, the testbed, the
HTTP services, conformance with its pytest plugin, governance, trust and the command line.
``x402sim[sim]`` adds the simulator (``x402sim.sim``: ``x402sim run``, the notebooks);
``x402sim[dask]`` adds sweeps and sharded runs on Dask, with the simulator; ``x402sim[agents]`` adds the
MCP and A2A transports (``x402sim.transports``: paid tools and agents, and the clients that pay them).

Rules: this is the one place that knows which module belongs to which extra. It imports nothing of
x402sim. A command turns a missing extra into one line and exit code 2 (``cli_errors.needs_extra``);
the library raises a ``ModuleNotFoundError`` whose message names the extra (``missing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

__all__ = ["EXTRAS", "Extra", "extra_for", "installed", "missing"]


@dataclass(frozen=True)
class Extra:
    """An extra of the package: its name, what it adds (as in "needs the simulator") and its modules."""

    name: str
    adds: str
    modules: tuple[str, ...]

    @property
    def install(self) -> str:
        return f"pip install 'x402sim[{self.name}]'"

    def advice(self, who: str) -> str:
        """One line: ``who`` needs this extra, and how to install it."""
        return f"{who} needs {self.adds}: {self.install}"


EXTRAS = {
    "sim": Extra("sim", "the simulator", ("simpy", "matplotlib", "numpy", "ddsketch")),
    "dask": Extra("dask", "Dask", ("dask", "distributed")),
    "agents": Extra("agents", "the MCP and A2A transports", ("mcp", "a2a")),
}


def extra_for(error: ImportError) -> Extra | None:
    """The extra that brings the module ``error`` could not import (None: a module of no extra)."""
    top = (error.name or "").partition(".")[0]
    return next((extra for extra in EXTRAS.values() if top in extra.modules), None)


def installed(name: str) -> bool:
    """Whether every module of the extra ``name`` can be imported here (found, not imported)."""
    return all(find_spec(module) is not None for module in EXTRAS[name].modules)


def missing(name: str, who: str) -> ModuleNotFoundError:
    """The error to raise when ``who`` (a function, a command) needs the extra ``name``, absent here."""
    extra = EXTRAS[name]
    absent = next((m for m in extra.modules if find_spec(m) is None), None)
    return ModuleNotFoundError(extra.advice(who), name=absent)
