"""The conformance core: catalog selection, targets' start and stop contract, the runner's outcomes,
test.config.json, and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import textwrap

import httpx
import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.catalog import Case, CaseFailed, CaseSkipped
from x402sim.conformance.config import ConfigError, load_config
from x402sim.conformance.context import CaseContext
from x402sim.conformance.targets import ServiceCommand, TargetError

cli = CliRunner()


def test_every_case_has_a_well_formed_entry():
    cases = catalog.load()
    assert len(cases) >= 3
    for case in cases.values():
        assert case.role in catalog.ROLES and case.level in ("MUST", "SHOULD", "STRICT")
        assert case.rests_on and case.description and "\n" not in case.description


def test_selection_by_glob_prefix_exclude_and_level():
    every = catalog.select()
    servers = catalog.select("server")
    assert servers and all(c.role == "server" for c in servers)
    assert catalog.select(include=["server"]) == servers
    assert catalog.select(include=["server.*"], exclude=["server.handshake"]) == [
        c for c in servers if c.group != "handshake"
    ]
    musts = catalog.select(levels=["must"])
    assert musts and all(c.level == "MUST" for c in musts) and len(musts) <= len(every)
    with pytest.raises(ValueError, match="unknown level"):
        catalog.select(levels=["MAY"])


def test_registering_a_bad_case_names_the_problem():
    with pytest.raises(ValueError, match=r"role\.group\.name"):
        catalog.case("server.oneword", "MUST", "x", "y")
    with pytest.raises(ValueError, match="level"):
        catalog.case("server.a.b", "MAY", "x", "y")
    with pytest.raises(ValueError, match="registered twice"):
        catalog.case(next(iter(catalog.load())), "MUST", "x", "y")(lambda ctx: None)


def test_runner_turns_raises_into_outcomes():
    async def fails(ctx):
        raise CaseFailed("broke the rule")

    async def skips(ctx):
        raise CaseSkipped("does not apply")

    async def crashes(ctx):
        raise RuntimeError("harness bug")

    async def passes(ctx):
        ctx.fact("head", ctx.harness.block_number())

    cases = [
        Case(f"server.test.{fn.__name__}", "MUST", "test", "test", fn)
        for fn in (fails, skips, crashes, passes)
    ]
    report = runner.run("server", reference.reference_target("server"), cases)
    outcomes = {r.id.rsplit(".", 1)[1]: (r.outcome, r.message) for r in report.results}
    assert outcomes["fails"] == ("failed", "broke the rule")
    assert outcomes["skips"] == ("skipped", "does not apply")
    assert outcomes["crashes"] == ("error", "RuntimeError: harness bug")
    assert outcomes["passes"][0] == "passed"
    assert report.results[3].evidence.chain["head"] > 0
    assert report.exit_code() == 1  # a MUST case failed: that verdict wins over the one not judged


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "target.py"
    path.write_text(textwrap.dedent(body))
    return f"{sys.executable} {path}"


def test_a_command_that_exits_early_is_a_target_error_with_its_output(tmp_path):
    cmd = _script(tmp_path, "print('cannot bind: missing EVM_NETWORK'); raise SystemExit(3)")
    with pytest.raises(TargetError, match=r"(?s)exited with code 3.*missing EVM_NETWORK"):
        ServiceCommand("server", cmd, ready_timeout=10).start({})


def test_a_command_never_ready_is_stopped_and_reported(tmp_path):
    cmd = _script(tmp_path, "import time\nprint('starting', flush=True)\ntime.sleep(60)")
    target = ServiceCommand("server", cmd, ready_timeout=1.0)
    with pytest.raises(TargetError, match=r"(?s)not ready within 1 s.*starting"):
        target.start({})
    assert target.proc.poll() is not None  # stopped, not left behind


def test_readiness_by_health_and_stop_by_close(tmp_path):
    # No readiness line: /health answers; POST /close makes it exit 0.
    cmd = _script(
        tmp_path,
        """
        import http.server, os, threading
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
            def do_POST(self):
                self.send_response(200); self.end_headers()
                threading.Thread(target=server.shutdown).start()
            def log_message(self, *a): pass
        server = http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H)
        server.serve_forever()
        """,
    )
    target = ServiceCommand("facilitator", cmd, ready_timeout=10)
    url = target.start({})
    assert url.startswith("http://127.0.0.1:")
    target.stop()
    assert target.proc.returncode == 0


def test_config_file_gives_name_and_paid_endpoints(tmp_path):
    path = tmp_path / "test.config.json"
    path.write_text(
        json.dumps(
            {
                "name": "my-server",
                "type": "server",
                "endpoints": [
                    {"path": "/free", "method": "GET", "requiresPayment": False},
                    {"path": "/weather", "method": "get", "requiresPayment": True},
                    {"path": "/premium", "requiresPayment": True},
                ],
            }
        )
    )
    config = load_config(path)
    assert config.name == "my-server"
    assert [(e.path, e.method) for e in config.endpoints] == [("/weather", "GET"), ("/premium", "GET")]


@pytest.mark.parametrize(
    "document, problem",
    [
        ("{", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"endpoints": [{"path": 3}]}', r"endpoints\[0\]"),
        ('{"endpoints": [{"path": "weather"}]}', r"endpoints\[0\].path: must start with /"),
        ('{"endpoints": [{"path": "/a", "requiresPayment": false}]}', "no endpoint with requiresPayment"),
    ],
)
def test_bad_config_files_are_named(tmp_path, document, problem):
    path = tmp_path / "test.config.json"
    path.write_text(document)
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_cli_list_and_schema():
    result = cli.invoke(app, ["conformance", "list", "--json", "--controls"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["id"] for r in rows} == set(catalog.load())
    assert all("controls" in r for r in rows)
    schema = json.loads(cli.invoke(app, ["conformance", "schema"]).output)
    assert schema["title"] == "x402sim conformance report"


@pytest.mark.parametrize(
    "args, message",
    [
        (["server"], "exactly one of --cmd, --url or --builtin"),
        (["server", "--builtin", "reference", "--trust", "blockchain"], "unknown trust feature 'blockchain'"),
        (["facilitator", "--builtin", "reference-trust"], "--builtin 'reference-trust'"),
        (["client"], "exactly one of --cmd or --builtin"),
        (["server", "--url", "http://192.0.2.1:4021"], "not a loopback address"),
        (["server", "--cmd", "true", "--network", "mainnet"], "--network 'mainnet'"),
        (["server", "--cmd", "true", "--cases", "nothing.matches.this"], "no case matches"),
        (["list", "--role", "agent"], "--role 'agent'"),
        (["list", "--level", "MAY"], "unknown level"),
        (["facilitator", "--builtin", "reference", "--mechanism", "permit3"], "unknown mechanism 'permit3'"),
        (["list", "--mechanism", "exact,upto"], "unknown mechanism 'exact'"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_message(args, message):
    result = cli.invoke(app, ["conformance", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_exits_2_when_the_target_cannot_start(tmp_path):
    cmd = _script(tmp_path, "raise SystemExit('no such app')")
    out = tmp_path / "report.json"
    args = ["conformance", "server", "--cmd", cmd, "--json", str(out), "--ready-timeout", "10"]
    result = cli.invoke(app, args)
    assert result.exit_code == 2
    assert "exited with code 1" in result.output and "no such app" in result.output
    assert not out.exists()  # nothing half-written


X402SIM = [sys.executable, "-m", "x402sim"]
CLIENT_COMMAND_CASES = (
    "client.pays.right-amount",
    "client.pays.v*-header",
    "client.retries.lost-answer-500",
    "client.retries.lost-answer-silent",
)


@pytest.mark.parametrize(
    "role, target, selection",
    [
        ("server", "serve server --from-env", ["--facilitator-timeout", "2"]),
        ("facilitator", "serve facilitator --from-env", []),
        # a client command starts once per run of a case: a few payment cases and lost answers suffice
        ("client", "pay --from-env", [f"--cases={glob}" for glob in CLIENT_COMMAND_CASES]),
    ],
)
def test_the_reference_commands_are_targets_like_any_other(tmp_path, role, target, selection):
    """`x402sim conformance <role> --cmd "x402sim ... --from-env"` on the base-sepolia preset: the
    reference roles read the harness's environment, pass every selected case, and every report
    file is written."""
    import subprocess

    cmd = f"PAYMENT_IDENTIFIER=required {sys.executable} -m x402sim {target}"
    outputs = {kind: tmp_path / f"report.{kind}" for kind in ("json", "junit", "markdown", "html")}
    args = [*X402SIM, "conformance", role, "--cmd", cmd, "--network", "base-sepolia", "--quiet", *selection]
    for kind, path in outputs.items():
        args += [f"--{kind}", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(outputs["json"].read_text())
    assert report["network"] == "eip155:84532" and report["target"]["kind"] == "command"
    outcomes = {r["id"]: r["outcome"] for r in report["results"]}
    assert set(outcomes.values()) <= {"passed", "skipped"}, outcomes
    # the trust cases skip: the command advertises no trust feature
    assert all(o == "skipped" for k, o in outcomes.items() if k.split(".")[1] == "trust")
    judged = [o for k, o in outcomes.items() if k.split(".")[1] != "trust"]
    assert sum(o == "passed" for o in judged) >= 0.9 * len(judged)
    assert all(path.stat().st_size > 0 for path in outputs.values())
    assert "<html" in outputs["html"].read_text().lower()


def test_a_request_with_no_answer_fails_its_case_naming_the_transport_error():
    with socket.socket() as sock:  # a loopback port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def refused() -> str:
        async with httpx.AsyncClient(timeout=5) as http:
            ctx = CaseContext(None, None, None, f"http://127.0.0.1:{port}", http, random.Random(1))  # type: ignore[arg-type]
            response = await ctx.send("settle copy #1", "POST", "/settle")
            with pytest.raises(CaseFailed) as failed:
                ctx.require_answer(response, "settle copy #1")
            assert ctx.require_answer(httpx.Response(200), "other") is not None
            return str(failed.value)

    message = asyncio.run(refused())
    assert message.startswith("settle copy #1: no answer (ConnectError")
