"""``x402sim serve a2a`` and ``x402sim pay --a2a`` run as a user runs them: subprocesses on loopback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.http.conftest import run_cli, start_cli, stop_cli, token_balance
from x402sim.cli import app


def test_serve_a2a_and_pay_a2a_settle_on_chain() -> None:
    proc, info = start_cli("serve", "a2a", "--port", "0", "--accounts", "2")
    try:
        assert info["agent_url"].startswith("http://127.0.0.1:") and info["skills"] == {"weather": 1_000}
        payer = info["accounts"][0]
        pay = run_cli(
            "pay", "--a2a", info["agent_url"], "--message", "Oslo", "--rpc-url", info["rpc_url"], "-v"
        )
        assert pay.returncode == 0, pay.stderr
        task = json.loads(pay.stdout)
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["status"]["message"]["metadata"]["x402.payment.status"] == "payment-completed"
        assert task["artifacts"][0]["parts"][1]["data"]["place"] == "Oslo"
        assert '"success": true' in pay.stderr
        assert token_balance(info, payer["address"]) == 1_000_000_000 - 1_000
        assert token_balance(info, info["payee"]) == 1_000
    finally:
        assert stop_cli(proc) == 0


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--message", "Oslo"], "--message and --skill need --a2a"),
        (["--a2a", "http://127.0.0.1:9"], "--a2a needs --message"),
        (["http://127.0.0.1:9/x", "--a2a", "http://127.0.0.1:9", "--message", "m"], "--a2a replaces URL"),
        (["--a2a", "http://127.0.0.1:9", "--message", "m", "--refund"], "--refund"),
        (["--a2a", "http://example.com", "--message", "m", "--network", "eip155:1"], "loopback"),
    ],
)
def test_pay_a2a_refuses_bad_options_with_one_message(args, problem) -> None:
    result = CliRunner().invoke(app, ["pay", *args, "--network", "eip155:31337"])
    assert result.exit_code == 2, result.output
    assert problem in result.output
