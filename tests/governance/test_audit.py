"""The audit log's hash chain: every edit, deletion or reordering is found at the right line."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.governance.tampering import KINDS, tamper
from x402sim.governance import Attempt, AuditError, AuditLog, Governor, parse_policies, summarize, verify
from x402sim.governance.audit import GENESIS

T0 = 1_767_225_600
POLICY = parse_policies(
    {
        "projects": {"lab": ["alice"]},
        "policies": [
            {
                "name": "p",
                "rules": [{"kind": "spend-limit", "max": "0.05"}, {"kind": "approval", "above": "0.02"}],
                "triggers": [{"kind": "failure-streak", "count": 3}],
            }
        ],
    }
).policy()


def write_log(path, n=12):
    g = Governor(POLICY, projects={"lab": ["alice"]}, audit=AuditLog(path), approver=lambda d: True)
    for i in range(n):
        agent = "alice" if i % 2 else "bob"
        d = g.decide(
            Attempt(agent, "api.test/x", "0xpayee", "0xusdc", "eip155:1", 10_000 + 5_000 * (i % 3)), T0 + i
        )
        if d.verdict == "needs-approval":
            d = g.ask_approver(d, T0 + i)
        if d.allowed:
            g.record(d, "settled" if i % 4 else "failed", T0 + i, tx="0x" + f"{i:064x}")
    g.close()
    return g.head


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    head = write_log(path)
    return path.read_text().splitlines(), head


def test_an_untouched_log_verifies_to_its_head(pristine, tmp_path):
    lines, head = pristine
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = verify(path, head=head)
    assert report.ok and report.head == head and len(report.entries) == len(lines)
    assert json.loads(lines[0])["prev"] == GENESIS


@settings(max_examples=150)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_tampering_is_found_at_the_line_it_happened(pristine, tmp_path_factory, data, kind):
    lines, head = pristine
    n = len(lines)
    out, k = tamper(lines, data, kind)
    path = tmp_path_factory.mktemp("t") / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in out))
    report = verify(path, head=head)
    assert not report.ok
    if kind == "delete" and k == n:
        assert report.problem.startswith(f"line {n - 1}: the last entry is not the expected head")
        assert verify(path).ok  # without a recorded head, a shorter chain is a valid chain
    else:
        assert report.line == k and report.problem.startswith(f"line {k}: ")


def test_a_broken_log_is_not_continued(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 4)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(AuditError, match="line 1: seq"):
        AuditLog(path)


def test_a_continued_log_stays_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    head = write_log(path, 5)
    report = verify(path, head=head)
    assert report.ok and [e["seq"] for e in report.entries] == list(range(1, len(report.entries) + 1))


def test_summary_counts_spend_per_agent_project_and_payee(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path)
    s = summarize(verify(path).entries)
    settled = [e for e in verify(path).entries if e["event"] == "outcome" and e["outcome"] == "settled"]
    assert s["outcomes"]["settled"] == len(settled)
    assert s["spend"]["projects"]["lab"] == s["spend"]["agents"]["alice"]
    assert sum(s["spend"]["agents"].values()) == sum(s["spend"]["payees"].values()) > 0
    assert s["denials"]["spend-limit#0"]["denied"] == s["decisions"]["deny"]
