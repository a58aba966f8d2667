"""Calibration of the server cases: the reference passes every one (v2 with the payment-identifier
extension required, v2 without it, v1 on a network v1 can name), each control fails every case it
claims to kill, every MUST case has a killer, and the evidence carries the deciding chain facts.
Also: the reference ResourceServer's payment-identifier extension, driven sans-IO."""

from __future__ import annotations

import json

import pytest

from tests.conformance.calibration import (
    DEFAULT_MECHANISMS,
    control_survivors,
    role_controls,
    unkilled_must_cases,
)
from x402sim.actors import BaseDriver, run
from x402sim.actors.messages import HttpRequest, HttpResponse
from x402sim.actors.server import PAYMENT_IDENTIFIER, ResourceServer
from x402sim.conformance import catalog, controls, reference, runner
from x402sim.conformance.forge import header_value
from x402sim.conformance.harness import HarnessOptions
from x402sim.conformance.server_controls import OnNetwork
from x402sim.protocol import PaymentRequired, SettleResponse, VerifyResponse, decode_header

ROLE = "server"
V1_ONLY = {"server.handshake.v1-body"}
V2_ONLY = {
    "server.handshake.base64-standard",
    "server.handshake.caip2-network",
    "server.handshake.v2-accepts-fields",
    "server.handshake.v2-required-fields",
    "server.payment.wrong-asset",
    "server.payment.eoa-asset",
    "server.payment.tampered-accepted",
    "server.payment.tampered-payto",
}
EXTENSION = {c.id for c in catalog.select(ROLE, include=["server.extensions"])} - {
    "server.extensions.extension-responses-not-forwarded"  # judged whatever the server declares
}
TRUST = {c.id for c in catalog.select(ROLE, include=["server.trust"])}  # skipped: not advertised
# The hung-facilitator cases wait on the facilitator bound: judged in the main reference run only.
HUNG = {c.id for c in catalog.select(ROLE, include=["server.facilitator.hung-*"])}
FACILITATOR_BOUND = 2.0  # FACILITATOR_TIMEOUT_SECONDS the targets get here: a hung case waits on it


def from_env(mode: str) -> reference.InProcessService:
    """The from-env reference server with ``PAYMENT_IDENTIFIER=mode``."""
    return reference.InProcessService(
        ROLE, lambda env: reference.reference_server({**env, "PAYMENT_IDENTIFIER": mode})[1]
    )


def options_for(target=None) -> runner.RunOptions:
    network = getattr(target, "network", "local")
    return runner.RunOptions(harness=HarnessOptions(network=network, facilitator_timeout=FACILITATOR_BOUND))


def problems(report, allowed_skips: set[str]) -> list[str]:
    return [
        f"{r.id} [{r.level}] {r.outcome}: {r.message}"
        for r in report.results
        if not (r.outcome == "passed" or (r.outcome == "skipped" and r.id in allowed_skips))
    ]


@pytest.fixture(scope="module")
def reference_report():
    """The whole catalog against the reference with the payment-identifier extension required, so
    that every case but the v1-only one is judged."""
    return runner.run(ROLE, from_env("required"), catalog.select(ROLE), options_for())


@pytest.fixture(scope="module")
def results(reference_report):
    return {r.id: r for r in reference_report.results}


EIP3009 = [catalog.DEFAULT_MECHANISM]  # the Permit2 cases are judged in the main reference run only


def test_the_catalog_covers_every_group_with_enough_cases():
    cases = catalog.select(ROLE, mechanisms=EIP3009)
    assert len(cases) >= 45
    assert {c.group for c in cases} == {
        "handshake",
        "payment",
        "replay",
        "settle",
        "headers",
        "extensions",
        "trust",
        "routes",
        "caching",
        "facilitator",
        "flow",
    }


def test_the_reference_passes_every_case(reference_report):
    bad = problems(reference_report, V1_ONLY | TRUST)
    assert not bad, "\n".join(bad)
    assert {r.id for r in reference_report.results} == {c.id for c in catalog.select(ROLE)}
    skipped = {r.id for r in reference_report.results if r.outcome == "skipped"}
    assert skipped == V1_ONLY | TRUST


def test_the_reference_without_the_extension_passes_and_skips_only_extension_cases():
    cases = catalog.select(ROLE, exclude=HUNG, mechanisms=EIP3009)
    report = runner.run(ROLE, reference.reference_target(ROLE), cases, options_for())
    bad = problems(report, V1_ONLY | EXTENSION | TRUST)
    assert not bad, "\n".join(bad)


def test_the_reference_with_an_optional_identifier_judges_all_but_the_required_case():
    report = runner.run(ROLE, from_env("optional"), catalog.select(ROLE, include=["server.extensions"]))
    skipped = {r.id for r in report.results if r.outcome == "skipped"}
    assert skipped == {"server.extensions.payment-id-required"}
    assert not problems(report, skipped)


