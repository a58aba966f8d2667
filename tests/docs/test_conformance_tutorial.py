"""The conformance tutorial, followed as written: its server (the page's ``my_server.py`` block, which
the examples test cannot run because the harness starts it) fails the four MUST cases the page shows,
and passes them all once its planted bug is deleted, as ``conformance diff`` then says."""

from __future__ import annotations

import json
import subprocess
import sys

from .blocks import ROOT, python_blocks

PAGE = ROOT / "docs" / "tutorials" / "conformance.md"
BUG = "    serve_unsettled=True,  # a bug on purpose: it serves even when settlement fails\n"
SHOWN_FAILING = {
    "server.replay.concurrent",
    "server.settle.body-withheld-on-failure",
    "server.settle.failure-response",
    "server.settle.pending-not-served",
}


def _server_source() -> str:
    (block,) = [b for b in python_blocks(PAGE) if "resource_server_app" in b.code]
    assert BUG in block.code, "the tutorial's server lost the bug its steps delete"
    return block.code


def _judge(folder, report: str) -> tuple[int, dict]:
    done = subprocess.run(
        # the server reads FACILITATOR_TIMEOUT_SECONDS: 2 s instead of 5 makes the hung-facilitator
        # cases wait less, and changes no outcome
        [sys.executable, "-m", "x402sim", "conformance", "server", "--quiet", "--facilitator-timeout", "2",
         "--cmd", f"{sys.executable} my_server.py", "--json", report],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (folder / report).exists(), done.stdout + done.stderr
    return done.returncode, json.loads((folder / report).read_text())


def _failed(report: dict) -> set[str]:
    return {r["id"] for r in report["results"] if r["outcome"] == "failed"}


def test_the_tutorials_server_fails_what_the_page_shows_and_passes_once_fixed(tmp_path):
    source = _server_source()
    (tmp_path / "my_server.py").write_text(source)
    code, broken = _judge(tmp_path, "broken.json")
    assert code == 1 and _failed(broken) == SHOWN_FAILING

    (tmp_path / "my_server.py").write_text(source.replace(BUG, ""))  # step 4: delete the line
    code, fixed = _judge(tmp_path, "fixed.json")
    assert code == 0 and not _failed(fixed)

    diff = subprocess.run(
        [sys.executable, "-m", "x402sim", "conformance", "diff", "broken.json", "fixed.json"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "0 regressed, 4 fixed" in diff.stdout
