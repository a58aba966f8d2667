"""Calibration of the ``batch-settlement`` cases: every batch control of a role fails every case it
claims to kill, all of a role's controls in one harness. The reference passes the batch cases in each
role's whole-catalog run (``test_server_cases``, ``test_facilitator_cases``, ``test_client_cases``),
and every MUST case has a killer there too."""

from __future__ import annotations

import json

import pytest

from tests.conformance.calibration import BATCH_MECHANISMS, control_survivors, role_controls
from x402sim.conformance import catalog
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps

# FACILITATOR_TIMEOUT_SECONDS a server is given: the held settlements wait a quarter of it
FACILITATOR_BOUND = 2.0


@pytest.mark.parametrize("role", catalog.ROLES)
def test_each_batch_control_fails_every_case_it_claims_to_kill(role):
    cases = catalog.select(role, mechanisms=BATCH_MECHANISMS)
    found = role_controls(role, mechanisms=BATCH_MECHANISMS)
    assert cases and found, f"no batch-settlement {role} cases or controls"
    assert {case_id for c in found for case_id in c.kills} == {c.id for c in cases}  # each has a killer
    harness = Harness(HarnessOptions(facilitator_timeout=FACILITATOR_BOUND))
    harness.start(extra_apps=harness_apps(role, harness))
    try:
        survivors = {c.name: control_survivors(c, harness=harness) for c in found}
    finally:
        harness.stop()
    assert not any(survivors.values()), json.dumps(survivors, indent=1)
