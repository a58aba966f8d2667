"""Calibration of the client cases over MCP: the reference paying MCP client passes every client case
that runs over MCP (the harness's server carried as a paid tool server on streamable HTTP), the
HTTP-only ones reported skipped with their reason, and each MCP client control fails its case."""

from __future__ import annotations

import pytest

from tests.conformance.calibration import not_failed, role_controls
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.carriers import not_over
from x402sim.conformance.harness import Harness
from x402sim.conformance.kits import harness_apps
from x402sim.conformance.mcp_kit import mcp_pay_from_env

ROLE = "client"
MCP_CASES = {c.id for c in catalog.select(ROLE, include=["client.mcp"], transport="mcp")}
MCP_CONTROLS = [c for c in role_controls(ROLE, transport="mcp") if set(c.kills) <= MCP_CASES]
# skipped whatever the transport: the reference client advertises no ERC-8004, and v1 needs a v1 network
NOT_ADVERTISED = {
    "client.pays.v1-header",
    "client.trust.payto-is-agent-wallet",
    "client.trust.unregistered-agent",
}


def options() -> runner.RunOptions:
    return runner.RunOptions(transport="mcp")


@pytest.fixture(scope="module")
def harness():
    started = Harness(options().harness)
    started.start(extra_apps=harness_apps(ROLE, started))
    yield started
    started.stop()


def test_the_reference_mcp_client_passes_every_case_that_runs_over_mcp(harness) -> None:
    target = reference.InProcessClient(mcp_pay_from_env, name="x402sim reference (MCP)")
    cases = catalog.select(ROLE, transport="mcp")
    report = runner.run(ROLE, target, cases, options(), harness)
    skipped = {r.id for r in report.results if r.outcome == "skipped"}
    http_only = {c.id for c in cases if not_over(c, "mcp")}
    assert skipped - NOT_ADVERTISED == http_only - NOT_ADVERTISED
    bad = [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome not in ("passed", "skipped")
    ]
    assert not bad, bad
    passed = {r.id for r in report.results if r.outcome == "passed"}
    assert passed >= MCP_CASES
    assert {"pays", "signs", "refuses", "retries", "permit2", "upto", "batch", "mcp"} <= {
        case_id.split(".")[1] for case_id in passed
    }


@pytest.mark.parametrize("control", MCP_CONTROLS, ids=lambda c: c.name)
def test_each_mcp_client_control_fails_its_case(control, harness) -> None:
    cases = catalog.select(include=control.kills, transport="mcp")
    report = runner.run(ROLE, control.build(), cases, options(), harness)
    survivors = not_failed(report)
    assert not survivors, survivors


def test_every_mcp_client_must_case_has_a_control() -> None:
    must = {c.id for c in catalog.select(ROLE, include=["client.mcp"], levels=["MUST"], transport="mcp")}
    assert must and must <= {k for c in MCP_CONTROLS for k in c.kills}
