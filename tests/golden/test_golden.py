"""Refactorings change no behaviour: each golden command gives exactly the output recorded before.

The goldens (``tests/golden/<size>/*.json``) were recorded by ``record.py`` from the commit before the
seams were reshaped: every shipped scenario at its default seed, on each backend it allows, and the
conformance reports of ``--builtin reference`` for the three roles, with wall-clock and
unrepeatable fields removed. ``make test`` runs the small versions of the scenarios and the
conformance reports; ``make soak`` runs the scenarios at full size (and the month on py-evm, at a
thousandth of its population: it has no small case).
"""

from __future__ import annotations

import json

import pytest

from .record import CASES, Case, produce


def _check(case: Case) -> None:
    expected = json.loads(case.path.read_text())
    assert produce(case) == expected, f"{case.name}: the output differs from the golden {case.path.name}"


@pytest.mark.parametrize("case", CASES["small"] + CASES["conformance"], ids=lambda c: f"{c.size}/{c.name}")
def test_output_is_the_golden(case: Case) -> None:
    _check(case)


@pytest.mark.soak
@pytest.mark.parametrize("case", CASES["full"], ids=lambda c: f"full/{c.name}")
def test_full_scenario_is_the_golden(case: Case) -> None:
    _check(case)
