"""Calibration of the ``batch-settlement`` server cases: every batch control of the server role fails
every case it claims to kill (all in one harness), every batch MUST case has a killer, and the
reference passes the batch cases (they also run in ``test_server_cases``' whole-catalog run)."""

from __future__ import annotations

import json

from tests.conformance.calibration import BATCH_MECHANISMS, control_survivors, role_controls
from x402sim.conformance import catalog, runner
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.reference import reference_target

ROLE = "server"
FACILITATOR_BOUND = 2.0  # FACILITATOR_TIMEOUT_SECONDS: the held settlements wait a quarter of it
BATCH_CASES = catalog.select(ROLE, mechanisms=list(BATCH_MECHANISMS))


def _harness() -> Harness:
    return Harness(HarnessOptions(facilitator_timeout=FACILITATOR_BOUND)).start()


def test_each_batch_server_control_fails_every_case_it_claims_to_kill():
    found = role_controls(ROLE, mechanism=BATCH_MECHANISMS)
    assert found, "no batch-settlement server control"
    harness = _harness()
    try:
        survivors = {c.name: control_survivors(c, harness=harness) for c in found}
    finally:
        harness.stop()
    assert not any(survivors.values()), json.dumps(survivors, indent=1)


def test_every_batch_server_must_case_has_a_killer():
    killed = {case_id for c in role_controls(ROLE, mechanism=BATCH_MECHANISMS) for case_id in c.kills}
    must = {c.id for c in BATCH_CASES if c.level == "MUST"}
    assert len(must) >= 9
    assert not must - killed


def test_the_reference_passes_the_batch_server_cases():
    harness = _harness()
    try:
        report = runner.run(ROLE, reference_target(ROLE), BATCH_CASES, harness=harness)
    finally:
        harness.stop()
    failed = [f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome != "passed"]
    assert not failed, "\n".join(failed)
