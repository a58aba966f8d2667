"""What a conformance run produced: one ``CaseResult`` per case, gathered in a versioned ``RunReport``.

Rules:

* These models are the JSON report (``--json FILE``); ``report_schema()`` is its JSON Schema, and
  ``SCHEMA_VERSION`` changes whenever a field changes meaning or disappears (adding a field does not).
* Outcomes: ``passed``; ``failed`` (the target did something the case forbids); ``skipped`` (the case
  does not apply, e.g. an extension the target does not advertise; the message says why); ``error``
  (the case could not be judged: the harness or the target broke mid-case).
* Evidence is what decided the verdict: the HTTP exchanges (x402 headers decoded), the on-chain facts
  read after the case, and short notes. It is data, never prose to be parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"

Level = Literal["MUST", "SHOULD", "STRICT"]
Outcome = Literal["passed", "failed", "skipped", "error"]
Role = Literal["server", "facilitator", "client"]
LEVELS: tuple[Level, ...] = ("MUST", "SHOULD", "STRICT")
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped", "error")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Model):
    """One side of an HTTP exchange. ``x402`` holds the decoded x402 headers (name -> JSON value, or
    ``{"undecodable": text}``); ``body`` is the body as JSON when it parses, else text (cut at 4 KiB)."""

    method: str | None = None
    url: str | None = None
    status: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    x402: dict[str, Any] = Field(default_factory=dict)
    body: Any = None


class Exchange(_Model):
    """A request and what came back (``response`` is None and ``error`` says why when nothing did)."""

    label: str
    request: Message
    response: Message | None = None
    error: str | None = None
    elapsed: float | None = None


class Evidence(_Model):
    exchanges: list[Exchange] = Field(default_factory=list)
    chain: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class CaseResult(_Model):
    id: str
    role: Role
    level: Level
    rests_on: str
    description: str
    outcome: Outcome
    message: str = ""
    evidence: Evidence = Field(default_factory=Evidence)
    duration: float = 0.0


TargetKind = Literal["command", "url", "asgi", "reference", "control"]


class TargetInfo(_Model):
    role: Role
    kind: TargetKind
    spec: str
    name: str


class ToolInfo(_Model):
    name: str = "x402sim"
    version: str


class RunReport(_Model):
    """One run of the catalog (or a selection of it) against one target."""

    schema_version: str = SCHEMA_VERSION
    tool: ToolInfo
    target: TargetInfo
    network: str
    chain_id: int
    started: str  # ISO 8601, UTC
    duration: float
    results: list[CaseResult]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for result in self.results:
            counts[result.outcome] += 1
        return counts

    def must_failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.level == "MUST" and r.outcome in ("failed", "error")]

    def exit_code(self) -> int:
        """The run's verdict as an exit code: 1 when a MUST case failed (whatever else happened: a
        failure found is a verdict even when other cases could not be judged); else 2 when some case,
        of any level, could not be judged (``error``: the run is incomplete); else 0. SHOULD and
        STRICT failures never change it."""
        if any(r.level == "MUST" and r.outcome == "failed" for r in self.results):
            return 1
        return 2 if any(r.outcome == "error" for r in self.results) else 0


def report_schema() -> dict:
    """The JSON Schema of ``--json`` reports."""
    schema = RunReport.model_json_schema()
    schema["$id"] = f"https://x402sim.invalid/conformance-report-v{SCHEMA_VERSION}.json"
    schema["title"] = "x402sim conformance report"
    return schema
