"""Refactorings change no behaviour: each golden command gives exactly the output recorded before.

The goldens (``tests/golden/<size>/*.json``) were recorded by ``record.py`` from the commit before the
seams were reshaped: every shipped scenario at its default seed, on each backend it allows, and the
conformance reports of ``--builtin reference`` for the three roles, with wall-clock and
unrepeatable fields removed. ``make test`` runs the small versions of the scenarios and the
conformance reports; ``make soak`` runs the scenarios at full size (the month on py-evm among them,
whose small version is the same command).
"""

from __future__ import annotations

import json

import pytest

from .record import CASES, Case, produce


def _check(case: Case) -> None:
    expected = json.loads(case.path.read_text())
    assert produce(case) == expected, f"{case.name}: the output differs from the golden {case.path.name}"


# A small case whose command is a full one's (the month on py-evm, at 1/1000 in both sets) is left to
# the soak: `make test` still runs the month's small version on the ledger backend.
FULL_COMMANDS = {case.args for case in CASES["full"]}
QUICK = [case for case in CASES["small"] if case.args not in FULL_COMMANDS] + CASES["conformance"]


@pytest.mark.parametrize("case", QUICK, ids=lambda c: f"{c.size}/{c.name}")
def test_output_is_the_golden(case: Case) -> None:
    _check(case)


@pytest.mark.soak
@pytest.mark.parametrize("case", CASES["full"], ids=lambda c: f"full/{c.name}")
def test_full_scenario_is_the_golden(case: Case) -> None:
    _check(case)
