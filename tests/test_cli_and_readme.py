"""The commands a new user runs first (``x402sim demo``, ``--help``, ``--version``), and the
governance example of the docs."""

import json
import shutil
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

from x402sim import verify_audit
from x402sim.cli import app

from .docs.blocks import doc_pages, python_blocks

ROOT = Path(__file__).resolve().parent.parent


def test_demo_reports_balances_and_invariants(tmp_path):
    out = tmp_path / "report" / "demo.json"
    result = CliRunner().invoke(app, ["demo", "--requests", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "USDC balances" in result.output and "constant" in result.output
    data = json.loads(out.read_text())
    assert data["transfers_on_chain"] == data["settlements"] > 0
    assert data["supply_before"] == data["supply_after"]
    assert data["replay_reason"] == "invalid_exact_evm_nonce_already_used"
    moved = {b["who"]: b["after"] - b["before"] for b in data["balances"]}
    assert sum(moved.values()) == 0 and moved["weather"] > 0 and moved["news"] > 0
    assert not list(out.parent.glob("*.tmp"))


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"x402sim {metadata.version('x402sim')}"


def test_help_shows_examples():
    result = CliRunner().invoke(app, ["--help"], prog_name="x402sim")
    assert result.exit_code == 0 and "x402sim demo" in result.output


def test_same_seed_same_run():
    from x402sim.demo import run_demo

    first, again, other = (
        run_demo(seed=3, requests=2),
        run_demo(seed=3, requests=2),
        run_demo(seed=4, requests=2),
    )
    assert first == again
    assert first.events != other.events  # other keys, other nonces, other transaction hashes


def test_governance_snippet_runs_as_written(tmp_path, monkeypatch):
    """The governance example of the docs (wherever it lives: README.md or a docs page) does what its
    text says: a payment to a payee never paid freezes the agent, and the audit log records it."""
    snippets = [
        block
        for page in doc_pages()
        for block in python_blocks(page)
        if block.code.startswith("from x402sim import AuditLog, Governor, Testbed")
    ]
    assert snippets, "the docs lost their governance snippet"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # its audit.jsonl and examples/policy.toml are relative paths
    namespace = {}
    exec(compile(snippets[0].code, snippets[0].page, "exec"), namespace)
    tb, client, governor = namespace["tb"], namespace["client"], namespace["governor"]
    shop = tb.server({"GET /report": 200_000})
    result = client.get(shop, "/report")  # 0.2 USDC to a payee never paid: the new-payee trigger
    assert result.refused.startswith("governance: new-payee: agent frozen") and result.payment is None
    assert governor.frozen["researcher"].trigger == "new-payee"
    assert tb.chain.balance_of(shop.pay_to) == 0 and tb.chain.balance_of(client.address) == 10**6
    governor.close()
    entries = verify_audit(tmp_path / "audit.jsonl").entries
    assert [(e["event"], e.get("decision")) for e in entries] == [("freeze", None), ("decision", "deny")]
