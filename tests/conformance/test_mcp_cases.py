"""Calibration of the catalog over MCP: the reference tool server passes every case that runs over MCP
(the HTTP-only ones reported skipped with their reason), each MCP control fails its case, server
controls written for HTTP still fail their transport-independent cases when carried over MCP, and
the reference as a stdio command passes the MCP cases. In-memory MCP sessions, one harness per
module, one subprocess."""

from __future__ import annotations

import fnmatch
import json
import sys

import pytest
from typer.testing import CliRunner

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
from x402sim.conformance import cli as conformance_cli
from x402sim.conformance.carriers import HTTP_ONLY, not_over, transports_of
from x402sim.conformance.config import load_config
from x402sim.conformance.mcp_kit import (
    McpService,
    McpStdioCommand,
    reference_tools,
    sample_arguments,
    tool_name,
)
from x402sim.conformance.targets import TargetError

ROLE = "server"
MCP_CASES = {c.id for c in catalog.select(ROLE, include=["server.mcp"], transport="mcp")}
MCP_CLIENT_CASES = {c.id for c in catalog.select("client", include=["client.mcp"], transport="mcp")}
# Server controls written for HTTP, each carried over MCP against the transport-independent cases it
# kills: replay, the payee, the amount, a lost settlement answer.
MCP_CONTROLS = [c for c in role_controls(ROLE, transport="mcp") if set(c.kills) <= MCP_CASES]


def options() -> runner.RunOptions:
    return carried_options("mcp")


@pytest.fixture(scope="module")
def harness():
    started = started_harness(ROLE, options())
    yield started
    started.stop()


def test_the_reference_passes_every_case_that_runs_over_mcp(harness) -> None:
    # the payment-identifier extension required, so that its declaration is judged too
    target = McpService(lambda env: reference_tools({**env, "PAYMENT_IDENTIFIER": "required"}))
    report = runner.run(ROLE, target, catalog.select(ROLE, transport="mcp"), options(), harness)
    by_outcome = outcomes(report)
    http_only = {c.id for c in catalog.select(ROLE, transport="mcp") if not_over(c, "mcp")}
    a2a_only = {c.id for c in catalog.select(ROLE, transport="mcp") if transports_of(c) == ("a2a",)}
    assert by_outcome.get("skipped", set()) == http_only
    assert by_outcome["passed"] >= MCP_CASES
    assert set(by_outcome) == {"passed", "skipped"}, [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome not in ("passed", "skipped")
    ]
    for result in report.results:
        if result.outcome == "skipped":
            prefix = (
                "not over mcp: a case of a2a only" if result.id in a2a_only else "not over mcp: HTTP only: "
            )
            assert result.message.startswith(prefix)
    # the transport-independent groups are judged, not skipped
    judged = {r.id.split(".")[1] for r in report.results if r.outcome == "passed"}
    assert {"replay", "payment", "settle", "handshake", "permit2", "upto", "batch", "mcp"} <= judged


@pytest.mark.parametrize("control", MCP_CONTROLS, ids=lambda c: c.name)
def test_each_mcp_control_fails_its_case(control, harness) -> None:
    cases = catalog.select(include=control.kills, transport="mcp")
    survivors = not_failed(runner.run(ROLE, control.build(), cases, options(), harness))
    assert not survivors, survivors


@pytest.mark.parametrize("name", CARRIED_HTTP_CONTROLS)
def test_http_controls_carried_over_mcp_fail_their_cases(name, harness) -> None:
    def target_of(build, name):
        return McpService(build, name=name, kind="control")

    survivors = carried_control_survivors(name, "mcp", target_of, harness)
    assert not survivors, survivors


def test_every_mcp_must_case_has_an_mcp_control() -> None:
    killed = {k for c in MCP_CONTROLS for k in c.kills}
    must = {c.id for c in catalog.select(ROLE, include=["server.mcp"], levels=["MUST"], transport="mcp")}
    assert must and must <= killed


def test_the_reference_as_a_stdio_command_passes_the_mcp_cases(harness) -> None:
    target = McpStdioCommand(f"{sys.executable} -m x402sim.conformance.mcp_reference", name="stdio reference")
    cases = catalog.select(include=["server.mcp", "server.replay.after-settlement"], transport="mcp")
    report = runner.run(ROLE, target, cases, options(), harness)
    assert {r.outcome for r in report.results} == {"passed"}, [
        f"{r.id}: {r.outcome} {r.message}" for r in report.results
    ]


def test_which_cases_run_over_which_transport() -> None:
    everything = catalog.load().values()
    # every HTTP-only pattern names some case; every case runs over HTTP but the MCP ones
    for pattern in HTTP_ONLY:
        assert any(
            fnmatch.fnmatchcase(c.id, pattern) or c.id.startswith(pattern + ".") for c in everything
        ), pattern
    a2a_cases = {c.id for c in everything if transports_of(c) == ("a2a",)}
    assert {
        c.id for c in everything if "http" not in transports_of(c)
    } == MCP_CASES | MCP_CLIENT_CASES | a2a_cases
    assert all(transports_of(c) == ("mcp",) for c in everything if c.id in MCP_CASES | MCP_CLIENT_CASES)
    # an HTTP run leaves the MCP cases out; an MCP run keeps every case, reporting the HTTP-only skipped
    assert not MCP_CASES & {c.id for c in catalog.select(ROLE)}
    a2a_server = {c for c in a2a_cases if c.startswith(ROLE + ".")}
    assert len(catalog.select(ROLE, transport="mcp")) == len(catalog.select(ROLE)) + len(
        MCP_CASES | a2a_server
    )
    facilitator = [c for c in everything if c.role == "facilitator"]
    assert all(not_over(c, "mcp") for c in facilitator)
    assert not_over(catalog.CATALOG["server.replay.concurrent"], "mcp") is None
    assert "HTTP only" in (not_over(catalog.CATALOG["server.routes.case-not-free"], "mcp") or "")


def test_a_facilitator_is_not_run_over_mcp() -> None:
    with pytest.raises(TargetError):
        runner.run("facilitator", None, [], runner.RunOptions(transport="mcp"))


def test_a_tool_is_named_by_its_path() -> None:
    assert tool_name("/protected?charge=5") == "protected"
    assert tool_name("/get_weather") == "get_weather"


def test_the_bridge_fills_the_arguments_a_tool_requires() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "days", "unit"],
    }
    assert sample_arguments(schema) == {"city": "x402sim", "days": 1, "unit": "C"}
    assert sample_arguments({"type": "object"}) == {}


def test_an_official_mcp_config_names_tools_and_its_transport(tmp_path) -> None:
    config = tmp_path / "test.config.json"
    config.write_text(
        json.dumps(
            {
                "name": "mcp-python",
                "transport": "mcp",
                "endpoints": [
                    {"path": "get_weather", "method": "tool", "requiresPayment": True},
                    {"path": "/health", "method": "GET", "health": True},
                ],
            }
        )
    )
    loaded = load_config(config)
    assert loaded.transport == "mcp"
    assert [tool_name(e.path) for e in loaded.endpoints] == ["get_weather"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--transport", "smtp", "--builtin", "reference"], "unknown transport 'smtp'"),
        (["facilitator", "--transport", "mcp", "--builtin", "reference"], "the facilitator API is HTTP"),
        (["server", "--transport", "mcp", "--builtin", "reference-trust"], "expected reference"),
    ],
)
def test_the_cli_refuses_a_transport_it_cannot_run(args, message) -> None:
    result = CliRunner().invoke(conformance_cli.app, args)
    assert result.exit_code == 2
    assert message in result.output
