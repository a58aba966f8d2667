"""Calibration of the trust cases (ERC-8004, AP2 mandates, Web Bot Auth): the trust-enabled reference
server and client pass every one; each trust control fails every case it claims to kill, and for the
reason it was built for (not a failed precondition); targets that advertise nothing skip them with
a reason; AP2 is also detected from the 402; and the trust material reaches targets (environment,
the key directory on loopback, the pytest plugin, the CLI's built-in targets)."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from tests.conformance.calibration import role_controls
from x402sim.cli import app
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps, trust_kit
from x402sim.conformance.server_controls import editing_header
from x402sim.conformance.trust import AP2, WEB_BOT_AUTH, TrustKit, features

SERVER_TRUST = [c.id for c in catalog.select("server", include=["server.trust"])]
CLIENT_TRUST = [c.id for c in catalog.select("client", include=["client.trust"])]
MANDATE_CASES = [c for c in SERVER_TRUST if ".mandate-" in c]
TRUST_CONTROLS = role_controls("server", trust=True) + role_controls("client", trust=True)


def trust_report(role: str, target=None):
    target = target or reference.reference_target(role, trust=True)
    return runner.run(role, target, catalog.select(role, include=[f"{role}.trust"]))


def not_passed(report) -> list[str]:
    return [f"{r.id} {r.outcome}: {r.message}" for r in report.results if r.outcome != "passed"]


@pytest.fixture(scope="module")
def server_report():
    return trust_report("server")


def test_the_trust_catalog():
    assert len(SERVER_TRUST) >= 10 and len(CLIENT_TRUST) >= 2
    levels = {c.id: c.level for c in catalog.select(include=["server.trust", "client.trust"])}
    for must in (
        "client.trust.payto-is-agent-wallet",
        "server.trust.mandate-amount",
        "server.trust.mandate-payee",
        "server.trust.mandate-chain",
        "server.trust.mandate-nonce",
        "server.trust.signature-required",
        "server.trust.signature-valid",
    ):
        assert levels[must] == "MUST", must


def test_the_trust_reference_server_passes_every_trust_case(server_report):
    assert not not_passed(server_report), "\n".join(not_passed(server_report))
    assert {r.id for r in server_report.results} == set(SERVER_TRUST)


def test_the_trust_reference_client_passes_every_trust_case():
    report = trust_report("client")
    assert not not_passed(report), "\n".join(not_passed(report))


@pytest.mark.parametrize("role", ["server", "client"])
def test_a_trust_enabled_reference_passes_the_whole_catalog(role):
    """The harness pays the ordinary cases under valid mandates and signs their requests, as a
    compliant agent would, so enforcing trust costs a target nothing elsewhere in the catalog."""
    target = reference.reference_target(role, trust=True)
    # the hung-facilitator cases wait FACILITATOR_TIMEOUT_SECONDS: 2 s instead of 5, as elsewhere
    options = runner.RunOptions(harness=HarnessOptions(facilitator_timeout=2.0))
    report = runner.run(role, target, catalog.select(role, mechanisms=target.mechanisms), options)
    failed = [f"{r.id}: {r.message}" for r in report.results if r.outcome == "failed"]
    assert not failed, "\n".join(failed)
    passed = sum(r.outcome == "passed" for r in report.results)
    assert passed >= 0.9 * len(report.results), [r.id for r in report.results if r.outcome != "passed"]


@pytest.mark.parametrize("control", TRUST_CONTROLS, ids=lambda c: c.name)
def test_each_trust_control_fails_what_it_claims_for_its_own_reason(control):
    """A control fails its cases past their positive counterpart: a control that refused everything
    would fail them too, on the precondition, and prove nothing."""
    report = runner.run(control.role, control.build(), catalog.select(include=control.kills))
    assert {r.id for r in report.results} == set(control.kills)
    survivors = [f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome != "failed"]
    assert not survivors, f"{control.name} did not fail:\n" + "\n".join(survivors)
    wrong = [f"{r.id}: {r.message}" for r in report.results if "precondition" in r.message]
    assert not wrong, f"{control.name} failed on a precondition, not on its rule:\n" + "\n".join(wrong)


def test_every_must_trust_case_has_a_killer():
    killed = {case_id for c in TRUST_CONTROLS for case_id in c.kills}
    musts = [c.id for c in catalog.select(include=["server.trust", "client.trust"], levels=["MUST"])]
    assert not [c for c in musts if c not in killed]


def test_targets_that_advertise_nothing_skip_the_trust_cases_with_a_reason():
    for role in ("server", "client"):
        report = trust_report(role, reference.reference_target(role))
        assert {r.outcome for r in report.results} == {"skipped"}
        for r in report.results:
            assert "--trust" in r.message or "ap2" in r.message, r.message


def test_mandate_cases_run_when_the_402_declares_ap2():
    """A server configured with no --trust, but declaring ``ap2`` in its 402, gets the mandate cases;
    the signature cases stay skipped (Web Bot Auth is configuration only)."""

    def declare_ap2(document: dict) -> dict:
        extensions = {**(document.get("extensions") or {}), AP2: {"info": {}}}
        return {**document, "extensions": extensions}

    def build(env):
        _, asgi = reference.trust_server(env, crawl=reference.crawl_policy(env, block_unsigned=False))
        return editing_header("PAYMENT-REQUIRED", declare_ap2)(asgi)

    report = trust_report("server", reference.InProcessService("server", build))
    outcomes = {r.id: r.outcome for r in report.results}
    assert {outcomes[c] for c in MANDATE_CASES} == {"passed"}, not_passed(report)
    assert {o for c, o in outcomes.items() if ".signature-" in c} == {"skipped"}


def test_refusals_are_judged_on_chain_and_name_their_reason(server_report):
    results = {r.id: r for r in server_report.results}
    chain = results["server.trust.mandate-amount"].evidence.chain
    assert chain["valid.status"] == 200 and len(chain["valid.transfers"]) == 1
    for name in ("over_range", "over_closed_amount"):
        assert chain[f"{name}.transfers"] == [] and chain[f"{name}.payee_delta"] == 0
        assert chain[f"{name}.authorization_used"] is False
    assert "amount_out_of_range" in chain["over_range.error"]
    assert "amount_mismatch" in chain["over_closed_amount.error"]
    nonce = results["server.trust.mandate-nonce"].evidence.chain
    assert (
        nonce["nonce.carried_chain"] != nonce["nonce.signed"] and "nonce_mismatch" in nonce["unbound.error"]
    )
    signed = results["server.trust.signature-required"].evidence.chain
    assert signed["signed.status"] == 402 and signed["unsigned.status"] == 403
    assert signed["unsigned_paid.transfers"] == []
    exchange = results["server.trust.signature-valid"].evidence.exchanges[0]
    assert "signature-input" in exchange.request.headers  # the harness's own requests are signed


def test_the_client_case_pays_the_wallet_not_the_owner():
    report = trust_report("client")
    chain = next(r for r in report.results if r.id == "client.trust.payto-is-agent-wallet").evidence.chain
    agent = chain["agent"]
    assert agent["owner"] != agent["agentWallet"]
    assert chain["other_payto.paid_requests"] == 0 and chain["other_payto.transfers"] == []
    [transfer] = chain["agent_wallet.transfers"]
    assert transfer["to"] == agent["agentWallet"]


def test_targets_get_the_trust_material_and_the_harness_serves_the_key_directory():
    from x402sim.trust.mandates import public_jwk
    from x402sim.trust.signatures import DIRECTORY_PATH, KeyDirectory, keyid_of

    harness = Harness()
    harness.start(extra_apps=harness_apps("server", harness))
    try:
        kit = trust_kit(harness)
        env = runner.target_env("server", harness, runner.RunOptions(), payee="0x" + "11" * 20, trust_kit=kit)
        assert json.loads(env["AP2_TRUSTED_USER_JWK"]) == public_jwk(kit.user_key)
        served = httpx.get(env["WEB_BOT_AUTH_DIRECTORY_URL"] + DIRECTORY_PATH).json()
        assert served == json.loads(env["WEB_BOT_AUTH_JWKS"])
        assert keyid_of(kit.bot_key) in KeyDirectory.from_jwks(served)
        client_env = runner.target_env("client", harness, runner.RunOptions(), trust_kit=kit)
        assert client_env["ERC8004_IDENTITY_REGISTRY"].startswith(f"eip155:{harness.chain_id}:0x8004")
    finally:
        harness.stop()
    # the keys follow the seed, as the harness's payer keys do
    assert TrustKit(0).jwks() == TrustKit(0).jwks() != TrustKit(1).jwks()
    assert features(["all"]) == {"erc8004", AP2, WEB_BOT_AUTH}


def test_the_plugin_checks_a_trust_enabled_app(x402_services):
    trusted = x402_services.reference_app(trust=True)
    report = x402_services.check_server(trusted, cases=["server.trust"], trust=["ap2", "web-bot-auth"])
    assert not not_passed(report), not_passed(report)
    x402_services.assert_conforms(report)


def test_the_cli_lists_and_runs_the_trust_cases():
    cli = CliRunner()
    listed = cli.invoke(app, ["conformance", "list", "--json", "--controls", "--cases", "server.trust"])
    rows = json.loads(listed.output)
    assert {r["id"] for r in rows} == set(SERVER_TRUST) and all(r["controls"] for r in rows)
    args = ["conformance", "server", "--builtin", "reference-trust", "--cases", "server.trust.signature-*"]
    result = cli.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "4 passed, 0 failed" in result.output
    material = json.loads(cli.invoke(app, ["conformance", "trust-material", "--seed", "3"]).output)
    assert material["AP2_TRUSTED_USER_JWK"] == TrustKit(3).user_jwk()
    assert material["WEB_BOT_AUTH_JWKS"] == TrustKit(3).jwks()
