"""Controls: the reference roles with one rule broken on purpose, to prove each case can fail.

Rules:

* A control is registered with ``@control(name, role, description, kills=(case ids...))`` on a
  function returning a target (usually ``reference.InProcessService`` / ``InProcessClient`` over a
  wrapped or subclassed reference role). ``kills`` lists the cases the broken variant must fail.
* Calibration (``tests/conformance``): the reference target passes every MUST case, each control
  fails every case it claims to kill, and every MUST case is killed by at least one control.
  ``x402sim conformance list --controls`` shows which controls kill each case.
* Controls live in ``server_controls``, ``facilitator_controls``, ``client_controls`` and
  ``trust_controls``; ``load()`` imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .results import Role

_MODULES = (
    "server_controls",
    "facilitator_controls",
    "client_controls",
    "trust_controls",
    "mechanism_controls",
    "batch_server_controls",
    "batch_facilitator_controls",
    "batch_client_controls",
    "mcp_controls",
    "a2a_controls",
    "bazaar_controls",
)


@dataclass(frozen=True)
class Control:
    name: str
    role: Role
    description: str
    kills: tuple[str, ...]
    build: Callable[[], object]


CONTROLS: dict[str, Control] = {}


def control(name: str, role: Role, description: str, kills: tuple[str, ...] | list[str]):
    def register(build: Callable[[], object]) -> Callable[[], object]:
        if name in CONTROLS:
            raise ValueError(f"control {name} is registered twice")
        CONTROLS[name] = Control(name, role, description, tuple(kills), build)
        return build

    return register


def load() -> dict[str, Control]:
    for module in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
    return CONTROLS


def killers(case_id: str) -> list[str]:
    """The controls that claim to make ``case_id`` fail."""
    return sorted(c.name for c in load().values() if case_id in c.kills)
