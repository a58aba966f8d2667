"""The official e2e contract a server target gets: the RPC variables by convention, test.config.json
endpoints (paid, failing, other transfer methods), the env they give, and the route-mount check that
stops a run (exit 2) when a declared paid route is not mounted."""

from __future__ import annotations

import json
import sys
import textwrap
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.conformance import catalog, reference, runner
from x402sim.conformance.config import ConfigError, load_config
from x402sim.conformance.context import Endpoint
from x402sim.conformance.harness import HarnessOptions
from x402sim.conformance.targets import ClientCommand

cli = CliRunner()
RPC = "http://127.0.0.1:1/rpc"
RPC_NAMES = {
    "local": {"EVM_RPC_URL", "EVM_TESTNET_RPC_URL", "LOCAL_RPC_URL"},
    "base-sepolia": {"EVM_RPC_URL", "EVM_TESTNET_RPC_URL", "BASE_SEPOLIA_RPC_URL"},
    "base": {"EVM_RPC_URL", "EVM_TESTNET_RPC_URL", "BASE_RPC_URL"},
}
EVERY_RPC_NAME = set().union(*RPC_NAMES.values())


def _harness(preset: str) -> SimpleNamespace:
    """What ``target_env`` reads of a started harness, without starting one."""
    return SimpleNamespace(
        network="eip155:1",
        rpc_url=RPC,
        facilitator_url="http://127.0.0.1:2",
        asset="0x" + "ab" * 20,
        asset_name="USD Coin",
        asset_version="2",
        chain_id=1,
        options=HarnessOptions(network=preset),
    )


# A command that prints its whole environment as its verdict line.
PRINT_ENV = (
    f"{sys.executable} -c \"import json, os; print(json.dumps({{'success': 1, 'env': dict(os.environ)}}))\""
)


@pytest.mark.parametrize("preset", sorted(RPC_NAMES))
def test_a_target_reads_the_chain_under_every_conventional_name(monkeypatch, preset):
    for name in EVERY_RPC_NAME:
        monkeypatch.delenv(name, raising=False)
    env = runner.target_env("server", _harness(preset), runner.RunOptions(), payee="0x" + "11" * 20)
    seen = runner._run_sync(ClientCommand(PRINT_ENV, timeout=20).run(env)).verdict["env"]
    assert {name for name in EVERY_RPC_NAME if name in seen} == RPC_NAMES[preset]
    assert {seen[name] for name in RPC_NAMES[preset]} == {RPC}


def _config(tmp_path, document: dict):
    path = tmp_path / "test.config.json"
    path.write_text(json.dumps(document))
    return path


EXPRESS_LIKE = {
    "name": "shop",
    "type": "server",
    "extensions": ["bazaar"],
    "endpoints": [
        {"path": "/exact/svm", "method": "GET", "requiresPayment": True, "protocolFamily": "svm"},
        {"path": "/exact/evm/eip3009", "requiresPayment": True, "protocolFamily": "evm"},
        {"path": "/exact/evm/permit2", "requiresPayment": True, "transferMethod": "permit2"},
        {"path": "/health", "method": "GET", "health": True},
        {"path": "/close", "method": "POST", "close": True},
        {"path": "/boom", "requiresPayment": True, "failing": True, "extensions": ["bazaar"]},
        {"path": "/second", "method": "post", "requiresPayment": True, "transferMethod": "eip3009"},
    ],
}


def test_config_endpoints_decide_the_routes_and_their_variables(tmp_path):
    config = load_config(_config(tmp_path, EXPRESS_LIKE))
    assert (config.name, config.extensions) == ("shop", ("bazaar",))
    assert [e.label for e in config.endpoints] == ["GET /exact/evm/eip3009", "POST /second"]
    assert config.failing == Endpoint("/boom", failing=True, extensions=("bazaar",))
    assert config.unjudged == []
    assert {m: (e.path, e.transfer_method) for m, e in config.mechanism_routes.items()} == {
        "exact-permit2": ("/exact/evm/permit2", "permit2")
    }
    options = runner.RunOptions(
        endpoints=config.endpoints,
        failing=config.failing,
        unjudged=config.unjudged,
        declared=True,
        mechanism_routes=config.mechanism_routes,
    )
    assert [e.path for e in options.declared_routes()] == [
        "/exact/evm/eip3009",
        "/second",
        "/boom",
        "/exact/evm/permit2",
    ]
    env = runner.target_env("server", _harness("local"), options, payee="0x" + "11" * 20)
    assert (env["PROTECTED_PATH"], env["SECOND_PROTECTED_PATH"], env["FAILING_PATH"]) == (
        "/exact/evm/eip3009",
        "/second",
        "/boom",
    )


