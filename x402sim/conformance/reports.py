"""Reading, writing, printing and comparing conformance reports (``RunReport``).

Rules:

* Pure renderers (``summary_line``, ``junit_xml``, ``markdown``, ``html``, ``matrix_markdown``) return
  text and never touch files; ``write_*`` render first and then write with ``write_text_atomic``
  (temp file in the same folder, then ``os.replace``), so a failure never leaves a half-written file
  and never clobbers the previous one.
* ``load_report`` raises ``ReportError`` only, with one line naming the file and the problem.
* A case id is ``role.group.rest`` (``server.handshake.header-present``); ``split_id`` is the only
  place that takes it apart (console tree, JUnit class names, Markdown).
* Text from the target (messages, evidence) is data: it goes to rich as ``Text`` (never markup), to
  XML with the characters XML 1.0 forbids replaced by ``\\xNN`` escapes, to Markdown cells with
  Markdown and HTML punctuation escaped, and to HTML through ``html.escape`` (see ``html.py``).
* ``diff`` compares outcomes and levels by case id; ``ReportDiff.exit_code()`` is 1 when a case
  regressed, and a level change alone (a case now judged at another level) is listed but exits 0.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from x402sim.conformance.html import render as render_html
from x402sim.conformance.results import (
    LEVELS,
    OUTCOMES,
    SCHEMA_VERSION,
    CaseResult,
    Level,
    Outcome,
    RunReport,
)
from x402sim.conformance.tally import (
    BAD,
    MARKS,
    NOT_RUN,
    combine,
    plural,
    summary_line,
)

from ..errors import InputError

STYLES: dict[str, str] = {"passed": "green", "failed": "bold red", "skipped": "yellow", "error": "magenta"}


class ReportError(InputError):
    """A report file that cannot be used; the message is one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------- files


