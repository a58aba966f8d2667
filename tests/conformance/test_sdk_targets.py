"""The official x402 SDKs as conformance targets: each role of the Python SDK (``x402``) and of the
TypeScript SDK (``@x402/*``) runs the whole catalog of its role, and every case's outcome must match
the committed expectation in ``tests/conformance/expectations/<target>.json``.

An SDK failing a case is a finding, not a test failure: the expectation file records it, and its
``findings`` say which rule each one rests on (the case's level, kind and ``rests_on`` in the
catalog, for every case not passed). The test fails when an outcome changes (the SDK or the case
changed), when a case has no expectation yet, or when an expected case is gone from the catalog; the
message lists every such case. Only ``outcomes`` are compared with a run; ``findings`` are checked
against the catalog without running any SDK, so a level or kind changed in the catalog cannot leave
a file saying otherwise.

Regenerate the expectation files (after adding cases, or upgrading an SDK; review the diff):

    X402SIM_UPDATE_EXPECTATIONS=1 .venv/bin/pytest tests/conformance/test_sdk_targets.py -q

The targets are the scripts in ``tests/interop/sdk_targets`` (Python, run with this interpreter),
``tests/interop/node/conformance-*.mjs`` (TypeScript) and, over MCP, the Python SDK's ``x402.mcp``
server and client in ``tests/interop/python`` (the official e2e MCP components: tool ``get_weather``,
exact only; the server on stdio, the client over SSE to the harness's tool server), configured by the
official e2e harness's environment on the ``base-sepolia`` preset, so the SDKs run with their default
asset tables. A target whose SDK is missing is skipped with the reason (and, for TypeScript, the
install command). The
Python client runs through its fork server (``python_client_forks.py``): still one process per run,
forked after the SDK's imports instead of started afresh, which saves about a second per case.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from x402sim.conformance import catalog, runner, targets
from x402sim.conformance.context import Endpoint
from x402sim.conformance.harness import HarnessOptions

TESTS = Path(__file__).resolve().parents[1]
EXPECTATIONS = Path(__file__).resolve().parent / "expectations"
PYTHON_DIR = TESTS / "interop" / "sdk_targets"
NODE_DIR = TESTS / "interop" / "node"
NODE_INSTALL = "cd tests/interop/node && npm ci --no-audit --no-fund"
NODE_PACKAGES = (
    "@x402/core",
    "@x402/evm",
    "@x402/express",
    "@x402/extensions",
    "@x402/fetch",
    "express",
    "viem",
)
NETWORK = "base-sepolia"
UPDATE = os.environ.get("X402SIM_UPDATE_EXPECTATIONS") == "1"
FACILITATOR_BOUND = 2.0  # seconds a server target may wait for a hung facilitator (the SDKs' default: 90)
MCP_SERVER = "tests.interop.python.sdk_mcp_server"
MCP_CLIENT = "tests.interop.python.sdk_mcp_client"
MCP_TOOL = "get_weather"  # the official e2e MCP servers' tool
EXACT = (catalog.DEFAULT_MECHANISM,)


@dataclass(frozen=True)
class SdkTarget:
    name: str
    role: str
    sdk: str  # "python" or "typescript"
    script: str
    mechanisms: tuple[str, ...] = catalog.MECHANISMS  # what it is configured to speak: its cases run
    transport: str = catalog.DEFAULT_TRANSPORT  # what carries the harness's calls (mcp: an MCP target)

    def command(self):
        if self.transport == "mcp":
            return self.mcp_command()
        if self.sdk == "python":
            cmd, cwd = f"{shlex.quote(sys.executable)} {self.script}", PYTHON_DIR
        else:
            cmd, cwd = f"node {self.script}", NODE_DIR
        if self.role == "client" and self.sdk == "python":
            forks = f"{shlex.quote(sys.executable)} {Path(self.script).stem}_forks.py"
            return ForkedClient(forks, cwd=str(cwd), name=self.name)
        if self.role == "client":
            return targets.ClientCommand(cmd, cwd=str(cwd), name=self.name)
        return targets.ServiceCommand(self.role, cmd, cwd=str(cwd), name=self.name)

    def mcp_command(self):
        """The Python SDK's MCP server (a stdio command, from the e2e environment) or its MCP client
        (the e2e client, its runs forked by ``python_client_forks.py``); ``script`` is the module."""
        if self.role == "client":
            forks = f"{shlex.quote(sys.executable)} python_client_forks.py {self.script}"
            return ForkedClient(forks, cwd=str(PYTHON_DIR), name=self.name)
        from x402sim.conformance.mcp_kit import McpStdioCommand

        command = f"{shlex.quote(sys.executable)} -m {self.script} --from-env"
        return McpStdioCommand(command, name=self.name, cwd=str(TESTS.parent))

    def options(self) -> runner.RunOptions:
        harness = HarnessOptions(network=NETWORK, facilitator_timeout=FACILITATOR_BOUND)
        options = runner.RunOptions(harness=harness, transport=self.transport)
        if self.transport == "mcp" and self.role == "server":  # the e2e MCP server's one paid tool
            options.endpoints, options.declared = [Endpoint(f"/{MCP_TOOL}")], True
        return options


@dataclass
class ForkedClient(targets.ClientCommand):
    """A client target whose every run is a child of one fork server (``cmd``; its protocol is in
    ``python_client_forks.py``): what a ``ClientCommand`` does per run, but without the imports."""

    _server: subprocess.Popen | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _waiting: dict[int, queue.SimpleQueue] = field(default_factory=dict, init=False)
    _ids: itertools.count = field(default_factory=itertools.count, init=False)
    _dir: tempfile.TemporaryDirectory = field(default_factory=tempfile.TemporaryDirectory, init=False)

    async def run(self, env: dict[str, str], timeout: float | None = None) -> targets.ClientRun:
        return await asyncio.to_thread(self._forked, env, timeout or self.timeout)

    def _forked(self, env: dict[str, str], timeout: float) -> targets.ClientRun:
        started = time.monotonic()
        answer: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            if self._server is None:
                self._server = subprocess.Popen(
                    shlex.split(self.cmd),
                    cwd=self.cwd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                threading.Thread(target=self._answers, args=(self._server.stdout,), daemon=True).start()
            run_id = next(self._ids)
            out = Path(self._dir.name) / f"{run_id}.out"
            self._waiting[run_id] = answer
            request = {"id": run_id, "env": env, "out": str(out), "timeout": timeout}
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
        try:
            code = answer.get(timeout=timeout + targets.STOP_GRACE)
        except queue.Empty:
            raise targets.TargetError(f"the fork server {self.cmd!r} did not answer run {run_id}") from None
        lines = out.read_text("utf-8", "replace").splitlines() if out.exists() else []
        return targets.ClientRun(
            code, "\n".join(lines[-40:]), _verdict(lines), round(time.monotonic() - started, 3)
        )

    def _answers(self, stream) -> None:
        for line in stream:
            document = json.loads(line)
            self._waiting.pop(document["id"]).put(document["exit_code"])

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(10)
        self._dir.cleanup()


def _verdict(lines: list[str]) -> dict | None:
    """The last line holding a JSON object with ``success``, as a ``ClientCommand`` reads it."""
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and "success" in document:
                return document
    return None


SDK_TARGETS = [
    SdkTarget("python-server", "server", "python", "python_server.py"),
    SdkTarget("python-facilitator", "facilitator", "python", "python_facilitator.py"),
    SdkTarget("python-client", "client", "python", "python_client.py"),
    SdkTarget("typescript-server", "server", "typescript", "conformance-server.mjs"),
    SdkTarget("typescript-facilitator", "facilitator", "typescript", "conformance-facilitator.mjs"),
    SdkTarget("typescript-client", "client", "typescript", "conformance-client.mjs"),
    # x402.mcp (the Python SDK's MCP server wrapper and paying MCP client) over MCP; exact only
    SdkTarget("python-mcp-server", "server", "python", MCP_SERVER, EXACT, transport="mcp"),
    SdkTarget("python-mcp-client", "client", "python", MCP_CLIENT, EXACT, transport="mcp"),
]


def missing(sdk: str) -> str | None:
    """Why the SDK cannot run here, or None."""
    if sdk == "python":
        return None if importlib.util.find_spec("x402") else "the Python SDK `x402` is not importable"
    tools = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if tools:
        return f"{' and '.join(tools)} not found; to install the packages: {NODE_INSTALL}"
    for name in NODE_PACKAGES:
        if not (NODE_DIR / "node_modules" / name / "package.json").is_file():
            return f"{name} is not installed in tests/interop/node/node_modules; run: {NODE_INSTALL}"
    return None


def findings(outcomes: dict[str, str]) -> dict[str, dict[str, str | None]]:
    """The rule each case not passed rests on, as the catalog says: its level, kind and rests_on."""
    cases = catalog.load()
    return {
        case_id: {"level": case.level, "kind": case.kind, "rests_on": case.rests_on}
        for case_id, outcome in sorted(outcomes.items())
        if outcome != "passed" and (case := cases.get(case_id)) is not None
    }


def compare(expected: dict[str, str], got: dict[str, str], messages: dict[str, str]) -> list[str]:
    """One line per case whose outcome changed, has no expectation, or is expected but gone."""
    problems = []
    for case_id in sorted(got.keys() | expected.keys()):
        if case_id not in expected:
            problems.append(f"new case without expectation: {case_id} {got[case_id]} {messages[case_id]}")
        elif case_id not in got:
            problems.append(f"expected case gone from the catalog: {case_id} (was {expected[case_id]})")
        elif got[case_id] != expected[case_id]:
            problems.append(
                f"changed: {case_id} expected {expected[case_id]}, got {got[case_id]} {messages[case_id]}"
            )
    return problems


@pytest.mark.parametrize("target", SDK_TARGETS, ids=[t.name for t in SDK_TARGETS])
def test_sdk_target_matches_its_expectations(target: SdkTarget):
    why = missing(target.sdk)
    if why is not None:
        print(f"{target.name} skipped: {why}")
        pytest.skip(f"{target.name}: {why}")
    if target.transport == "mcp" and importlib.util.find_spec("mcp") is None:
        print(f"{target.name} skipped: the mcp SDK is not importable (x402sim[agents])")
        pytest.skip(f"{target.name}: the mcp SDK is not importable (x402sim[agents])")
    cases = catalog.select(target.role, mechanisms=target.mechanisms, transport=target.transport)
    started = time.perf_counter()
    command = target.command()
    try:
        report = runner.run(target.role, command, cases, target.options())
    finally:
        if isinstance(command, ForkedClient):
            command.close()
    wall = time.perf_counter() - started
    outcomes = {r.id: r.outcome for r in report.results}
    messages = {r.id: r.message for r in report.results}
    print(f"{target.name}: {len(cases)} cases in {wall:.1f} s, {report.counts()}")
    for result in report.results:
        if result.outcome != "passed":
            print(f"  {result.id} {result.outcome}: {result.message}")

    path = EXPECTATIONS / f"{target.name}.json"
    if UPDATE:
        EXPECTATIONS.mkdir(exist_ok=True)
        document = {
            "target": target.name,
            "network": report.network,
            "outcomes": outcomes,
            "findings": findings(outcomes),
        }
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return
    assert path.is_file(), (
        f"no expectation file {path.name}; generate it with "
        "X402SIM_UPDATE_EXPECTATIONS=1 .venv/bin/pytest tests/conformance/test_sdk_targets.py"
    )
    expected = json.loads(path.read_text())
    assert expected["network"] == report.network, (
        f"{path.name} was recorded on {expected['network']}, this run is on {report.network}"
    )
    problems = compare(expected["outcomes"], outcomes, messages)
    assert not problems, f"{target.name} differs from {path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("target", SDK_TARGETS, ids=[t.name for t in SDK_TARGETS])
def test_expectation_findings_say_what_the_catalog_says(target: SdkTarget):
    path = EXPECTATIONS / f"{target.name}.json"
    document = json.loads(path.read_text())
    recorded, current = document.get("findings", {}), findings(document["outcomes"])
    stale = sorted(
        f"{case_id}: recorded {recorded.get(case_id)}, the catalog says {current.get(case_id)}"
        for case_id in recorded.keys() | current.keys()
        if recorded.get(case_id) != current.get(case_id)
    )
    assert not stale, f"{path.name} has stale findings (regenerate it):\n" + "\n".join(stale)
