"""Calibration of the Bazaar cases: the reference facilitator passes them (its catalogue learns the
listing a settled payment echoes), and each Bazaar control fails its case. One harness for the
module."""

from __future__ import annotations

import pytest

from tests.conformance.calibration import not_failed, role_controls
from x402sim.conformance import catalog, runner
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps
from x402sim.conformance.reference import reference_target

ROLE = "facilitator"
BAZAAR_CASES = {c.id for c in catalog.select(ROLE, include=["facilitator.bazaar"])}
BAZAAR_CONTROLS = [c for c in role_controls(ROLE) if set(c.kills) <= BAZAAR_CASES]


@pytest.fixture(scope="module")
def harness():
    started = Harness(HarnessOptions())
    started.start(extra_apps=harness_apps(ROLE, started))
    yield started
    started.stop()


def test_the_reference_facilitator_passes_the_bazaar_cases(harness) -> None:
    cases = catalog.select(ROLE, include=["facilitator.bazaar"])
    report = runner.run(ROLE, reference_target(ROLE), cases, None, harness)
    assert {r.outcome for r in report.results} == {"passed"}, [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results
    ]
    # the listing the case settled is in the catalogue, and was fetched and judged
    for result in report.results:
        assert result.evidence.chain["our_item"] is not None


@pytest.mark.parametrize("control", BAZAAR_CONTROLS, ids=lambda c: c.name)
def test_each_bazaar_control_fails_its_case(control, harness) -> None:
    report = runner.run(ROLE, control.build(), catalog.select(include=control.kills), None, harness)
    survivors = not_failed(report)
    assert not survivors, survivors


def test_every_bazaar_must_case_has_a_control() -> None:
    must = {c.id for c in catalog.select(ROLE, include=["facilitator.bazaar"], levels=["MUST"])}
    assert must == BAZAAR_CASES
    assert must <= {k for c in BAZAAR_CONTROLS for k in c.kills}