def load_report(path: str | Path) -> RunReport:
    """The ``RunReport`` in the JSON file ``path`` (as written by ``write_json``)."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{where}: is a folder, not a report file") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ReportError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{where}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if "schema_version" not in data:
        raise ReportError(f"{where}: no schema_version (not an x402sim conformance report?)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{where}: schema_version {version!r} is not supported (this x402sim reads {SCHEMA_VERSION!r})"
        )
    try:
        report = RunReport.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ReportError(f"{where}: {loc}: {_one_line(first['msg'])}{more}") from None
    seen: set[str] = set()
    for result in report.results:
        if result.id in seen:
            raise ReportError(f"{where}: results: case id {result.id!r} appears twice")
        seen.add(result.id)
    return report


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temp file in the same folder and ``os.replace``:
    readers see the old file or the new one, never a part. The new file gets the usual permissions
    (0o666 less the umask). Characters UTF-8 cannot encode (lone surrogates) are written as
    backslash escapes rather than failing the write."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_json(report: RunReport, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(report.model_dump(mode="json"), indent=2) + "\n")


def write_junit(report: RunReport, path: str | Path) -> None:
    write_text_atomic(path, junit_xml(report))


def write_markdown(report: RunReport, path: str | Path) -> None:
    write_text_atomic(path, markdown(report))


def write_html(reports: Sequence[RunReport], path: str | Path) -> None:
    write_text_atomic(path, html(reports))


def html(reports: Sequence[RunReport]) -> str:
    """One self-contained HTML page: a detailed report for one report, a matrix for several."""
    return render_html(reports)


# -------------------------------------------------------------------------------------------- helpers


def split_id(result: CaseResult) -> tuple[str, str, str]:
    """``(role, group, rest)`` of a case id: ``server.handshake.header-present`` gives ``("server",
    "handshake", "header-present")``; a two-part id has no group; a one-part id takes its role from
    the result."""
    parts = result.id.split(".", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return result.role, "", result.id


def _one_line(text: str) -> str:
    return " ".join(text.split())


def counts_by_level(report: RunReport) -> dict[Level, dict[Outcome, int]]:
    table = {level: dict.fromkeys(OUTCOMES, 0) for level in LEVELS}
    for result in report.results:
        table[result.level][result.outcome] += 1
    return table


# -------------------------------------------------------------------------------------------- console


def _mark(outcome: str | None) -> Text:
    if outcome is None:
        return Text(NOT_RUN, style="dim")
    return Text(MARKS[outcome], style=STYLES[outcome])


def print_console(report: RunReport, console: Console) -> None:
    """A tree of the cases by id (role -> group -> case) with outcome marks, then ``summary_line``."""
    target = report.target
    root = Tree(
        Text.assemble(
            (f"{report.tool.name} {report.tool.version}", "bold"),
            " → ",
            (target.name, "bold"),
            f" ({target.role}, {target.kind}: {target.spec}) on {report.network} (chain {report.chain_id})",
        )
    )
    grouped: dict[str, dict[str, list[tuple[str, CaseResult]]]] = {}
    for result in report.results:
        role, group, rest = split_id(result)
        grouped.setdefault(role, {}).setdefault(group, []).append((rest, result))
    for role, groups in grouped.items():
        role_node = root.add(_branch_label(role, [r for cases in groups.values() for _, r in cases]))
        for group, cases in groups.items():
            node = role_node.add(_branch_label(group, [r for _, r in cases])) if group else role_node
            for rest, result in cases:
                node.add(_leaf_label(rest, result))
    console.print(root)
    style = "green" if report.exit_code() == 0 else "bold red"
    console.print(Text(summary_line(report), style=style))


def _branch_label(name: str, results: list[CaseResult]) -> Text:
    bad = sum(r.outcome in BAD for r in results)
    passed = sum(r.outcome == "passed" for r in results)
    return Text.assemble((name, "bold red" if bad else "bold"), (f"  {passed}/{len(results)} passed", "dim"))


def _leaf_label(name: str, result: CaseResult) -> Text:
    label = Text.assemble(_mark(result.outcome), " ", name, (f"  {result.level}", "dim"))
    if result.outcome in BAD and result.message:
        label.append(f"  {result.message}", style=STYLES[result.outcome])
    return label


# ---------------------------------------------------------------------------------------------- JUnit

# Everything outside XML 1.0's Char production: C0 controls but tab/LF/CR, lone surrogates, U+FFFE/F.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` with each character XML 1.0 forbids written as ``\\xNN`` / ``\\uNNNN``."""
    return _XML_FORBIDDEN.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode(), text)


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: xml_safe(v) for k, v in attrs.items()})
    if text is not None:
        node.text = xml_safe(text)
    return node


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def junit_xml(report: RunReport) -> str:
    """JUnit XML: a ``<testsuite>`` per role (``x402sim.conformance.<role>``), a ``<testcase>`` per case
    (class ``role.group``, name the rest of the id) with its level and rests_on as properties, the
    verdict as ``<failure>``/``<error>``/``<skipped>`` and the evidence as compact JSON in
    ``<system-out>``."""
    by_role: dict[str, list[CaseResult]] = {}
    for result in report.results:
        by_role.setdefault(split_id(result)[0], []).append(result)
    totals = report.counts()
    root = ET.Element(
        "testsuites",
        {
            "name": xml_safe(f"x402sim conformance: {report.target.name}"),
            "tests": str(len(report.results)),
            "failures": str(totals["failed"]),
            "errors": str(totals["error"]),
            "skipped": str(totals["skipped"]),
            "time": _seconds(report.duration),
        },
    )
    for role, results in by_role.items():
        counts = dict.fromkeys(OUTCOMES, 0)
        for result in results:
            counts[result.outcome] += 1
        suite = _element(
            root,
            "testsuite",
            name=f"x402sim.conformance.{role}",
            tests=str(len(results)),
            failures=str(counts["failed"]),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=_seconds(sum(r.duration for r in results)),
            timestamp=report.started,
        )
        props = _element(suite, "properties")
        suite_props = {
            "target": report.target.name,
            "target.role": report.target.role,
            "target.kind": report.target.kind,
            "target.spec": report.target.spec,
            "network": report.network,
            "chain_id": str(report.chain_id),
            "tool": f"{report.tool.name} {report.tool.version}",
            "schema_version": report.schema_version,
        }
        for name, value in suite_props.items():
            _element(props, "property", name=name, value=value)
        for result in results:
            _testcase(suite, result)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testcase(suite: ET.Element, result: CaseResult) -> None:
    role, group, rest = split_id(result)
    case = _element(
        suite,
        "testcase",
        classname=f"{role}.{group}" if group else role,
        name=rest,
        time=_seconds(result.duration),
    )
    props = _element(case, "properties")
    _element(props, "property", name="level", value=result.level)
    _element(props, "property", name="rests_on", value=result.rests_on)
    detail = f"[{result.level}] {result.description}\nrests on: {result.rests_on}\n{result.message}"
    if result.outcome == "failed":
        _element(case, "failure", detail, message=result.message, type=result.level)
    elif result.outcome == "error":
        _element(case, "error", detail, message=result.message, type="error")
    elif result.outcome == "skipped":
        _element(case, "skipped", message=result.message)
    evidence = result.evidence.model_dump(mode="json")
    if any(evidence.values()):
        text = json.dumps(evidence, separators=(",", ":"), ensure_ascii=False, default=str)
        _element(case, "system-out", text)


