"""The HTML page of conformance reports: ``render([report])`` details one run, ``render(reports)`` puts
several side by side (a matrix, cases x targets).

Rules:

* One self-contained document (the shell of ``x402sim.html_page``): inline CSS, no external URL,
  font or image, and one inline script, the shared table sorting. Evidence is folded in
  ``<details>``; the filters are radio buttons driving CSS (``:checked ~``), so they work without
  JavaScript. The duration cells carry their seconds (``data-sort``) so they sort as numbers.
* Every piece of text is written through ``_e`` (``html_page.e``: ``html.escape``, quotes included),
  whatever its origin; nothing from a report becomes a link, so a URL in a report stays text.
* Rows carry their outcome and level as classes (``o-failed``, ``l-MUST``): the filters use them,
  and so can a browser's find or a user stylesheet.
* Callers go through ``reports.html`` / ``reports.write_html``; this module renders with the shared
  helpers of ``tally`` (marks, durations, summary line, the matrix).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from x402sim.conformance.results import LEVELS, OUTCOMES, CaseResult, Evidence, Exchange, Message, RunReport
from x402sim.conformance.tally import (
    MARKS,
    NOT_RUN,
    Matrix,
    combine,
    format_duration,
    plural,
    summary_line,
)
from x402sim.html_page import e as _e
from x402sim.html_page import page

CSS = """
:root { --passed: #1a7f37; --failed: #cf222e; --skipped: #9a6700; --error: #8250df; --line: #d0d7de; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
h4 { margin: .6em 0 .2em; }
.meta { color: #59636e; margin: 0 0 .8em; }
.meta b { color: #1f2328; }
.summary { font-weight: 600; margin: .5em 0 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
td.id { font-family: ui-monospace, monospace; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; }
table.kv { width: auto; }
table.kv td, details > summary, .exchange { overflow-wrap: anywhere; }
td:last-child { min-width: 20em; }
table.kv td:first-child { font-family: ui-monospace, monospace; color: #59636e; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; color: #fff; font-size: .85em;
  white-space: nowrap; }
.b-passed { background: var(--passed); } .b-failed { background: var(--failed); }
.b-skipped { background: var(--skipped); } .b-error { background: var(--error); }
.b-none { background: #afb8c1; }
.msg { white-space: pre-wrap; overflow-wrap: anywhere; }
pre { background: #f6f8fa; padding: .5em; margin: .2em 0; max-height: 30em; overflow: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: .9em; }
details > summary { cursor: pointer; color: #0969da; }
.exchange { border-left: 3px solid var(--line); padding-left: .7em; margin: .5em 0; }
.err { color: var(--failed); }
.filters { margin: .5em 0; }
.filters label { margin-right: 1em; }
.filters input { position: absolute; opacity: 0; }
.filters input:checked + label { font-weight: 700; text-decoration: underline; }
.filters input:focus-visible + label { outline: 2px solid #0969da; }
#o-bad:checked ~ table tr.case:not(.o-failed):not(.o-error) { display: none; }
#o-failed:checked ~ table tr.case:not(.o-failed) { display: none; }
#o-error:checked ~ table tr.case:not(.o-error) { display: none; }
#o-skipped:checked ~ table tr.case:not(.o-skipped) { display: none; }
#o-passed:checked ~ table tr.case:not(.o-passed) { display: none; }
#l-MUST:checked ~ table tr.case:not(.l-MUST) { display: none; }
#l-SHOULD:checked ~ table tr.case:not(.l-SHOULD) { display: none; }
#l-STRICT:checked ~ table tr.case:not(.l-STRICT) { display: none; }
#m-differs:checked ~ table tr.case:not(.differs) { display: none; }
#m-bad:checked ~ table tr.case:not(.has-failure) { display: none; }
"""


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _badge(outcome: str | None) -> str:
    if outcome is None:
        return f'<span class="badge b-none">{NOT_RUN} not run</span>'
    return f'<span class="badge b-{_e(outcome)}">{MARKS[outcome]} {_e(outcome)}</span>'


def _radios(group: str, choices: list[tuple[str, str]]) -> list[str]:
    """Radio buttons (the first one checked) that the CSS filters read; they must stay siblings that
    precede the table."""
    out = []
    for n, (ident, label) in enumerate(choices):
        checked = " checked" if n == 0 else ""
        out.append(f'<input type="radio" name="{_e(group)}" id="{_e(ident)}"{checked}>')
        out.append(f'<label for="{_e(ident)}">{_e(label)}</label>')
    return out


def _kv_table(items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_json(v))}</td></tr>" for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


# ------------------------------------------------------------------------------------------- evidence


def _message_html(side: str, message: Message) -> list[str]:
    if side == "request":
        line = " ".join(_e(part) for part in (message.method, message.url) if part)
    else:
        line = _e(message.status) if message.status is not None else "no status"
    out = [f"<div><b>{_e(side)}</b> {line}</div>"]
    for name, value in message.x402.items():
        out.append(f"<div>{_e(name)} (x402, decoded)</div><pre>{_e(_json(value))}</pre>")
    if message.headers:
        summary = f"<summary>headers ({len(message.headers)})</summary>"
        out.append(f"<details>{summary}{_kv_table(message.headers)}</details>")
    if message.body is not None and message.body != "":
        out.append(f"<div>body</div><pre>{_e(_json(message.body))}</pre>")
    return out


def _exchange_html(exchange: Exchange) -> list[str]:
    elapsed = (
        f" <small>({_e(format_duration(exchange.elapsed))})</small>" if exchange.elapsed is not None else ""
    )
    out = ['<div class="exchange">', f"<h4>{_e(exchange.label)}{elapsed}</h4>"]
    out += _message_html("request", exchange.request)
    if exchange.response is not None:
        out += _message_html("response", exchange.response)
    if exchange.error:
        out.append(f'<div class="err"><b>error</b> {_e(exchange.error)}</div>')
    out.append("</div>")
    return out


def _evidence_html(evidence: Evidence) -> str:
    if not (evidence.exchanges or evidence.chain or evidence.notes):
        return '<span class="meta">no evidence recorded</span>'
    parts = [plural(len(evidence.exchanges), "exchange")] if evidence.exchanges else []
    if evidence.chain:
        parts.append("chain facts")
    if evidence.notes:
        parts.append(f"{len(evidence.notes)} notes")
    out = [f"<details><summary>evidence: {_e(', '.join(parts))}</summary>"]
    for exchange in evidence.exchanges:
        out += _exchange_html(exchange)
    if evidence.chain:
        out += ["<h4>chain</h4>", _kv_table(evidence.chain)]
    if evidence.notes:
        out += ["<h4>notes</h4>", "<ul>", *(f"<li>{_e(note)}</li>" for note in evidence.notes), "</ul>"]
    out.append("</details>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- one report


def _header(report: RunReport) -> list[str]:
    target = report.target
    facts = {
        "tool": f"{report.tool.name} {report.tool.version}",
        "target": f"{target.name} ({target.role}, {target.kind}: {target.spec})",
        "network": f"{report.network} (chain {report.chain_id})",
        "started": report.started,
        "duration": format_duration(report.duration),
    }
    meta = " · ".join(f"<b>{_e(k)}</b> {_e(v)}" for k, v in facts.items())
    return [
        f"<h1>x402 conformance: {_e(target.name)}</h1>",
        f'<p class="meta">{meta}</p>',
        f'<p class="summary">{_e(summary_line(report))}</p>',
    ]


def _case_row(result: CaseResult) -> str:
    cells = [
        f'<td class="id">{_e(result.id)}</td>',
        f"<td>{_e(result.level)}</td>",
        f"<td>{_badge(result.outcome)}</td>",
        f"<td>{_e(result.description)}</td>",
        f"<td>{_e(result.rests_on)}</td>",
        f'<td class="num" data-sort="{result.duration:.6f}">{_e(format_duration(result.duration))}</td>',
        f'<td><div class="msg">{_e(result.message)}</div>{_evidence_html(result.evidence)}</td>',
    ]
    classes = f"case o-{_e(result.outcome)} l-{_e(result.level)}"
    return f'<tr class="{classes}" id="case-{_e(result.id)}">{"".join(cells)}</tr>'


def _single(report: RunReport) -> str:
    counts = report.counts()
    body = _header(report)
    body.append('<div class="filters">')
    body += _radios(
        "outcome",
        [("o-all", "all outcomes"), ("o-bad", f"failed or error ({counts['failed'] + counts['error']})")]
        + [(f"o-{o}", f"{o} ({counts[o]})") for o in OUTCOMES],
    )
    body.append("<br>")
    body += _radios("level", [("l-all", "all levels")] + [(f"l-{lv}", lv) for lv in LEVELS])
    body.append("<table>")
    head = ("case", "level", "outcome", "description", "rests on", "duration", "message and evidence")
    body.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>")
    body.append("<tbody>")
    body += [_case_row(result) for result in report.results]
    body += ["</tbody>", "</table>", "</div>"]
    return page(f"x402 conformance: {report.target.name}", CSS, body)


# --------------------------------------------------------------------------------------------- matrix


def _matrix(matrix: Matrix) -> str:
    body = [f"<h1>x402 conformance matrix: {len(matrix.targets)} targets</h1>", "<table>"]
    body.append(
        "<thead><tr>"
        + "".join(
            f"<th>{h}</th>" for h in ("target", "role", "kind", "network", "tool", "started", "summary")
        )
        + "</tr></thead><tbody>"
    )
    for label, report in zip(matrix.targets, matrix.reports, strict=True):
        columns = (
            label,
            report.target.role,
            f"{report.target.kind}: {report.target.spec}",
            f"{report.network} (chain {report.chain_id})",
            f"{report.tool.name} {report.tool.version}",
            report.started,
            summary_line(report),
        )
        body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in columns) + "</tr>")
    body += ["</tbody></table>", '<div class="filters">']
    differing = sum(row.differs for row in matrix.rows)
    failing = sum(row.has_failure for row in matrix.rows)
    body += _radios(
        "rows",
        [
            ("m-all", f"all cases ({len(matrix.rows)})"),
            ("m-differs", f"outcomes differ ({differing})"),
            ("m-bad", f"failed or error somewhere ({failing})"),
        ],
    )
    body.append("<br>")
    body += _radios("level", [("l-all", "all levels")] + [(f"l-{lv}", lv) for lv in LEVELS])
    body.append("<table>")
    head = ["<th>case</th>", "<th>level</th>", *(f"<th>{_e(label)}</th>" for label in matrix.targets)]
    body.append("<thead><tr>" + "".join(head) + "</tr></thead><tbody>")
    for row in matrix.rows:
        classes = ["case", f"l-{_e(row.level)}"]
        classes += ["differs"] if row.differs else []
        classes += ["has-failure"] if row.has_failure else []
        cells = [
            f'<td class="id" title="{_e(row.description)}">{_e(row.id)}</td>',
            f"<td>{_e(row.level)}</td>",
        ]
        for result in row.results:
            if result is None:
                cells.append(f"<td>{_badge(None)}</td>")
                continue
            cells.append(
                f"<td>{_badge(result.outcome)}"
                f'<div class="msg">{_e(result.message)}</div>{_evidence_html(result.evidence)}</td>'
            )
        body.append(f'<tr class="{" ".join(classes)}">{"".join(cells)}</tr>')
    body += ["</tbody>", "</table>", "</div>"]
    return page("x402 conformance matrix", CSS, body)


def render(reports: Sequence[RunReport]) -> str:
    """The page for ``reports``: the detailed page for one report, the matrix for several."""
    if not reports:
        raise ValueError("no report to render")
    if len(reports) == 1:
        return _single(reports[0])
    return _matrix(combine(reports))
