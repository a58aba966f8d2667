"""What every report renderer shares: outcome marks, counts in words, durations, the summary line,
and the matrix (case ids x targets) that puts several reports side by side.

``reports`` (text, console, JUnit, Markdown) and ``html`` both render with these; ``reports`` also
serves the HTML page (``reports.html``) by importing ``html``, which therefore takes its helpers from
here and never from ``reports``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from x402sim.conformance.results import CaseResult, Level, Outcome, RunReport

MARKS: dict[str, str] = {"passed": "✓", "failed": "✗", "skipped": "–", "error": "!"}
NOT_RUN = "·"
BAD: tuple[Outcome, ...] = ("failed", "error")


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def summary_line(report: RunReport) -> str:
    """``N passed, N failed[, N skipped][, N error(s)] in D.DDs; N MUST failure(s)`` (a MUST failure is
    a MUST case that failed or could not be judged)."""
    counts = report.counts()
    parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    if counts["error"]:
        parts.append(plural(counts["error"], "error"))
    must = plural(len(report.must_failures()), "MUST failure")
    return f"{', '.join(parts)} in {report.duration:.2f}s; {must}"


@dataclass(frozen=True)
class MatrixRow:
    """One case id across targets: ``results[i]`` is its result in the i-th report (None: not run)."""

    id: str
    level: Level
    description: str
    rests_on: str
    results: tuple[CaseResult | None, ...]

    @property
    def outcomes(self) -> tuple[Outcome | None, ...]:
        return tuple(r.outcome if r else None for r in self.results)

    @property
    def differs(self) -> bool:
        """The targets did not all get the same outcome (a case one of them did not run counts)."""
        return len(set(self.outcomes)) > 1

    @property
    def has_failure(self) -> bool:
        return any(o in BAD for o in self.outcomes)


@dataclass(frozen=True)
class Matrix:
    """Reports side by side: ``targets`` are column labels (target names, ``#2``... added to names that
    repeat) and ``rows`` the union of case ids, sorted."""

    targets: tuple[str, ...]
    reports: tuple[RunReport, ...]
    rows: tuple[MatrixRow, ...]


def combine(reports: Sequence[RunReport]) -> Matrix:
    labels: list[str] = []
    for report in reports:
        label, n = report.target.name, 1
        while label in labels:
            n += 1
            label = f"{report.target.name} #{n}"
        labels.append(label)
    by_id = [{r.id: r for r in report.results} for report in reports]
    ids = sorted(set().union(*by_id)) if by_id else []
    rows = []
    for case_id in ids:
        results = tuple(index.get(case_id) for index in by_id)
        first = next(r for r in results if r is not None)
        rows.append(MatrixRow(case_id, first.level, first.description, first.rests_on, results))
    return Matrix(tuple(labels), tuple(reports), tuple(rows))
