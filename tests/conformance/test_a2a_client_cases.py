"""Calibration of the client cases over A2A: the reference paying client agent passes every client case
that runs over A2A (the harness's server carried as a paid agent on loopback), the HTTP-only and
MCP-only ones reported skipped with their reason."""

from __future__ import annotations

from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.a2a_kit import a2a_pay_from_env
from x402sim.conformance.carriers import not_over

ROLE = "client"
# skipped whatever the transport: the reference client advertises no ERC-8004, and v1 needs a v1 network
NOT_ADVERTISED = {
    "client.pays.v1-header",
    "client.trust.payto-is-agent-wallet",
    "client.trust.unregistered-agent",
}


def test_the_reference_a2a_client_passes_every_case_that_runs_over_a2a() -> None:
    target = reference.InProcessClient(a2a_pay_from_env, name="x402sim reference (A2A)")
    cases = catalog.select(ROLE, transport="a2a")
    report = runner.run(ROLE, target, cases, runner.RunOptions(transport="a2a"))
    skipped = {r.id for r in report.results if r.outcome == "skipped"}
    unrun = {c.id for c in cases if not_over(c, "a2a")}
    assert skipped - NOT_ADVERTISED == unrun - NOT_ADVERTISED
    bad = [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome not in ("passed", "skipped")
    ]
    assert not bad, bad
    passed = {r.id.split(".")[1] for r in report.results if r.outcome == "passed"}
    assert {"pays", "signs", "refuses", "retries", "permit2", "upto", "batch"} <= passed
