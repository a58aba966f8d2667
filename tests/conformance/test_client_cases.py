"""Calibration of the client cases: the reference client passes every one, each control fails every case
it claims to kill, every MUST case has a killer, and the evidence carries the deciding chain facts.

The v1 case needs a network with a v1 name, so the reference also runs the catalog on the
``base-sepolia`` preset (where nothing is skipped), and a control that kills the v1 case runs there.
"""

from __future__ import annotations

import pytest

from tests.conformance.calibration import (
    DEFAULT_MECHANISMS,
    control_survivors,
    role_controls,
    unkilled_must_cases,
)
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.client_cases import SILENCE
from x402sim.conformance.harness import HarnessOptions

V1_CASE = "client.pays.v1-header"
TRUST = {c.id for c in catalog.select("client", include=["client.trust"])}  # skipped: not advertised


def run(target, cases, network: str = "local"):
    return runner.run("client", target, cases, runner.RunOptions(harness=HarnessOptions(network=network)))


@pytest.fixture(scope="module")
def reference_reports():
    target = reference.reference_target("client")
    cases = catalog.select("client")
    return {network: run(target, cases, network) for network in ("local", "base-sepolia")}


@pytest.fixture(scope="module")
def results(reference_reports):
    return {r.id: r for r in reference_reports["local"].results}


def test_there_are_enough_client_cases():
    cases = catalog.select("client")
    assert len(cases) >= 25
    groups = {c.group for c in cases}
    assert {"pays", "refuses", "retries", "signs", "concurrency"} <= groups


@pytest.mark.parametrize("network", ["local", "base-sepolia"])
def test_the_reference_client_passes_every_case(reference_reports, network):
    report = reference_reports[network]
    bad = [r for r in report.results if r.outcome not in ("passed", "skipped")]
    for r in bad:
        print(f"{r.id} {r.outcome}: {r.message}")
    assert not bad, f"the reference client does not pass {[r.id for r in bad]} on {network}"
    skipped = {r.id for r in report.results if r.outcome == "skipped"}
    # only the v1 case may skip, and only where the network has no v1 name; the trust cases skip for
    # a client that does not say it reads ERC-8004
    assert skipped == ({V1_CASE} if network == "local" else set()) | TRUST, skipped


@pytest.mark.parametrize(
    "control", role_controls("client", trust=False, mechanisms=DEFAULT_MECHANISMS), ids=lambda c: c.name
)
def test_each_control_fails_every_case_it_kills(control):
    network = "base-sepolia" if V1_CASE in control.kills else "local"
    survivors = control_survivors(control, runner.RunOptions(harness=HarnessOptions(network=network)))
    assert not survivors, f"{control.name} does not fail: {survivors}"


def test_every_must_case_is_killed_by_a_control():
    assert not unkilled_must_cases("client")


def test_evidence_of_a_payment_carries_the_transfer_and_the_used_nonce(results):
    result = results["client.pays.right-amount"]
    chain = result.evidence.chain
    (transfer,) = chain["transfers"]
    assert transfer["value"] == 1_000 and transfer["tx"].startswith("0x")
    assert chain["payer.authorization_used"] is True
    (signed,) = chain["signed"]
    assert signed["to"] == transfer["to"] and signed["header"] == "payment-signature"
    seen = [e for e in result.evidence.exchanges if e.request.x402]
    assert seen and "payment-signature" in seen[0].request.x402
    assert seen[0].response is not None and seen[0].response.status == 200


def test_evidence_of_concurrent_runs_shows_every_nonce_used_on_chain(results):
    chain = results["client.concurrency.each-pays-once"].evidence.chain
    assert chain["nonces_used"] == [True] * 4
    assert len(chain["transfers"]) == 4
    assert len({s["nonce"] for s in chain["signed"]}) == 4


def test_evidence_of_a_refusal_shows_nothing_signed_and_nothing_moved(results):
    chain = results["client.refuses.unit-confusion"].evidence.chain
    assert chain["signed"] == [] and chain["transfers"] == []
    assert chain["payer.balance"] == 2 * 10**15
    assert results["client.refuses.unit-confusion"].evidence.exchanges  # the 402 the client read


def test_evidence_of_a_lost_answer_shows_one_settled_payment(results):
    chain = results["client.retries.lost-answer-500"].evidence.chain
    assert chain["nonces_used"] == [True] and len(chain["transfers"]) == 1
    assert chain["signed"][0]["answered"] == 500


def test_evidence_of_a_hang_up_shows_no_answer_and_one_settled_payment(results):
    for case_id in ("client.retries.lost-answer-closed", "client.retries.lost-answer-silent"):
        chain = results[case_id].evidence.chain
        assert chain["nonces_used"] == [True] and len(chain["transfers"]) == 1, case_id
        assert chain["signed"][0]["answered"] is None, case_id  # the server hung up


def test_the_silent_case_waits_its_bound_and_no_longer(results):
    # the reference client would wait 30 s: the hang-up after SILENCE is what ends the run
    assert SILENCE <= results["client.retries.lost-answer-silent"].duration < SILENCE + 5