def test_a_v1_reference_passes_every_case_that_applies_to_v1():
    target = OnNetwork(
        ROLE, lambda env: reference.reference_server(env, x402_version=1)[1], network="base-sepolia"
    )
    cases = catalog.select(ROLE, exclude=HUNG, mechanisms=EIP3009)
    report = runner.run(ROLE, target, cases, options_for(target))
    bad = problems(report, V2_ONLY | EXTENSION | TRUST)
    assert not bad, "\n".join(bad)
    assert report.network == "eip155:84532"
    assert next(r for r in report.results if r.id == "server.handshake.v1-body").outcome == "passed"


@pytest.mark.parametrize(
    "control", role_controls(ROLE, trust=False, mechanisms=DEFAULT_MECHANISMS), ids=lambda c: c.name
)
def test_each_control_fails_every_case_it_claims_to_kill(control):
    survivors = control_survivors(control, options_for(control.build()))
    assert not survivors, f"{control.name} did not fail:\n" + "\n".join(survivors)


def test_every_must_case_has_a_killer():
    assert not unkilled_must_cases(ROLE)


# -- the evidence carries what decided -------------------------------------------------------------


def test_a_refused_payment_is_judged_by_what_did_not_move(results):
    for case_id in ("server.payment.high-s-signature", "server.payment.tampered-accepted"):
        chain = results[case_id].evidence.chain
        assert chain["status"] == 402
        assert chain["payee_delta"] == 0 and chain["transfers"] == []
        assert chain["authorization_used"] is False


def test_the_concurrent_replay_really_races_and_is_judged_on_chain(results):
    result = results["server.replay.concurrent"]
    chain = result.evidence.chain
    assert sorted(chain["statuses"]) == [200, 402, 402, 402, 402]
    [transfer] = chain["transfers"]
    assert transfer["value"] == 1_000
    assert chain["served_transactions"] == [transfer["tx"]]
    # every copy reached /verify before any was settled: the losers were refused at /settle
    errors = [
        e.response.x402["payment-required"]["error"]
        for e in result.evidence.exchanges
        if e.label.startswith("copy") and e.response.status == 402
    ]
    assert errors == ["duplicate_settlement"] * 4


def test_the_receipt_named_by_payment_response_is_checked_on_chain(results):
    chain = results["server.settle.response-transaction"].evidence.chain
    assert chain["receipt.success"] is True
    assert [t["value"] for t in chain["receipt.transfers"]] == [1_000]


def test_settlement_troubles_are_judged_by_calls_and_transfers(results):
    assert results["server.settle.handler-error-not-settled"].evidence.chain["settle_calls"] == 0
    pending = results["server.settle.pending-not-served"].evidence.chain
    assert pending["status"] == 402 and len(pending["payment.transfers"]) == 1
    redirect = results["server.settle.redirect-settled"].evidence.chain
    assert redirect["status"] == 303 and [t["value"] for t in redirect["payment.transfers"]] == [1_000]
    named = results["server.settle.pending-names-transaction"].evidence.chain
    assert named["payment_response"]["transaction"] == named["facilitator.transaction"]
    assert results["server.settle.lost-answer-not-resent"].evidence.chain["settle_calls"] == 1


def test_an_upfront_reference_advertises_its_flow():
    target = reference.reference_target(ROLE, upfront=True)
    report = runner.run(ROLE, target, catalog.select(ROLE, include=["server.flow.advertised"]), options_for())
    [result] = report.results
    assert result.outcome == "passed", result.message
    assert result.evidence.chain["failing.flow"] == "upfront"
    assert len(result.evidence.chain["failing.transfers"]) == 1  # settled before its handler failed


def test_path_spellings_are_sent_as_spelled_and_judged_paid_and_unpaid(results):
    chain = results["server.routes.dot-segments-not-free"].evidence.chain
    assert set(chain["unpaid_statuses"]) == {
        "/./protected",
        "/x402-probe/../protected",
        "/protected/.",
        "/protected/x402-probe/..",
    }
    for spelling in chain["unpaid_statuses"]:
        paid = chain[f"{spelling}.paid"]
        charged = (paid["transfers"], paid["payee_delta"], paid["used"])
        assert charged == ((1, 1_000, True) if 200 <= paid["status"] < 300 else (0, 0, False))


def test_a_hung_facilitator_is_waited_for_within_the_bound_and_charges_nothing(results):
    chain = results["server.facilitator.hung-not-served"].evidence.chain
    assert chain["answered_after_seconds"] < FACILITATOR_BOUND + 3
    assert chain["status"] >= 400 and chain["transfers"] == [] and chain["authorization_used"] is False
    assert chain["facilitator_quiet"] is True and chain["verify_calls"] == 1


def test_a_pending_settlement_is_resent_once_and_charged_once(results):
    chain = results["server.settle.pending-retried-once"].evidence.chain
    assert chain["settle_calls"] == 2 and len(chain["payment.transfers"]) == 1


def test_a_killed_case_names_the_free_service():
    control = controls.load()["server.serves-replays"]
    report = runner.run(
        ROLE, control.build(), catalog.select(ROLE, include=["server.replay.after-settlement"])
    )
    [result] = report.results
    assert result.outcome == "failed" and "replay was served" in result.message
    assert result.evidence.chain["replay.status"] == 200 and result.evidence.chain["replay.transfers"] == []


