"""Calibration of the ``batch-settlement`` client cases: the reference client passes them, and every
batch client control fails every case it claims to kill, all in one harness."""

from __future__ import annotations

import json

from tests.conformance.calibration import BATCH_MECHANISMS, control_survivors, role_controls
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps

BATCH_CASES = catalog.select("client", mechanisms=BATCH_MECHANISMS)


def test_the_reference_client_passes_the_batch_cases():
    report = runner.run("client", reference.reference_target("client"), BATCH_CASES)
    bad = {r.id: f"{r.outcome}: {r.message}" for r in report.results if r.outcome != "passed"}
    assert not bad, json.dumps(bad, indent=1)


def test_each_batch_control_fails_every_case_it_claims_to_kill():
    found = role_controls("client", mechanism=BATCH_MECHANISMS)
    assert found, "no client control of a batch case"
    harness = Harness(HarnessOptions())
    harness.start(extra_apps=harness_apps("client", harness))
    try:
        survivors = {c.name: control_survivors(c, harness=harness) for c in found}
    finally:
        harness.stop()
    assert not any(survivors.values()), json.dumps(survivors, indent=1)


def test_every_must_batch_case_has_a_killer():
    killed = {case_id for c in role_controls("client", mechanism=BATCH_MECHANISMS) for case_id in c.kills}
    assert {c.id for c in BATCH_CASES} <= killed
