"""A conformance run as a SARIF 2.1.0 log (``--sarif FILE``), for code-scanning views.

Rules:

* One run; ``tool.driver`` is ``x402sim conformance`` with one rule per case that ran (id: the case
  id; name: the id in PascalCase, since SARIF wants a readable name distinct from the id; short
  description: what it checks; full description: what it rests on), its default level mapped from
  the case level: MUST is ``error``, SHOULD ``warning``, STRICT ``note``.
* One result per failed case, at its rule's level, its message the case's message (the evidence
  summary). Passed and skipped cases give no result.
* A case that could not be judged (``error``) is no finding about the target: it is a tool execution
  notification of level ``error`` in ``invocations[0]``, tied to its rule, and that invocation is then
  not ``executionSuccessful``. The invocation's ``exitCode`` is the run's exit code.
* Every result has a physical location, since code-scanning views need one: the artifact is the
  target's test.config.json when the run had one, else the stable pseudo-path
  ``x402-conformance/<role>``; and a logical location naming the target (kind ``resource``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePath

from x402sim.conformance.reports import write_text_atomic
from x402sim.conformance.results import CaseResult, Level, RunReport

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
DRIVER_NAME = "x402sim conformance"
SARIF_LEVELS: dict[Level, str] = {"MUST": "error", "SHOULD": "warning", "STRICT": "note"}


def artifact_uri(config: str | PurePath | None, role: str) -> str:
    """The uri results point at: the config file (relative paths kept relative, in ``/`` form;
    absolute ones as ``file:`` URIs), else ``x402-conformance/<role>``."""
    if config is None:
        return f"x402-conformance/{role}"
    path = Path(config)
    return path.as_uri() if path.is_absolute() else path.as_posix()


def rule_name(case_id: str) -> str:
    """``server.replay.cross-endpoint`` -> ``ServerReplayCrossEndpoint``."""
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", case_id))


def _rule(result: CaseResult) -> dict:
    return {
        "id": result.id,
        "name": rule_name(result.id),
        "shortDescription": {"text": result.description},
        "fullDescription": {"text": f"Rests on: {result.rests_on}"},
        "defaultConfiguration": {"level": SARIF_LEVELS[result.level]},
        "properties": {"x402Level": result.level, "role": result.role, "tags": [result.role, result.level]},
    }


def sarif_log(report: RunReport, config: str | PurePath | None = None) -> dict:
    """The SARIF log of ``report``; ``config`` is the target's test.config.json, if the run had one."""
    index = {result.id: i for i, result in enumerate(report.results)}
    target = report.target
    location = {
        "physicalLocation": {"artifactLocation": {"uri": artifact_uri(config, target.role)}},
        "logicalLocations": [{"name": target.name, "fullyQualifiedName": target.spec, "kind": "resource"}],
    }
    results = [
        {
            "ruleId": r.id,
            "ruleIndex": index[r.id],
            "level": SARIF_LEVELS[r.level],
            "message": {"text": r.message or f"{r.id} failed"},
            "locations": [location],
            "properties": {"x402Level": r.level, "restsOn": r.rests_on},
        }
        for r in report.results
        if r.outcome == "failed"
    ]
    notifications = [
        {
            "level": "error",
            "message": {"text": f"{r.id} could not be judged: {r.message}"},
            "associatedRule": {"id": r.id, "index": index[r.id]},
        }
        for r in report.results
        if r.outcome == "error"
    ]
    invocation = {
        "executionSuccessful": not notifications,
        "exitCode": report.exit_code(),
        "startTimeUtc": report.started.replace("+00:00", "Z"),
        "toolExecutionNotifications": notifications,
    }
    driver = {
        "name": DRIVER_NAME,
        "version": report.tool.version,
        "rules": [_rule(r) for r in report.results],
    }
    run = {
        "tool": {"driver": driver},
        "automationDetails": {"id": f"x402sim-conformance/{target.role}/"},
        "invocations": [invocation],
        "results": results,
        "properties": {"target": target.model_dump(), "network": report.network, "chainId": report.chain_id},
    }
    return {"version": SARIF_VERSION, "$schema": SARIF_SCHEMA, "runs": [run]}


def write_sarif(report: RunReport, path: str | Path, config: str | PurePath | None = None) -> None:
    """Write ``sarif_log(report, config)`` atomically (no half-written file on any error)."""
    write_text_atomic(path, json.dumps(sarif_log(report, config), indent=2, ensure_ascii=False) + "\n")