# -- the reference ResourceServer's payment-identifier extension (sans-IO) -----------------------

ASSET = "0x" + "11" * 20
PAYEE = "0x" + "22" * 20
PAYER = "0x" + "33" * 20


class Facilitator(BaseDriver):
    """Answers the server's effects: verify says ``valid``, settle succeeds; records what it was asked."""

    world = "stub facilitator"

    def __init__(self, valid: bool = True) -> None:
        self.valid = valid
        self.effects: list[str] = []

    def verify(self, effect):
        self.effects.append("Verify")
        return VerifyResponse(is_valid=self.valid, invalid_reason=None if self.valid else "x", payer=PAYER)

    def settle(self, effect):
        self.effects.append("Settle")
        return SettleResponse(success=True, transaction="0x" + "ab" * 32, network="eip155:31337", payer=PAYER)

    def handle(self, effect):
        self.effects.append("Handle")
        return HttpResponse.of_json(200, {"served": len(self.effects)})


def server(mode: str) -> ResourceServer:
    return ResourceServer.with_prices(
        {"GET /r": 1_000},
        network="eip155:31337",
        asset=ASSET,
        asset_name="USD Coin",
        asset_version="2",
        pay_to=PAYEE,
        payment_identifier=mode,
    )


def payment(role: ResourceServer, nonce: int, payment_id: str | None = None, path: str = "/r") -> HttpRequest:
    offer = role.requirements(role.routes["GET /r"]).to_wire()
    document = {
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "signature": "0x" + "00" * 65,
            "authorization": {"from": PAYER, "nonce": f"0x{nonce:064x}"},
        },
    }
    if payment_id is not None:
        document["extensions"] = {PAYMENT_IDENTIFIER: {"info": {"required": False, "id": payment_id}}}
    return HttpRequest("GET", path, (("PAYMENT-SIGNATURE", header_value(document)),))


def test_the_402_declares_the_extension_only_when_it_is_on():
    for mode, required in (("optional", False), ("required", True)):
        answer = run(server(mode).handle(HttpRequest("GET", "/r")), Facilitator())
        challenge = decode_header(answer.header("PAYMENT-REQUIRED"), PaymentRequired)
        declared = challenge.extensions[PAYMENT_IDENTIFIER]
        assert declared["info"] == {"required": required} and declared["schema"]["type"] == "object"
    plain = run(server("off").handle(HttpRequest("GET", "/r")), Facilitator())
    assert decode_header(plain.header("PAYMENT-REQUIRED"), PaymentRequired).extensions is None
    with pytest.raises(ValueError, match="payment_identifier"):
        server("sometimes")


def test_the_same_id_and_payment_get_the_stored_answer_without_a_second_settlement():
    role, facilitator = server("optional"), Facilitator()
    first = run(role.handle(payment(role, 1, "pay_0123456789abcdef")), facilitator)
    assert first.status == 200 and facilitator.effects == ["Verify", "Handle", "Settle"]
    again = run(role.handle(payment(role, 1, "pay_0123456789abcdef")), facilitator)
    assert again is first and facilitator.effects == ["Verify", "Handle", "Settle"]
    assert role.stats["identifier_cached"] == 1


def test_the_same_id_with_another_payment_or_route_is_a_conflict():
    role = server("optional")
    role.routes = {**role.routes, "GET /s": role.routes["GET /r"]}
    assert run(role.handle(payment(role, 1, "pay_0123456789abcdef")), Facilitator()).status == 200
    assert run(role.handle(payment(role, 2, "pay_0123456789abcdef")), Facilitator()).status == 409
    other_route = payment(role, 1, "pay_0123456789abcdef", path="/s")
    assert run(role.handle(other_route), Facilitator()).status == 409


def test_an_id_in_flight_is_a_conflict_and_a_refused_payment_frees_its_id():
    role = server("optional")
    steps = role.handle(payment(role, 1, "pay_0123456789abcdef"))
    assert type(next(steps)).__name__ == "Verify"  # the first use is now waiting for /verify
    assert run(role.handle(payment(role, 1, "pay_0123456789abcdef")), Facilitator()).status == 409
    with pytest.raises(StopIteration) as refused:
        steps.send(VerifyResponse(is_valid=False, invalid_reason="x"))
    assert refused.value.value.status == 402
    retried = run(role.handle(payment(role, 2, "pay_0123456789abcdef")), Facilitator())
    assert retried.status == 200


def test_a_missing_required_id_or_a_malformed_id_is_a_bad_request():
    required = server("required")
    answer = run(required.handle(payment(required, 1)), Facilitator())
    assert answer.status == 400 and "requires a payment identifier" in json.loads(answer.body)["error"]
    optional = server("optional")
    assert run(optional.handle(payment(optional, 1)), Facilitator()).status == 200
    for bad in ("short", "has spaces in it!!", "x" * 129):
        assert run(optional.handle(payment(optional, 2, bad)), Facilitator()).status == 400
