"""Calibration of the facilitator cases: the reference passes every one, each control fails every case
it claims to kill, every MUST case has a killer, and the evidence carries the deciding chain facts."""

from __future__ import annotations

import pytest

from tests.conformance.calibration import (
    DEFAULT_MECHANISMS,
    control_survivors,
    role_controls,
    unkilled_must_cases,
)
from x402sim.conformance import catalog, controls, reference, runner

ROLE = "facilitator"


@pytest.fixture(scope="module")
def reference_report():
    return runner.run(ROLE, reference.reference_target(ROLE), catalog.select(ROLE))


@pytest.fixture(scope="module")
def results(reference_report):
    return {r.id: r for r in reference_report.results}


def test_the_catalog_covers_every_group_with_enough_cases():
    cases = catalog.select(ROLE, mechanisms=[catalog.DEFAULT_MECHANISM])
    assert len(cases) >= 30
    assert {c.group for c in cases} == {"supported", "verify", "settle", "input", "extra", "bazaar"}


def test_the_reference_passes_every_case(reference_report):
    bad = [
        f"{r.id} [{r.level}] {r.outcome}: {r.message}"
        for r in reference_report.results
        if r.outcome != "passed"
    ]
    assert not bad, "\n".join(bad)
    assert {r.id for r in reference_report.results} == {c.id for c in catalog.select(ROLE)}


@pytest.mark.parametrize("control", role_controls(ROLE, mechanisms=DEFAULT_MECHANISMS), ids=lambda c: c.name)
def test_each_control_fails_every_case_it_claims_to_kill(control):
    survivors = control_survivors(control)
    assert not survivors, f"{control.name} did not fail:\n" + "\n".join(survivors)


def test_every_must_case_has_a_killer():
    assert not unkilled_must_cases(ROLE)


# -- the evidence carries what decided -------------------------------------------------------------


def test_a_settlement_is_judged_by_its_receipt_and_transfer(results):
    chain = results["facilitator.settle.valid-lands"].evidence.chain
    assert chain["settle.receipt_success"] is True
    [transfer] = chain["settle.receipt_transfers"]
    assert transfer["value"] == 1_000 and transfer["tx"] == chain["settle.transaction"].lower()
    assert chain["authorization_used"] is True and chain["payer_delta"] == -1_000


def test_a_refused_payment_is_judged_by_class_and_by_what_did_not_move(results):
    chain = results["facilitator.verify.recipient-mismatch"].evidence.chain
    assert chain["verify.reason_class"] == "recipient"
    assert chain["payer_transfers"] == [] and chain["authorization_used"] is False
    labels = [e.label for e in results["facilitator.verify.recipient-mismatch"].evidence.exchanges]
    assert labels == ["verify", "settle"]


def test_concurrency_cases_count_successes_and_transfers(results):
    same = results["facilitator.settle.concurrent-same"].evidence.chain
    assert same["successes"] == 1 and len(same["payer_transfers"]) == 1
    distinct = results["facilitator.settle.concurrent-distinct"].evidence.chain
    assert len(set(distinct["transactions"])) == 5


def test_a_cancelled_authorization_is_on_chain_before_the_settle(results):
    chain = results["facilitator.settle.cancelled-after-verify"].evidence.chain
    assert chain["cancelled"] is True and chain["payer_transfers"] == []
    assert chain["settle.reason_class"] == "nonce_used"


def test_fake_assets_really_exercise_a_revert_and_a_silent_success(results):
    reverted = results["facilitator.settle.reverted-not-success"].evidence.chain
    assert [s["success"] for s in reverted["settlement_transactions"].values()] == [False]
    silent = results["facilitator.settle.no-transfer-not-success"].evidence.chain
    assert list(silent["settlement_transactions"].values()) == [{"success": True, "transfers": 0}]
    assert reverted["settle.success"] is False and silent["settle.success"] is False
    assert (
        results["facilitator.settle.reverifies-before-sending"].evidence.chain["transactions_carrying_nonce"]
        == []
    )


def test_a_killed_settlement_case_names_the_failed_receipt():
    control = controls.load()["facilitator.mined-is-success"]
    report = runner.run(
        ROLE, control.build(), catalog.select(ROLE, include=["facilitator.settle.reverted-not-success"])
    )
    [result] = report.results
    assert result.outcome == "failed" and "receipt failed" in result.message
    assert result.evidence.chain["settle.success"] is True
    assert result.evidence.chain["settle.backed_by_transfer"] is False


def test_verify_read_only_is_judged_by_the_transactions_around_it(results):
    chain = results["facilitator.verify.read-only"].evidence.chain
    assert chain["transactions_after_verify"] == [] and chain["facilitator_transactions_sent"] == 0
    assert chain["authorization_used"] is False and chain["payer_delta"] == 0
    assert len(chain["nonce_transactions"]) == 1  # the settle that followed, once
    labels = [e.label for e in results["facilitator.verify.read-only"].evidence.exchanges]
    assert labels[-1] == "settle" and labels.count("settle") == 1


def _outcomes(control: str, case_ids: list[str]) -> dict[str, str]:
    report = runner.run(ROLE, controls.load()[control].build(), catalog.select(ROLE, include=case_ids))
    return {r.id: r.outcome for r in report.results}


def test_read_only_catches_what_does_not_move_funds_lets_through():
    # A verify that sends a transaction moving no token, or that remembers refused nonces, keeps the
    # older case green: the new one is what fails them.
    cases = ["facilitator.verify.does-not-move-funds", "facilitator.verify.read-only"]
    for control in ("facilitator.verify-sends-transaction", "facilitator.verify-remembers-refusals"):
        assert _outcomes(control, cases) == dict(zip(cases, ["passed", "failed"], strict=True)), control


def test_a_pending_answer_is_judged_by_its_hash_and_its_resend():
    report = runner.run(
        ROLE,
        controls.load()["facilitator.pending-rebroadcasts"].build(),
        catalog.select(ROLE, include=["facilitator.settle.pending-has-transaction"]),
    )
    [result] = report.results
    chain = result.evidence.chain
    assert result.outcome == "failed" and "broadcast 2 times" in result.message
    assert chain["settle.transaction"] == chain["nonce_transactions"][0]
    assert [e.label for e in result.evidence.exchanges] == ["settle", "settle resent"]
