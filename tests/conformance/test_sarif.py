"""SARIF 2.1.0 output (``--sarif``): the parts of the standard it uses, checked against a schema of
those parts written from the standard; the level mapping; findings as results and cases not judged as
tool execution notifications; locations; atomic writing; and the run commands' exit codes."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.conformance import runner, sarif
from x402sim.conformance.results import CaseResult, RunReport, TargetInfo, ToolInfo

cli = CliRunner()
LEVEL = {"enum": ["none", "note", "warning", "error"]}
TEXT = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}}
RULE_REF = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}, "index": {"type": "integer"}},
}
# SARIF 2.1.0 (OASIS standard), the parts x402sim writes: sarifLog §3.13, run §3.14, toolComponent §3.19,
# reportingDescriptor §3.49, result §3.27, location §3.28, invocation §3.20, notification §3.58.
SCHEMA = {
    "type": "object",
    "required": ["version", "$schema", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription", "defaultConfiguration"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "shortDescription": TEXT,
                                                "fullDescription": TEXT,
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "properties": {"level": LEVEL},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "level", "message", "locations"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": 0},
                                "level": LEVEL,
                                "message": TEXT,
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation"],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "required": ["uri"],
                                                        "properties": {
                                                            "uri": {"type": "string", "minLength": 1}
                                                        },
                                                    }
                                                },
                                            },
                                            "logicalLocations": {"type": "array"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                    "invocations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["executionSuccessful"],
                            "properties": {
                                "executionSuccessful": {"type": "boolean"},
                                "exitCode": {"type": "integer"},
                                "startTimeUtc": {"type": "string", "pattern": "Z$"},
                                "toolExecutionNotifications": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["message"],
                                        "properties": {
                                            "message": TEXT,
                                            "level": LEVEL,
                                            "associatedRule": RULE_REF,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def result(case_id: str, outcome: str, level: str = "MUST", message: str = "") -> CaseResult:
    return CaseResult(
        id=case_id,
        role="server",
        level=level,
        rests_on=f"x402 v2 §{len(case_id)}",
        description=f"what {case_id} checks",
        outcome=outcome,
        message=message,
    )


def report_of(*results: CaseResult) -> RunReport:
    return RunReport(
        tool=ToolInfo(version="9.9.9"),
        target=TargetInfo(role="server", kind="command", spec="node server.mjs", name="shop"),
        network="eip155:84532",
        chain_id=84532,
        started="2026-01-02T03:04:05+00:00",
        duration=1.0,
        results=list(results),
    )


MIXED = report_of(
    result("server.a.passes", "passed"),
    result("server.a.must", "failed", message="served without payment"),
    result("server.a.should", "failed", "SHOULD", "no Cache-Control"),
    result("server.a.strict", "failed", "STRICT", "extra field"),
    result("server.a.skips", "skipped", message="no second route"),
    result("server.a.broke", "error", message="TimeoutError: slow"),
)


def test_the_log_has_the_parts_of_the_standard_it_uses():
    log = sarif.sarif_log(MIXED)
    jsonschema.validate(log, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert log["$schema"] == sarif.SARIF_SCHEMA
    driver = log["runs"][0]["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("x402sim conformance", "9.9.9")


def test_one_rule_per_case_run_with_its_level_mapped():
    log = sarif.sarif_log(MIXED)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in MIXED.results]
    by_id = {r["id"]: r for r in rules}
    assert by_id["server.a.must"]["defaultConfiguration"]["level"] == "error"
    assert by_id["server.a.should"]["defaultConfiguration"]["level"] == "warning"
    assert by_id["server.a.strict"]["defaultConfiguration"]["level"] == "note"
    assert by_id["server.a.must"]["fullDescription"]["text"] == "Rests on: x402 v2 §13"
    assert sarif.rule_name("server.replay.cross-endpoint") == "ServerReplayCrossEndpoint"
    assert by_id["server.a.must"]["name"] == "ServerAMust"
    assert by_id["server.a.must"]["shortDescription"]["text"] == "what server.a.must checks"
    assert by_id["server.a.should"]["properties"] == {
        "x402Level": "SHOULD",
        "role": "server",
        "tags": ["server", "SHOULD"],
    }


def test_failed_cases_are_results_and_cases_not_judged_are_notifications():
    run = sarif.sarif_log(MIXED)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    found = [(r["ruleId"], r["level"], r["message"]["text"]) for r in run["results"]]
    assert found == [
        ("server.a.must", "error", "served without payment"),
        ("server.a.should", "warning", "no Cache-Control"),
        ("server.a.strict", "note", "extra field"),
    ]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False and invocation["exitCode"] == 1
    assert invocation["startTimeUtc"] == "2026-01-02T03:04:05Z"
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "TimeoutError: slow" in note["message"]["text"]
    assert rules[note["associatedRule"]["index"]]["id"] == note["associatedRule"]["id"] == "server.a.broke"
    clean = sarif.sarif_log(report_of(result("server.a.passes", "passed")))["runs"][0]
    assert clean["results"] == [] and clean["invocations"][0]["executionSuccessful"] is True


@pytest.mark.parametrize(
    "config, uri",
    [
        (None, "x402-conformance/server"),
        ("e2e/servers/shop/test.config.json", "e2e/servers/shop/test.config.json"),
        ("/srv/shop/test.config.json", "file:///srv/shop/test.config.json"),
    ],
)
def test_results_point_at_the_config_or_a_stable_pseudo_path(config, uri):
    (found, *_) = sarif.sarif_log(MIXED, config)["runs"][0]["results"]
    (location,) = found["locations"]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == uri
    assert location["logicalLocations"] == [
        {"name": "shop", "fullyQualifiedName": "node server.mjs", "kind": "resource"}
    ]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.sarif"
    path.write_text("old")

    def broken(report, config=None):
        raise RuntimeError("render failed")

    monkeypatch.setattr(sarif, "sarif_log", broken)
    with pytest.raises(RuntimeError):
        sarif.write_sarif(MIXED, path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.sarif"]


@pytest.mark.parametrize(
    "results, code",
    [
        ([result("server.a.passes", "passed"), result("server.a.should", "failed", "SHOULD")], 0),
        ([result("server.a.must", "failed"), result("server.a.broke", "error")], 1),
        ([result("server.a.passes", "passed"), result("server.a.broke", "error")], 2),
    ],
)
def test_the_run_commands_exit_with_the_rule_and_write_the_log(tmp_path, monkeypatch, results, code):
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: report_of(*results))
    out = tmp_path / "run.sarif"
    outcome = cli.invoke(app, ["conformance", "server", "--builtin", "reference", "--sarif", str(out)])
    assert outcome.exit_code == code, outcome.output
    log = json.loads(out.read_text())
    jsonschema.validate(log, SCHEMA)
    assert log["runs"][0]["invocations"][0]["exitCode"] == code


def test_a_real_run_writes_a_valid_log(tmp_path):
    out = tmp_path / "run.sarif"
    args = ["conformance", "server", "--builtin", "reference", "--cases", "server.handshake", "--quiet"]
    outcome = cli.invoke(app, [*args, "--sarif", str(out)])
    assert outcome.exit_code == 0, outcome.output
    log = json.loads(out.read_text())
    jsonschema.validate(log, SCHEMA)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert rules and all(r["id"].startswith("server.handshake.") for r in rules)
    assert log["runs"][0]["results"] == []