def test_routes_a_config_does_not_declare_are_absent_and_others_derived():
    declared = runner.RunOptions(endpoints=[Endpoint("/weather")], declared=True)
    assert declared.route("second") is None and declared.route("failing") is None
    assert (declared.second_path, declared.failing_path) == ("", "")
    derived = runner.RunOptions(endpoints=[Endpoint("/weather", "POST")])
    assert derived.route("second") == Endpoint("/weather-2", "POST")
    assert derived.route("failing") == Endpoint("/weather-fails", "POST", failing=True)
    assert derived.declared_routes() == [Endpoint("/weather", "POST")]
    with pytest.raises(ValueError, match="unknown route kind 'third'"):
        derived.route("third")


@pytest.mark.parametrize(
    "entry, problem",
    [
        (
            {"path": "/a", "requiresPayment": "yes"},
            r"endpoints\[0\]\.requiresPayment: expected true or false",
        ),
        ({"path": "/a", "requiresPayment": True, "transferMethod": 3}, r"endpoints\[0\]\.transferMethod"),
        ({"path": "/a", "requiresPayment": True, "extensions": "bazaar"}, r"endpoints\[0\]\.extensions"),
        ({"path": "/a", "requiresPayment": True, "failing": 1}, r"endpoints\[0\]\.failing: expected true"),
        ({"path": "/a", "requiresPayment": True, "method": "GE T"}, r"endpoints\[0\]\.method"),
        ({"path": "/a", "requiresPayment": True, "transferMethod": "permit2"}, "no paid evm route"),
        ({"path": "/a", "requiresPayment": True, "protocolFamily": "svm"}, "no paid evm route"),
        ({"path": "/health", "health": True}, "no endpoint with requiresPayment true"),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path, entry, problem):
    path = _config(tmp_path, {"endpoints": [entry]})
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_two_failing_routes_are_refused(tmp_path):
    boom = {"requiresPayment": True, "failing": True}
    path = _config(tmp_path, {"endpoints": [{"path": "/a", **boom}, {"path": "/b", **boom}]})
    with pytest.raises(ConfigError, match=r"endpoints\[1\]\.failing: a second failing route"):
        load_config(path)


# A server that mounts GET /weather only (402 unpaid), answers 405 to other methods there and 404
# elsewhere; POST /close ends it (the e2e way to stop a server).
PARTIAL_SERVER = """
import http.server, os, threading
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, status):
        self.send_response(status); self.send_header('content-length', '0'); self.end_headers()
    def do_GET(self):
        self.answer(402 if self.path == '/weather' else 404)
    def do_POST(self):
        self.answer({'/weather': 405, '/close': 200}.get(self.path, 404))
        if self.path == '/close':
            threading.Thread(target=server.shutdown).start()
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H)
print('Server listening', flush=True)
server.serve_forever()
"""


def test_a_declared_route_that_is_not_mounted_stops_the_run(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(PARTIAL_SERVER))
    config = _config(
        tmp_path,
        {
            "name": "partial",
            "endpoints": [
                {"path": "/weather", "requiresPayment": True},
                {"path": "/premium", "requiresPayment": True},
                {"path": "/weather", "method": "POST", "requiresPayment": True, "transferMethod": "permit2"},
            ],
        },
    )
    outputs = {kind: tmp_path / f"report.{kind}" for kind in ("json", "sarif")}
    args = ["conformance", "server", "--cmd", f"{sys.executable} {script}", "--config", str(config)]
    for kind, path in outputs.items():
        args += [f"--{kind}", str(path)]
    result = cli.invoke(app, [*args, "--ready-timeout", "10"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "route GET /premium answered 404; route POST /weather answered 405: is it mounted?" in message, (
        message
    )
    assert "GET /weather answered" not in message
    assert not any(path.exists() for path in outputs.values())  # no case ran, no report


def test_routes_a_config_declares_are_the_routes_the_cases_use():
    """The reference server mounts what the variables name: with the second and failing routes
    declared (named, as the cases look for them, main path + -2 and -fails), their cases run on
    them and pass; with only the main one declared, the variables are empty and the cases skip."""
    ids = ["server.replay.cross-endpoint", "server.settle.handler-error-not-settled"]
    cases = [catalog.load()[i] for i in ids]
    main = Endpoint("/weather")
    full = runner.RunOptions(
        endpoints=[main, Endpoint("/weather-2")],
        failing=Endpoint("/weather-fails", failing=True),
        declared=True,
    )
    report = runner.run("server", reference.reference_target("server"), cases, full)
    assert [r.outcome for r in report.results] == ["passed", "passed"], report.results
    bare = runner.RunOptions(endpoints=[main], declared=True)
    report = runner.run("server", reference.reference_target("server"), cases, bare)
    assert [r.outcome for r in report.results] == ["skipped", "skipped"]
    assert "no second paid route" in report.results[0].message
    assert "no failing paid route" in report.results[1].message
