"""``x402sim pay --policy --audit`` and ``x402sim audit verify|summary|unfreeze``, run with typer's
CliRunner against ``x402sim serve`` on loopback, judged on chain (balances read over its RPC)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.governance.tampering import tamper
from tests.http.conftest import CLI, start_cli, stop_cli, token_balance
from x402sim.cli import app
from x402sim.governance import Attempt, AuditLog, Governor, load_policies, parse_policies, summarize, verify
from x402sim.http import cli as http_cli

ROOT = Path(__file__).resolve().parent.parent
PRICE = 1_000  # what `x402sim serve`'s demo server charges for GET /weather
FUNDS = 1_000_000_000  # each served test account's USDC (atomic units)
ACCOUNTS = 40


@pytest.fixture(scope="module")
def served():
    proc, info = start_cli("serve", "--port", "0", "--accounts", str(ACCOUNTS))
    info["unused"] = iter(info["accounts"][1:])  # the first is shared by tests that judge by differences
    yield info
    assert stop_cli(proc) == 0


@pytest.fixture
def payer(served):
    """A served account no other test has paid from."""
    return next(served["unused"])


def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def pay(served, account, *args, input=None):
    url = served["server_url"] + "/weather"
    return invoke(
        "pay", url, "--rpc-url", served["rpc_url"], "--key", account["private_key"], *args, input=input
    )


def balance(served, account) -> int:
    return token_balance(served, account["address"])


def write_policy(path: Path, rules: str, triggers: str = "", projects: str = "") -> Path:
    path.write_text(f'{projects}\n[[policies]]\nname = "p"\nrules = [{rules}]\ntriggers = [{triggers}]\n')
    return path


def denial_line(result) -> str:
    (line,) = result.stderr.splitlines()
    return line


# -- the example policy -------------------------------------------------------------------------------


def test_the_example_policy_loads_and_holds_every_kind_the_readme_shows():
    policies = load_policies(ROOT / "examples" / "policy.toml")
    chosen = policies.policy()
    kinds = [r.kind for r in chosen.rules] + [t.kind for t in chosen.triggers]
    for kind in ("spend-limit", "request-cap", "usage-limit", "rate-limit", "allow", "approval"):
        assert kind in kinds
    for kind in ("velocity", "new-payee", "failure-streak", "endpoint-burst"):
        assert kind in kinds
    periods = {r.period for r in chosen.rules if r.kind == "spend-limit"}
    assert {"day", "month"} <= periods and len(policies.projects) == 1


# -- pay --policy --------------------------------------------------------------------------------------


@settings(max_examples=8)
@given(cap=st.integers(0, 3 * PRICE))
def test_a_payment_over_the_cap_is_denied_with_exit_3_and_nothing_moves(served, tmp_path_factory, cap):
    account = served["accounts"][0]
    tmp = tmp_path_factory.mktemp("cap")
    policy = write_policy(tmp / "p.toml", f'{{kind = "request-cap", name = "cap", max = "{cap / 1e6:.6f}"}}')
    audit = tmp / "audit.jsonl"
    before = balance(served, account), token_balance(served, served["payee"])

    result = pay(served, account, "--policy", policy, "--audit", audit)

    moved = before[0] - balance(served, account), token_balance(served, served["payee"]) - before[1]
    if cap < PRICE:
        assert result.exit_code == 3, result.output
        assert denial_line(result).startswith(
            "payment denied by policy: cap: 0.001 USDC is above the per-request"
        )
        assert moved == (0, 0)
    else:
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["paid"] is True and moved == (PRICE, PRICE)
    report = verify(audit)
    assert report.ok
    events = [(e["event"], e.get("decision") or e.get("outcome")) for e in report.entries]
    assert events == (
        [("decision", "deny")] if cap < PRICE else [("decision", "allow"), ("outcome", "settled")]
    )
    ok = invoke("audit", "verify", audit, "--head", report.head)
    assert ok.exit_code == 0 and ok.stdout == f"{audit}: ok, {len(events)} entries, head {report.head}\n"


def test_a_second_invocation_is_denied_by_the_spend_the_first_used_up(served, payer, tmp_path):
    policy = write_policy(
        tmp_path / "p.toml",
        '{kind = "spend-limit", name = "budget", max = "0.0015", period = "day"}',
        projects='[projects]\nlab = ["bot"]',
    )
    audit = tmp_path / "logs" / "audit.jsonl"
    start = balance(served, payer)

    first = pay(served, payer, "--policy", policy, "--audit", audit, "--agent", "bot")
    assert first.exit_code == 0, first.output
    assert balance(served, payer) == start - PRICE
    second = pay(served, payer, "--policy", policy, "--audit", audit, "--agent", "bot")
    assert second.exit_code == 3, second.output
    assert denial_line(second) == (
        "payment denied by policy: budget: "
        "0.001 USDC would bring spend to 0.002 USDC, over 0.0015 USDC this day"
    )
    assert balance(served, payer) == start - PRICE
    other = pay(served, payer, "--policy", policy, "--audit", audit, "--agent", "other")  # its own budget
    assert other.exit_code == 0 and balance(served, payer) == start - 2 * PRICE

    verified = invoke("audit", "verify", audit)
    assert verified.exit_code == 0 and ", 5 entries, head " in verified.stdout
    as_json = invoke("audit", "summary", audit, "--json")
    assert as_json.exit_code == 0
    summary = json.loads(as_json.stdout)
    assert summary == summarize(verify(audit).entries)
    assert summary["spend"]["agents"] == {"bot": PRICE, "other": PRICE}
    assert summary["spend"]["projects"] == {"lab": PRICE}
    assert summary["spend"]["payees"] == {served["payee"]: 2 * PRICE}
    assert summary["denials"] == {"budget": {"denied": 1, "amount": PRICE}}
    text = invoke("audit", "summary", audit)
    assert text.exit_code == 0
    for needle in ("Spend per agent", "bot", "0.001000", "0.002000", "Spend per project", "lab", "budget"):
        assert needle in text.stdout, needle


def test_concurrent_pay_processes_sharing_an_audit_file_take_turns(served, payer, tmp_path):
    """Two `x402sim pay` processes at once, a limit only one fits: the audit file is locked while each
    runs, so exactly one pays and the log stays one chain."""
    policy = write_policy(tmp_path / "p.toml", '{kind = "spend-limit", name = "budget", max = "0.0015"}')
    audit = tmp_path / "audit.jsonl"
    start = balance(served, payer)
    args = [*CLI, "pay", served["server_url"] + "/weather", "--rpc-url", served["rpc_url"]]
    args += ["--key", payer["private_key"], "--policy", str(policy), "--audit", str(audit)]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outcomes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert outcomes == [0, 3]
    assert balance(served, payer) == start - PRICE
    report = verify(audit)
    assert report.ok and [e.get("decision") for e in report.entries if e["event"] == "decision"] == [
        "allow",
        "deny",
    ]


def test_approvals_need_approve_or_a_person_on_a_terminal(served, payer, tmp_path, monkeypatch):
    policy = write_policy(tmp_path / "p.toml", '{kind = "approval", name = "big", above = "0.0005"}')
    audit = tmp_path / "audit.jsonl"
    start = balance(served, payer)

    unattended = pay(served, payer, "--policy", policy, "--audit", audit)
    assert unattended.exit_code == 3
    assert denial_line(unattended) == (
        "payment denied by policy: big: "
        "refused by no approver (pass --approve, or run on a terminal to be asked)"
    )
    granted = pay(served, payer, "--policy", policy, "--audit", audit, "--approve")
    assert granted.exit_code == 0 and balance(served, payer) == start - PRICE

    monkeypatch.setattr(http_cli, "_interactive", lambda: True)
    asked = pay(served, payer, "--policy", policy, "--audit", audit, input="y\n")
    assert asked.exit_code == 0, asked.output
    prompt = asked.stderr
    for needle in ("0.001000 USDC", served["payee"], "/weather", "big", "[y/N]"):
        assert needle in prompt, needle
    assert balance(served, payer) == start - 2 * PRICE
    declined = pay(served, payer, "--policy", policy, "--audit", audit, input="n\n")
    # (the prompt and the denial share a line here: a terminal would echo the answer and its newline)
    assert declined.exit_code == 3 and declined.stderr.endswith(
        "payment denied by policy: big: refused by approver\n"
    )
    assert balance(served, payer) == start - 2 * PRICE
    # end of input (Ctrl-D) while asked is a refusal too, logged as one, not a crash
    closed = pay(served, payer, "--policy", policy, "--audit", audit, input="")
    assert closed.exit_code == 3 and closed.stderr.endswith(
        "payment denied by policy: big: refused by approver\n"
    ), closed.output
    assert balance(served, payer) == start - 2 * PRICE
    summary = summarize(verify(audit).entries)
    assert summary["approvals"] == {"requested": 5, "granted": 2, "refused": 3}


def test_audit_unfreeze_lets_a_frozen_agent_pay_again(served, payer, tmp_path):
    policy = write_policy(
        tmp_path / "p.toml",
        '{kind = "request-cap", max = "1"}',
        triggers='{kind = "endpoint-burst", name = "burst", max_requests = 1, window = 3600}',
    )
    audit = tmp_path / "audit.jsonl"
    start = balance(served, payer)
    governed = ("--policy", policy, "--audit", audit, "--agent", "bot")

    assert pay(served, payer, *governed).exit_code == 0
    burst = pay(served, payer, *governed)
    assert burst.exit_code == 3 and denial_line(burst).startswith(
        "payment denied by policy: burst: agent frozen: 2 payments to 127.0.0.1:"
    )
    frozen = pay(served, payer, *governed)
    assert frozen.exit_code == 3 and denial_line(frozen).startswith("payment denied by policy: frozen: ")
    assert balance(served, payer) == start - PRICE

    lines = audit.read_text()
    nobody = invoke("audit", "unfreeze", audit, "--agent", "alice", "--by", "ops")
    assert nobody.exit_code == 1 and "agent 'alice' is not frozen" in nobody.stderr and "bot" in nobody.stderr
    assert audit.read_text() == lines
    lifted = invoke("audit", "unfreeze", audit, "--agent", "bot", "--by", "ops", "--reason", "a test burst")
    assert lifted.exit_code == 0, lifted.output
    last = verify(audit).entries[-1]
    assert {k: last[k] for k in ("event", "agent", "by", "reason")} == {
        "event": "unfreeze",
        "agent": "bot",
        "by": "ops",
        "reason": "a test burst",
    }
    assert set(last) == {"seq", "event", "time", "agent", "by", "reason", "prev", "hash"}
    again = invoke("audit", "unfreeze", audit, "--agent", "bot", "--by", "ops")
    assert again.exit_code == 1 and "not frozen" in again.stderr

    assert pay(served, payer, *governed).exit_code == 0
    assert balance(served, payer) == start - 2 * PRICE
    summary = invoke("audit", "summary", audit)
    assert summary.exit_code == 0 and "lifted" in summary.stdout and "unfreezes: 1" in summary.stdout


BROKEN_POLICIES = {
    "policies[0].rules[0].max": '[[policies]]\nname = "p"\nrules = [{kind = "spend-limit", max = "abc"}]\n',
    "policies[0].rules[0].maxx": '[[policies]]\nname = "p"\nrules = [{kind = "spend-limit", maxx = "1"}]\n',
    "policies[0].rules[0]": '[[policies]]\nname = "p"\nrules = [{kind = "spend-limt", max = "1"}]\n',
    "policies[0].triggers[0].applies_to": (
        '[[policies]]\nname = "p"\n'
        'triggers = [{kind = "failure-streak", count = 2, applies_to = "project:x"}]\n'
    ),
}


@pytest.mark.parametrize("where", sorted(BROKEN_POLICIES))
def test_a_broken_policy_file_exits_2_naming_the_key_path_and_writes_nothing(served, tmp_path, where):
    policy = tmp_path / "p.toml"
    policy.write_text(BROKEN_POLICIES[where])
    audit = tmp_path / "audit.jsonl"
    account = served["accounts"][0]
    start = balance(served, account)
    result = pay(served, account, "--policy", policy, "--audit", audit)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {policy}: {where}: ")
    assert not audit.exists() and balance(served, account) == start


def test_governance_options_are_checked_before_anything_is_contacted(tmp_path):
    two = tmp_path / "two.toml"
    two.write_text('[[policies]]\nname = "a"\n[[policies]]\nname = "b"\n')
    url = "http://127.0.0.1:9/weather"  # nothing listens: every case must fail before contacting it
    cases = [
        (("--audit", tmp_path / "a.jsonl"), "--audit needs --policy"),
        (("--approve",), "--approve needs --policy"),
        (("--policy", two), "the file has 2 policies: name one of ['a', 'b']"),
        (("--policy", two, "--policy-name", "c"), "no policy named 'c' (known: a, b)"),
        (("--policy", tmp_path / "missing.toml"), "missing.toml: no such file"),
    ]
    for args, message in cases:
        result = invoke("pay", url, "--key", "0x" + "11" * 32, "--network", "eip155:31337", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert not (tmp_path / "a.jsonl").exists()


def test_a_broken_audit_file_is_not_continued(served, tmp_path):
    policy = write_policy(tmp_path / "p.toml", '{kind = "request-cap", max = "1"}')
    audit = tmp_path / "audit.jsonl"
    account = served["accounts"][0]
    assert pay(served, account, "--policy", policy, "--audit", audit).exit_code == 0
    assert pay(served, account, "--policy", policy, "--audit", audit).exit_code == 0
    lines = audit.read_text().splitlines()
    lines[2] = lines[2].replace('"allow"', '"deny"')
    audit.write_text("\n".join(lines) + "\n")
    start = balance(served, account)
    result = pay(served, account, "--policy", policy, "--audit", audit)
    assert result.exit_code == 2 and f"{audit}: line 3: hash does not match" in result.stderr
    assert audit.read_text().splitlines() == lines and balance(served, account) == start


# -- audit verify / summary on a log written once by a governor ------------------------------------------

T0 = 1_767_225_600
LOG_POLICY = parse_policies(
    {
        "projects": {"lab": ["alice", "carol"]},
        "policies": [
            {
                "name": "p",
                "rules": [
                    {"kind": "spend-limit", "name": "budget", "max": "0.06", "period": "day"},
                    {"kind": "request-cap", "name": "cap", "max": "0.03"},
                    {"kind": "approval", "name": "big", "above": "0.02"},
                ],
                "triggers": [{"kind": "failure-streak", "name": "streak", "count": 3}],
            }
        ],
    }
)


def write_log(path: Path) -> str:
    """Settled, failed and denied payments, approvals granted and refused, a freeze and an unfreeze."""
    answers = iter([True, False] * 10)
    g = Governor(
        LOG_POLICY.policy(),
        projects=LOG_POLICY.projects,
        audit=AuditLog(path),
        approver=lambda d: next(answers),
    )
    amounts = [10_000, 25_000, 40_000, 15_000, 25_000, 5_000, 40_000, 40_000, 40_000, 10_000]
    for i, amount in enumerate(amounts):
        agent = ("alice", "bob", "carol")[i % 3] if i < 6 else "dave"
        payee = "0xpayee" if i % 2 else "0xother"
        d = g.decide(Attempt(agent, "api.test/x", payee, "0xusdc", "eip155:1", amount), T0 + i)
        if d.verdict == "needs-approval":
            d = g.ask_approver(d, T0 + i)
        if d.allowed:
            g.record(d, "failed" if i == 3 else "settled", T0 + i, tx=f"0x{i:064x}")
    assert "dave" in g.frozen
    g.unfreeze("dave", T0 + 20, by="ops", reason="checked")
    g.close()
    return g.head


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "audit.jsonl"
    head = write_log(path)
    return path.read_text().splitlines(), head


@settings(max_examples=60)
@given(data=st.data(), kind=st.sampled_from(["edit", "delete", "swap"]))
def test_a_tampered_log_is_reported_at_the_line_it_was_tampered_with(pristine, tmp_path_factory, data, kind):
    lines, head = pristine
    n = len(lines)
    out, k = tamper(lines, data, kind)
    path = tmp_path_factory.mktemp("t") / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in out))

    result = invoke("audit", "verify", path, "--head", head)
    at_end = kind == "delete" and k == n  # a shorter valid chain: only the recorded head tells
    line = n - 1 if at_end else k
    assert result.exit_code == 1 and result.stdout.startswith(f"{path}: line {line}: "), result.output
    assert len(result.stdout.splitlines()) == 1
    summary = invoke("audit", "summary", path)
    if at_end:
        assert summary.exit_code == 0
    else:
        assert summary.exit_code == 1 and summary.stderr.startswith(f"error: {path}: line {k}: ")


def test_audit_verify_prints_count_and_head_and_summary_matches_the_log(pristine, tmp_path):
    lines, head = pristine
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    ok = invoke("audit", "verify", path, "--head", "0x" + head.upper())
    assert ok.exit_code == 0 and ok.stdout == f"{path}: ok, {len(lines)} entries, head {head}\n"

    expected = summarize(verify(path).entries)
    as_json = invoke("audit", "summary", path, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == expected
    spend = expected["spend"]
    assert spend["agents"] and spend["projects"] and expected["denials"] and expected["freezes"]
    assert expected["approvals"]["granted"] and expected["approvals"]["refused"]

    text = invoke("audit", "summary", path).stdout
    assert f"head {head}" in text
    for table in ("agents", "projects", "payees"):
        for name, amount in spend[table].items():
            assert f"{amount // 10**6}.{amount % 10**6:06d}" in text and name in text
    for rule, row in expected["denials"].items():
        assert rule in text and f"{row['amount'] / 1e6:.6f}" in text
    approvals = expected["approvals"]
    assert f"approvals: requested {approvals['requested']}, granted {approvals['granted']}" in text
    assert "streak" in text and "dave" in text and "lifted" in text and "unfreezes: 1" in text


def test_audit_commands_on_a_missing_or_bad_file_say_so_without_a_traceback(tmp_path):
    missing = tmp_path / "missing.jsonl"
    verify_missing = invoke("audit", "verify", missing)
    assert verify_missing.exit_code == 1 and verify_missing.stdout == f"{missing}: no such file\n"
    for args in (("summary", missing), ("unfreeze", missing, "--agent", "a", "--by", "b")):
        result = invoke("audit", *args)
        assert result.exit_code == 1 and result.stderr == f"error: {missing}: no such file\n"
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not missing.exists()
    bad_head = invoke("audit", "verify", missing, "--head", "xyz")
    assert bad_head.exit_code == 2 and "--head" in bad_head.stderr
    usage = invoke("audit", "unfreeze", missing, "--agent", "a")  # --by is required
    assert usage.exit_code == 2
