"""Conformance reports: JSON round trip and schema, load errors, atomic writes, console, JUnit, Markdown,
HTML (single and matrix), diff."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from x402sim.conformance import reports
from x402sim.conformance.reports import (
    ReportError,
    combine,
    diff,
    junit_xml,
    load_report,
    markdown,
    matrix_markdown,
    print_console,
    print_diff,
    summary_line,
    write_html,
    write_json,
    write_junit,
    write_markdown,
    write_text_atomic,
)
from x402sim.conformance.results import (
    CaseResult,
    Evidence,
    Exchange,
    Message,
    RunReport,
    TargetInfo,
    ToolInfo,
    report_schema,
)
from x402sim.html_page import SORT_SCRIPT


def case(case_id: str, outcome: str = "passed", level: str = "MUST", message: str = "", **kw) -> CaseResult:
    return CaseResult(
        id=case_id,
        role=case_id.split(".")[0],
        level=level,
        rests_on="x402 v2 §5.1",
        description=f"description of {case_id}",
        outcome=outcome,
        message=message,
        duration=0.25,
        **kw,
    )


def make_report(results: list[CaseResult], name: str = "ref-server", duration: float = 1.5) -> RunReport:
    return RunReport(
        tool=ToolInfo(version="0.1.0"),
        target=TargetInfo(role="server", kind="url", spec="http://127.0.0.1:4021/weather", name=name),
        network="base-sepolia",
        chain_id=84532,
        started="2026-01-02T03:04:05Z",
        duration=duration,
        results=results,
    )


EVIDENCE = Evidence(
    exchanges=[
        Exchange(
            label="unpaid request",
            request=Message(method="GET", url="http://127.0.0.1:4021/weather", headers={"accept": "*/*"}),
            response=Message(
                status=402,
                headers={"payment-required": "eyJ4NDAy..."},
                x402={"PAYMENT-REQUIRED": {"x402Version": 2, "accepts": [{"scheme": "exact"}]}},
                body={"error": "payment required"},
            ),
            elapsed=0.012,
        ),
        Exchange(
            label="paid request", request=Message(method="GET", url="/weather"), error="connection reset"
        ),
    ],
    chain={"payer_balance": 999000, "tx": "0xabc"},
    notes=["the nonce was reused"],
)


@pytest.fixture
def report() -> RunReport:
    return make_report(
        [
            case("server.handshake.header-present", evidence=EVIDENCE),
            case("server.handshake.accepts-list", "failed", message="accepts is empty"),
            case("server.payment.bad-signature", "failed", message="served the resource <script>x</script>"),
            case("server.payment.expired", "error", message="target crashed"),
            case("server.payment.redirect", "skipped", message="no | redirect\nsupport"),
            case("server.extensions.bazaar", "failed", level="SHOULD", message="missing"),
        ]
    )


# ----------------------------------------------------------------------------------------- JSON, load


def test_json_round_trip_and_schema(tmp_path, report):
    path = tmp_path / "r.json"
    write_json(report, path)
    data = json.loads(path.read_text())
    jsonschema.validate(data, report_schema())
    assert load_report(path) == report
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_schema_rejects_what_load_rejects(report):
    data = report.model_dump(mode="json")
    data["results"][0]["outcome"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, report_schema())


def _error(path) -> str:
    with pytest.raises(ReportError) as info:
        load_report(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_load_errors_name_the_file_and_the_problem(tmp_path, report):
    assert "no such file" in _error(tmp_path / "missing.json")

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1",')
    assert "not JSON" in _error(bad) and "line 1" in _error(bad)

    data = report.model_dump(mode="json")
    data["results"][1]["duration"] = "slow"
    bad.write_text(json.dumps(data))
    message = _error(bad)
    assert "results.1.duration" in message and "number" in message

    data = report.model_dump(mode="json")
    data["schema_version"] = "99"
    bad.write_text(json.dumps(data))
    assert "schema_version '99'" in _error(bad)

    data = report.model_dump(mode="json")
    del data["schema_version"]
    bad.write_text(json.dumps(data))
    assert "no schema_version" in _error(bad)

    bad.write_text("[1, 2]")
    assert "JSON object" in _error(bad)

    data = report.model_dump(mode="json")
    data["results"].append(data["results"][0])
    bad.write_text(json.dumps(data))
    assert "appears twice" in _error(bad)

    assert "folder" in _error(tmp_path)


# --------------------------------------------------------------------------------------- atomic write


@pytest.mark.parametrize(
    ("writer", "renderer"),
    [(write_junit, "junit_xml"), (write_markdown, "markdown"), (write_html, "html")],
)
def test_failed_rendering_writes_nothing(tmp_path, monkeypatch, report, writer, renderer):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(reports, renderer, broken)
    fresh = tmp_path / "fresh.out"
    kept = tmp_path / "kept.out"
    kept.write_text("previous run")
    argument = [report] if writer is write_html else report
    for path in (fresh, kept):
        with pytest.raises(RuntimeError, match="boom"):
            writer(argument, path)
    assert not fresh.exists()
    assert kept.read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.out"]


def test_failed_json_serialisation_writes_nothing(tmp_path, monkeypatch, report):
    kept = tmp_path / "r.json"
    kept.write_text("previous run")

    def broken(self, **kwargs):
        raise ValueError("cannot serialise")

    monkeypatch.setattr(RunReport, "model_dump", broken)
    with pytest.raises(ValueError):
        write_json(report, kept)
    assert kept.read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failure_after_the_temp_file_is_written_removes_it(tmp_path, monkeypatch):
    kept = tmp_path / "out.txt"
    kept.write_text("previous run")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(reports.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(kept, "new text")
    assert kept.read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_replaces_and_survives_lone_surrogates(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    write_text_atomic(path, "new ✓ \ud800")
    assert path.read_text(encoding="utf-8") == "new ✓ \\ud800"


# ------------------------------------------------------------------------------------ console, summary


def test_summary_line():
    results = [
        case("server.a.one"),
        case("server.a.two", "failed"),
        case("client.b.three", "failed", "SHOULD"),
    ]
    assert summary_line(make_report(results, duration=2)) == "1 passed, 2 failed in 2.00s; 1 MUST failure"
    results += [case("server.a.four", "skipped"), case("server.a.five", "error")]
    line = summary_line(make_report(results, duration=0.5))
    assert line == "1 passed, 2 failed, 1 skipped, 1 error in 0.50s; 2 MUST failures"
    results.append(case("server.a.six", "error", "SHOULD"))
    assert "1 skipped, 2 errors in" in summary_line(make_report(results))
    assert summary_line(make_report([])) == "0 passed, 0 failed in 1.50s; 0 MUST failures"


def test_console_tree_groups_by_id(report):
    console = Console(record=True, width=200, color_system=None)
    print_console(report, console)
    text = console.export_text()
    lines = text.splitlines()
    assert lines[-1] == summary_line(report)
    assert len([line for line in lines if re.search(r"\bserver\b", line)]) >= 1
    for group in ("handshake", "payment", "extensions"):
        assert sum(line.strip(" │├└─").startswith(group) for line in lines) == 1
    assert any("✓ header-present" in line and "MUST" in line for line in lines)
    assert any("✗ bad-signature" in line and "<script>" in line for line in lines)
    assert any("! expired" in line and "target crashed" in line for line in lines)
    skipped = next(line for line in lines if "– redirect" in line)
    assert "no | redirect" not in skipped  # skipped cases show no message


def test_console_does_not_interpret_markup():
    report = make_report([case("server.a.b", "failed", message="[bold]x[/bold] [red]")])
    console = Console(record=True, width=200, color_system=None)
    print_console(report, console)
    assert "[bold]x[/bold] [red]" in console.export_text()


# ----------------------------------------------------------------------------------------------- JUnit


def test_junit_counts_and_structure(report):
    report.results.append(case("client.refuses.recipient-redirect", "passed"))
    root = ET.fromstring(junit_xml(report))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "7",
        "3",
        "1",
        "1",
    )
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"x402sim.conformance.server", "x402sim.conformance.client"}
    server = suites["x402sim.conformance.server"]
    assert (server.get("tests"), server.get("failures"), server.get("errors"), server.get("skipped")) == (
        "6",
        "3",
        "1",
        "1",
    )
    assert len(server.findall("testcase")) == 6 and len(server.findall("testcase/failure")) == 3
    tc = server.find("testcase[@name='bad-signature']")
    assert tc.get("classname") == "server.payment" and tc.get("time") == "0.250"
    props = {p.get("name"): p.get("value") for p in tc.findall("properties/property")}
    assert props == {"level": "MUST", "rests_on": "x402 v2 §5.1"}
    assert tc.find("failure").get("message") == "served the resource <script>x</script>"
    assert server.find("testcase[@name='redirect']/skipped").get("message") == "no | redirect\nsupport"
    assert server.find("testcase[@name='expired']/error").get("message") == "target crashed"
    evidence = json.loads(server.find("testcase[@name='header-present']/system-out").text)
    assert Evidence.model_validate(evidence) == EVIDENCE
    client = suites["x402sim.conformance.client"].find("testcase")
    assert (client.get("classname"), client.get("name")) == ("client.refuses", "recipient-redirect")


def test_junit_survives_forbidden_characters():
    nasty = "bad \x00\x1b[31m\x08 ]]> \ud800 \ufffe end"
    ev = Evidence(notes=[nasty], chain={"k": nasty})
    report = make_report([case("server.a.b", "failed", message=nasty, evidence=ev)])
    text = junit_xml(report)
    root = ET.fromstring(text)  # raises on invalid XML
    message = root.find("testsuite/testcase/failure").get("message")
    assert message == "bad \\x00\\x1b[31m\\x08 ]]> \\ud800 \\ufffe end"
    assert "]]>" in root.find("testsuite/testcase/system-out").text
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", text)


# -------------------------------------------------------------------------------------------- Markdown


def _cells(row: str) -> list[str]:
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_markdown_summary(report):
    text = markdown(report)
    assert text.startswith("# x402 conformance: ref-server\n")
    assert summary_line(report) in text
    lines = text.splitlines()
    must_row = next(line for line in lines if line.startswith("| MUST |"))
    assert [c.strip() for c in _cells(must_row)] == ["MUST", "1", "2", "1", "1", "5"]
    must_section = text.split("## Failed MUST cases (3)")[1].split("##")[0]
    assert "server.payment.bad-signature" in must_section and "server.payment.expired" in must_section
    assert "served the resource &lt;script&gt;x&lt;/script&gt;" in must_section
    assert "server.extensions.bazaar" in text.split("## Failed SHOULD and STRICT cases (1)")[1]
    skipped_row = next(line for line in lines if "server.payment.redirect" in line)
    assert "no \\| redirect<br>support" in skipped_row
    assert len(_cells(skipped_row)) == 3  # the pipe in the reason did not split the row


def test_markdown_tables_have_consistent_columns():
    report = make_report([case("server.a.b", "failed", message="a|b|c\nd `x` *y* _z_ [l](u)")])
    text = markdown(report)
    table = text.split("## Failed MUST cases (1)")[1].strip().splitlines()
    assert all(len(_cells(line)) == 4 for line in table)
    assert "a\\|b\\|c<br>d \\`x\\` \\*y\\* \\_z\\_ \\[l\\](u)" in table[-1]


def test_markdown_without_failures():
    text = markdown(make_report([case("server.a.b")]))
    assert (
        "None: every MUST case passed" in text and "SHOULD and STRICT" not in text and "Skipped" not in text
    )


# ------------------------------------------------------------------------------------------------ HTML

_EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def _check_self_contained(page: str) -> None:
    assert (
        page.startswith("<!DOCTYPE html>") and page.count("<html") == 1 and page.rstrip().endswith("</html>")
    )
    assert not _EXTERNAL.search(page)
    # one script, inline: the shared table sorting
    assert page.lower().count("<script") == 1 and f"<script>{SORT_SCRIPT}</script>" in page
    assert "@import" not in page and "url(" not in page


def test_html_single_report(report):
    page = reports.html([report])
    _check_self_contained(page)
    for result in report.results:
        assert f">{result.id}<" in page
    assert "served the resource &lt;script&gt;x&lt;/script&gt;" in page
    assert summary_line(report) in page
    assert "84532" in page and "0.1.0" in page and "2026-01-02T03:04:05Z" in page
    # evidence: exchange label, decoded x402 header, status, chain facts, notes, exchange error
    for text in (
        "unpaid request",
        "PAYMENT-REQUIRED",
        "x402Version",
        "402",
        "payer_balance",
        "connection reset",
    ):
        assert text in page
    assert "the nonce was reused" in page
    assert page.count("<details>") >= 1 and 'class="case o-failed l-MUST"' in page


def test_html_escapes_everything():
    evil = '<script>alert("x")</script>'
    ev = Evidence(notes=[evil], exchanges=[Exchange(label=evil, request=Message(url=evil))])
    report = make_report([case("server.a.b", "failed", message=evil, evidence=ev)], name=evil)
    page = reports.html([report])
    _check_self_contained(page)
    assert evil not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_html_matrix(report):
    other = make_report(
        [
            case("server.handshake.header-present", "failed", message="no header"),
            case("server.payment.replay", "passed"),
        ],
        name="typescript-server",
    )
    same_name = make_report([case("server.handshake.header-present")])
    page = reports.html([report, other, same_name])
    _check_self_contained(page)
    for name in ("ref-server", "typescript-server", "ref-server #2"):
        assert f"<th>{name}</th>" in page
    ids = {r.id for r in report.results} | {r.id for r in other.results}
    positions = [page.index(f">{case_id}<", page.index("<th>case</th>")) for case_id in sorted(ids)]
    assert positions == sorted(positions)  # one row per id, sorted
    assert "not run" in page and "no header" in page


def test_html_needs_a_report():
    with pytest.raises(ValueError):
        reports.html([])


def test_write_html(tmp_path, report):
    path = tmp_path / "r.html"
    write_html([report], path)
    assert path.read_text(encoding="utf-8") == reports.html([report])


# --------------------------------------------------------------------------------------------- matrix


def test_combine_and_matrix_markdown():
    a = make_report([case("server.x.one"), case("server.x.two", "failed")], name="a|b")
    b = make_report([case("server.x.two", "failed"), case("server.x.three", "skipped")], name="b")
    matrix = combine([a, b])
    assert matrix.targets == ("a|b", "b")
    assert [row.id for row in matrix.rows] == ["server.x.one", "server.x.three", "server.x.two"]
    assert [row.outcomes for row in matrix.rows] == [
        ("passed", None),
        (None, "skipped"),
        ("failed", "failed"),
    ]
    assert [row.differs for row in matrix.rows] == [True, True, False]
    text = matrix_markdown([a, b])
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert _cells(table[0])[2:] == [" a\\|b ", " b "]
    assert all(len(_cells(line)) == 4 for line in table)
    assert [_cells(line)[2:] for line in table[2:]] == [[" ✓ ", " · "], [" · ", " – "], [" ✗ ", " ✗ "]]


# ----------------------------------------------------------------------------------------------- diff

IDS = [f"server.g.{c}" for c in "abcdef"]
outcome_maps = st.dictionaries(
    st.sampled_from(IDS), st.sampled_from(["passed", "failed", "skipped", "error"])
)


def _from_map(outcomes: dict[str, str]) -> RunReport:
    return make_report([case(i, o, message=f"{i} is {o}") for i, o in outcomes.items()])


@given(outcome_maps, outcome_maps)
def test_diff_partitions_ids(old, new):
    d = diff(_from_map(old), _from_map(new))
    bad = {"failed", "error"}
    expected = {
        "fixed": set(),
        "regressed": set(),
        "new": set(),
        "removed": set(),
        "changed": set(),
        "same": set(),
    }
    for i in old.keys() | new.keys():
        if i not in old:
            expected["new"].add(i)
        elif i not in new:
            expected["removed"].add(i)
        elif old[i] == new[i]:
            expected["same"].add(i)
        elif old[i] in bad and new[i] == "passed":
            expected["fixed"].add(i)
        elif old[i] in ("passed", "skipped") and new[i] in bad:
            expected["regressed"].add(i)
        else:
            expected["changed"].add(i)
    got = {name: [e.id for e in entries] for name, entries in d.sections()}
    for name, ids in got.items():
        assert ids == sorted(expected[name]), name
    assert d.unchanged == sorted(expected["same"])
    assert sum(len(v) for v in got.values()) + len(d.unchanged) == len(old.keys() | new.keys())
    for entries in (d.fixed, d.regressed, d.changed, d.new):
        for e in entries:
            assert (e.old, e.new, e.message) == (old.get(e.id), new[e.id], f"{e.id} is {new[e.id]}")
    for e in d.removed:
        assert (e.old, e.new) == (old[e.id], None)
    assert d.exit_code() == (1 if expected["regressed"] else 0)
    assert d.empty == (len(d.unchanged) == len(old.keys() | new.keys()))


def test_print_diff():
    old = _from_map({"server.g.a": "passed", "server.g.b": "failed", "server.g.c": "passed"})
    new = _from_map({"server.g.a": "failed", "server.g.b": "passed", "server.g.d": "skipped"})
    d = diff(old, new)
    console = Console(record=True, width=200, color_system=None)
    print_diff(d, console)
    text = console.export_text()
    assert "regressed (1)" in text and "✓ → ✗ server.g.a" in text and "server.g.a is failed" in text
    assert "fixed (1)" in text and "new (1)" in text and "removed (1)" in text
    assert "changed (" not in text  # empty sections are left out
    assert text.splitlines()[-1] == "1 regressed, 1 fixed, 0 changed, 1 new, 1 removed, 0 unchanged"
    assert "level changed" not in text
    assert d.exit_code() == 1

    console = Console(record=True, width=200, color_system=None)
    print_diff(diff(old, old), console)
    assert "no changes (3 cases unchanged)" in console.export_text()
    assert diff(old, old).exit_code() == 0


@given(outcome_maps, st.dictionaries(st.sampled_from(IDS), st.sampled_from(["MUST", "SHOULD", "STRICT"])))
def test_diff_lists_level_changes_without_calling_them_regressions(outcomes, new_levels):
    old = _from_map(outcomes)
    new = make_report(
        [case(i, o, level=new_levels.get(i, "MUST"), message=f"{i} is {o}") for i, o in outcomes.items()]
    )
    d = diff(old, new)
    assert [(c.id, c.old, c.new) for c in d.levels] == [
        (i, "MUST", new_levels[i]) for i in sorted(outcomes) if new_levels.get(i, "MUST") != "MUST"
    ]
    assert d.regressed == [] and d.exit_code() == 0  # same outcomes: whatever the levels did
    assert d.empty == (not d.levels)


def test_print_diff_shows_level_changes_and_a_regression_at_must():
    old = make_report([case("server.g.a", level="SHOULD"), case("server.g.b", "failed", level="MUST")])
    new = make_report(
        [case("server.g.a", "failed", level="MUST"), case("server.g.b", "failed", level="SHOULD")]
    )
    d = diff(old, new)
    console = Console(record=True, width=200, color_system=None)
    print_diff(d, console)
    lines = console.export_text().splitlines()
    assert "level changed: server.g.a SHOULD → MUST" in lines
    assert "level changed: server.g.b MUST → SHOULD" in lines
    assert lines[-1].endswith("1 unchanged, 2 level changed")
    assert [e.id for e in d.regressed] == ["server.g.a"] and d.exit_code() == 1


# ---------------------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "outcomes, code",
    [
        ({"MUST": ["passed", "skipped"], "SHOULD": ["failed"], "STRICT": ["failed"]}, 0),
        ({"MUST": ["failed", "error"], "SHOULD": ["error"]}, 1),  # a MUST failure wins over errors
        ({"MUST": ["failed"]}, 1),
        ({"MUST": ["passed"], "SHOULD": ["error"]}, 2),  # a case not judged: the run is incomplete
        ({"MUST": ["error", "error"]}, 2),
        ({}, 0),
    ],
)
def test_exit_code_rule(outcomes, code):
    results = [
        case(f"server.g.{level.lower()}{i}", outcome, level=level)
        for level, listed in outcomes.items()
        for i, outcome in enumerate(listed)
    ]
    assert make_report(results).exit_code() == code
