"""Calibration of the ``batch-settlement`` facilitator cases: every batch control fails every case it
claims to kill (all of them in one harness), every batch MUST case has a killer, and the reference
passes the batch cases (the whole catalog's reference run, ``test_facilitator_cases``, has them too)."""

from __future__ import annotations

import json

from tests.conformance.calibration import BATCH_MECHANISMS, control_survivors, role_controls
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps

ROLE = "facilitator"
CASES = catalog.select(ROLE, mechanisms=list(BATCH_MECHANISMS))


def test_each_batch_control_fails_every_case_it_claims_to_kill():
    found = role_controls(ROLE, mechanism=BATCH_MECHANISMS)
    assert found, "no batch facilitator control"
    harness = Harness(HarnessOptions())
    harness.start(extra_apps=harness_apps(ROLE, harness))
    try:
        survivors = {c.name: control_survivors(c, harness=harness) for c in found}
    finally:
        harness.stop()
    assert not any(survivors.values()), json.dumps(survivors, indent=1)


def test_every_batch_must_case_has_a_killer():
    assert CASES and {c.mechanism for c in CASES} == set(BATCH_MECHANISMS)
    killed = {case_id for c in role_controls(ROLE, mechanism=BATCH_MECHANISMS) for case_id in c.kills}
    assert not [c.id for c in CASES if c.level == "MUST" and c.id not in killed]


def test_the_reference_passes_the_batch_cases():
    report = runner.run(ROLE, reference.reference_target(ROLE), CASES)
    bad = [f"{r.id} [{r.level}] {r.outcome}: {r.message}" for r in report.results if r.outcome != "passed"]
    assert not bad, "\n".join(bad)
    assert {r.id for r in report.results} == {c.id for c in CASES}