# ------------------------------------------------------------------------------------------- Markdown

_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]~|])")


def md_cell(text: str) -> str:
    """``text`` safe inside a GitHub Markdown table cell: Markdown punctuation (``|`` included)
    backslash-escaped, ``& < >`` as entities, line breaks as ``<br>``."""
    text = _MD_PUNCTUATION.sub(r"\\\1", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "<br>".join(text.splitlines()) if text else ""


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(report: RunReport) -> str:
    """A CI job summary: title, summary line, counts by level x outcome, failed MUST cases, failed
    SHOULD/STRICT cases, skipped cases with their reasons."""
    target = report.target
    spec = _one_line(target.spec).replace("`", "'")
    lines = [
        f"# x402 conformance: {md_cell(_one_line(target.name))}",
        "",
        f"**{summary_line(report)}**",
        "",
        f"{target.role} target ({target.kind}) `{spec}`"
        f" · {md_cell(report.network)} (chain {report.chain_id})"
        f" · {md_cell(report.tool.name)} {md_cell(report.tool.version)} · started {md_cell(report.started)}",
        "",
        "## Counts",
        "",
    ]
    table = counts_by_level(report)
    rows = []
    for level in LEVELS:
        row = table[level]
        rows.append([level, *(str(row[o]) for o in OUTCOMES), str(sum(row.values()))])
    totals = report.counts()
    rows.append(["**all**", *(f"**{totals[o]}**" for o in OUTCOMES), f"**{len(report.results)}**"])
    lines += _md_table(["Level", *OUTCOMES, "total"], rows)

    must = report.must_failures()
    lines += ["", f"## Failed MUST cases ({len(must)})", ""]
    if must:
        lines += _md_table(
            ["Case", "Outcome", "Description", "Message"],
            ([md_cell(r.id), r.outcome, md_cell(r.description), md_cell(r.message)] for r in must),
        )
    else:
        lines.append("None: every MUST case passed or was skipped.")
    others = [r for r in report.results if r.level != "MUST" and r.outcome in BAD]
    if others:
        lines += ["", f"## Failed SHOULD and STRICT cases ({len(others)})", ""]
        lines += _md_table(
            ["Case", "Level", "Outcome", "Description", "Message"],
            ([md_cell(r.id), r.level, r.outcome, md_cell(r.description), md_cell(r.message)] for r in others),
        )
    skipped = [r for r in report.results if r.outcome == "skipped"]
    if skipped:
        lines += ["", f"## Skipped cases ({len(skipped)})", ""]
        lines += _md_table(
            ["Case", "Level", "Reason"], ([md_cell(r.id), r.level, md_cell(r.message)] for r in skipped)
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- matrix


def matrix_markdown(reports: Sequence[RunReport]) -> str:
    """A Markdown table, cases x targets, with outcome marks; each target's summary line above it."""
    matrix = combine(reports)
    lines = ["# x402 conformance matrix", ""]
    for label, report in zip(matrix.targets, matrix.reports, strict=True):
        lines.append(f"- **{md_cell(label)}** ({report.target.role}): {summary_line(report)}")
    legend = ", ".join(f"{MARKS[o]} {o}" for o in OUTCOMES)
    lines += ["", f"{legend}, {NOT_RUN} not run", ""]
    lines += _md_table(
        ["Case", "Level", *(md_cell(label) for label in matrix.targets)],
        (
            [md_cell(row.id), row.level, *(MARKS[o] if o else NOT_RUN for o in row.outcomes)]
            for row in matrix.rows
        ),
    )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class DiffEntry:
    id: str
    level: Level
    old: Outcome | None
    new: Outcome | None
    message: str  # the new result's message ("" when the case is gone)


@dataclass(frozen=True)
class LevelChange:
    """A case both reports ran, judged at another level in the new one (the catalog moved it)."""

    id: str
    old: Level
    new: Level


@dataclass(frozen=True)
class ReportDiff:
    """Outcome changes from ``old`` to ``new``, by case id; every id of either report is in exactly
    one list. Entries are sorted by id."""

    old_label: str
    new_label: str
    fixed: list[DiffEntry] = field(default_factory=list)  # failed/error -> passed
    regressed: list[DiffEntry] = field(default_factory=list)  # passed/skipped -> failed/error
    new: list[DiffEntry] = field(default_factory=list)  # only in new
    removed: list[DiffEntry] = field(default_factory=list)  # only in old
    changed: list[DiffEntry] = field(default_factory=list)  # any other outcome change
    unchanged: list[str] = field(default_factory=list)  # ids with the same outcome
    # Cases in both reports whose level differs, whatever their outcome did (also in one list above).
    levels: list[LevelChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.fixed or self.regressed or self.new or self.removed or self.changed or self.levels)

    def exit_code(self) -> int:
        """1 when a case regressed, else 0: a level change alone is news, not a regression."""
        return 1 if self.regressed else 0

    def sections(self) -> list[tuple[str, list[DiffEntry]]]:
        return [
            ("regressed", self.regressed),
            ("fixed", self.fixed),
            ("changed", self.changed),
            ("new", self.new),
            ("removed", self.removed),
        ]


def _label(report: RunReport) -> str:
    return f"{report.target.name} ({report.started})"


def diff(old: RunReport, new: RunReport) -> ReportDiff:
    before = {r.id: r for r in old.results}
    after = {r.id: r for r in new.results}
    result = ReportDiff(_label(old), _label(new))
    for case_id in sorted(before.keys() | after.keys()):
        was, now = before.get(case_id), after.get(case_id)
        if now is None:
            assert was is not None
            result.removed.append(DiffEntry(case_id, was.level, was.outcome, None, ""))
            continue
        entry = DiffEntry(case_id, now.level, was.outcome if was else None, now.outcome, now.message)
        if was is not None and was.level != now.level:
            result.levels.append(LevelChange(case_id, was.level, now.level))
        if was is None:
            result.new.append(entry)
        elif was.outcome == now.outcome:
            result.unchanged.append(case_id)
        elif was.outcome in BAD and now.outcome == "passed":
            result.fixed.append(entry)
        elif was.outcome in ("passed", "skipped") and now.outcome in BAD:
            result.regressed.append(entry)
        else:
            result.changed.append(entry)
    return result


_SECTION_STYLES = {
    "regressed": "bold red",
    "fixed": "green",
    "changed": "yellow",
    "new": "cyan",
    "removed": "dim",
}


def diff_counts_line(d: ReportDiff) -> str:
    counts = ", ".join(f"{len(entries)} {name}" for name, entries in d.sections())
    levels = f", {len(d.levels)} level changed" if d.levels else ""
    return f"{counts}, {len(d.unchanged)} unchanged{levels}"


def print_diff(d: ReportDiff, console: Console) -> None:
    """The diff by section (regressed first), one line per case, then the counts."""
    console.print(Text.assemble(("diff ", "bold"), d.old_label, " → ", d.new_label))
    if d.empty:
        console.print(Text(f"no changes ({plural(len(d.unchanged), 'case')} unchanged)", style="green"))
        return
    for name, entries in d.sections():
        if not entries:
            continue
        console.print(Text(f"{name} ({len(entries)})", style=_SECTION_STYLES[name]))
        for entry in entries:
            line = Text.assemble(
                "  ", _mark(entry.old), " → ", _mark(entry.new), " ", entry.id, (f"  {entry.level}", "dim")
            )
            if entry.message and entry.new in BAD:
                line.append(f"  {entry.message}", style=STYLES[entry.new])
            console.print(line)
    for change in d.levels:
        console.print(Text(f"level changed: {change.id} {change.old} → {change.new}", style="yellow"))
    console.print(Text(diff_counts_line(d), style="bold red" if d.regressed else "bold"))
