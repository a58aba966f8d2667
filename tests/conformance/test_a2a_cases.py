"""Calibration of the catalog over A2A: the reference paid agent passes every case that runs over A2A
(the HTTP-only and MCP-only ones reported skipped with their reason), each A2A control fails its
case, and server controls written for HTTP still fail their transport-independent cases when carried
over A2A. One harness per module, every agent in process (httpx's ASGI transport)."""

from __future__ import annotations

import pytest

from tests.conformance.calibration import (
    CARRIED_HTTP_CONTROLS,
    carried_control_survivors,
    carried_options,
    not_failed,
    outcomes,
    role_controls,
    started_harness,
)
from x402sim.conformance import catalog, runner
from x402sim.conformance.a2a_kit import A2aBridge, A2aService, reference_agent_app
from x402sim.conformance.carriers import not_over, transports_of

ROLE = "server"
A2A_CASES = {c.id for c in catalog.select(ROLE, include=["server.a2a"], transport="a2a")}
A2A_CONTROLS = [c for c in role_controls(ROLE, transport="a2a") if set(c.kills) <= A2A_CASES]


def options() -> runner.RunOptions:
    return carried_options("a2a")


@pytest.fixture(scope="module")
def harness():
    started = started_harness(ROLE, options())
    yield started
    started.stop()


def test_the_reference_passes_every_case_that_runs_over_a2a(harness) -> None:
    target = A2aService(lambda env: reference_agent_app({**env, "PAYMENT_IDENTIFIER": "required"}))
    report = runner.run(ROLE, target, catalog.select(ROLE, transport="a2a"), options(), harness)
    by_outcome = outcomes(report)
    unrun = {c.id for c in catalog.select(ROLE, transport="a2a") if not_over(c, "a2a")}
    assert by_outcome.get("skipped", set()) == unrun
    assert set(by_outcome) == {"passed", "skipped"}, [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome not in ("passed", "skipped")
    ]
    assert by_outcome["passed"] >= A2A_CASES
    for result in report.results:
        if result.outcome == "skipped":
            assert result.message.startswith("not over a2a: ")
    judged = {r.id.split(".")[1] for r in report.results if r.outcome == "passed"}
    assert {"replay", "payment", "settle", "handshake", "permit2", "upto", "batch", "a2a"} <= judged


@pytest.mark.parametrize("control", A2A_CONTROLS, ids=lambda c: c.name)
def test_each_a2a_control_fails_its_case(control, harness) -> None:
    cases = catalog.select(include=control.kills, transport="a2a")
    survivors = not_failed(runner.run(ROLE, control.build(), cases, options(), harness))
    assert not survivors, survivors


@pytest.mark.parametrize("name", CARRIED_HTTP_CONTROLS)
def test_http_controls_carried_over_a2a_fail_their_cases(name, harness) -> None:
    def target_of(build, name):
        return A2aService(build, name=name, kind="control")

    survivors = carried_control_survivors(name, "a2a", target_of, harness)
    assert not survivors, survivors


def test_every_a2a_must_case_has_an_a2a_control() -> None:
    killed = {k for c in A2A_CONTROLS for k in c.kills}
    must = {c.id for c in catalog.select(ROLE, include=["server.a2a"], levels=["MUST"], transport="a2a")}
    assert must and must <= killed


def test_which_cases_run_over_a2a() -> None:
    everything = catalog.load().values()
    # the transport-independent cases run over all three; the MCP and A2A cases over their own only
    assert all(transports_of(c) == ("a2a",) for c in everything if c.id in A2A_CASES)
    assert not A2A_CASES & {c.id for c in catalog.select(ROLE)}
    assert not_over(catalog.CATALOG["server.replay.concurrent"], "a2a") is None
    assert not_over(catalog.CATALOG["server.mcp.payment-required"], "a2a") == "a case of mcp only"
    assert "HTTP only" in (not_over(catalog.CATALOG["server.routes.case-not-free"], "a2a") or "")
    assert all(not_over(c, "a2a") for c in everything if c.role == "facilitator")


def test_the_bridge_reads_failed_tasks_by_their_payment_error() -> None:
    import httpx

    def failed(error: str | None) -> dict:
        meta = {"x402.payment.status": "payment-failed"} if error is not None else {}
        if error:
            meta["x402.payment.error"] = error
        return {"kind": "task", "id": "t", "status": {"state": "failed", "message": {"metadata": meta}}}

    request = httpx.Request("GET", "http://agent.a2a/protected")
    statuses = [
        A2aBridge.response({"task": failed(e)}, request).status_code
        for e in ("invalid_payload", "http_502", "http_99", "boom", None)
    ]
    assert statuses == [400, 502, 500, 500, 500]
    assert A2aBridge.response({"error": {"code": -32603, "message": "x"}}, request).status_code == 500
    assert A2aBridge.response({"error": {"code": -32602, "message": "x"}}, request).status_code == 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--transport", "a2a", "--builtin", "reference-trust"], "over A2A: expected reference"),
        (["client", "--transport", "a2a", "--builtin", "reference-trust"], "over A2A: expected reference"),
        (["facilitator", "--transport", "a2a", "--builtin", "reference"], "the facilitator API is HTTP"),
    ],
)
def test_the_cli_refuses_what_it_cannot_run_over_a2a(args, message) -> None:
    from typer.testing import CliRunner

    from x402sim.conformance import cli as conformance_cli

    result = CliRunner().invoke(conformance_cli.app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_the_reference_as_an_agent_command_passes_the_a2a_cases(harness) -> None:
    import sys

    from x402sim.conformance.a2a_kit import A2aHttpCommand

    target = A2aHttpCommand("server", f"{sys.executable} -m x402sim.conformance.a2a_reference", name="agent")
    cases = catalog.select(include=["server.a2a", "server.replay.after-settlement"], transport="a2a")
    report = runner.run(ROLE, target, cases, options(), harness)
    assert {r.outcome for r in report.results} == {"passed"}, [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results
    ]
