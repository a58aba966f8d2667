"""Interoperability with the official x402 TypeScript SDK (npm ``@x402/*``), settling on our chain.

(e) ``@x402/fetch`` client -> ``@x402/express`` server -> our facilitator (HTTP) -> our chain.
(f) our Python client -> ``@x402/express`` server -> a TypeScript facilitator (``@x402/core`` +
    ``@x402/evm`` exact scheme over viem) -> our chain, through its JSON-RPC.

Each test judges by on-chain facts read with web3.py over the chain's JSON-RPC (receipt, ``Transfer``
and ``AuthorizationUsed`` logs, balances, ``authorizationState``), not by HTTP status alone.

Rules: the node scripts live in ``tests/interop/node`` and are configured by environment variables
only; every process binds 127.0.0.1; readiness is a line on a process's stdout (never a sleep); every
process started here is terminated when its test ends. Without node, npm or the pinned packages
every test here is skipped with the command to run.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from x402sim.evm.contracts import load_artifact

NODE_DIR = Path(__file__).resolve().parent / "node"
INSTALL = "cd tests/interop/node && npm ci --no-audit --no-fund"
PRICE = 1_000  # atomic units of the 6-decimal token: $0.001
READY_TIMEOUT = 60.0
CLIENT_TIMEOUT = 60.0


# -- skipping without the TypeScript SDK --------------------------------------------------------------


def _missing_typescript_sdk() -> str | None:
    """Why the TypeScript side cannot run here, or None."""
    tools = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if tools:
        return f"{' and '.join(tools)} not found on PATH"
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        manifest = NODE_DIR / "node_modules" / name / "package.json"
        if not manifest.exists():
            return f"{name} is not installed in tests/interop/node/node_modules"
        installed = json.loads(manifest.read_text()).get("version")
        if installed != version:
            return f"{name} {installed} is installed, package.json pins {version}"
    return None


def skip_module_without_typescript_sdk(module: str) -> None:
    """Skip the calling test module (being imported), saying why, when the TypeScript side cannot run."""
    why = _missing_typescript_sdk()
    if why:
        print(f"skipping {module}: TypeScript SDK interop skipped: {why}; to run it: {INSTALL}")
        pytest.skip(f"TypeScript SDK interop skipped: {why}; to run it: {INSTALL}", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def typescript_sdk() -> None:
    why = _missing_typescript_sdk()
    if why:
        pytest.skip(f"TypeScript SDK interop skipped: {why}; to run it: {INSTALL}")


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    """A port free on 127.0.0.1 right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A subprocess whose stdout lines are read by a thread (so its pipe never fills) and whose
    stderr goes to a file, kept for failure messages."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path):
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output: the process is gone

    def stderr_tail(self, lines: int = 30) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_for(self, ready: Callable[[str], bool], timeout: float = READY_TIMEOUT) -> str:
        """The first stdout line for which ``ready`` holds; fails the test if the process exits or
        stays silent for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                pytest.fail(f"{self.name} not ready after {timeout:.0f} s; stderr:\n{self.stderr_tail()}")
            if line is None:
                code = self.popen.wait()
                pytest.fail(f"{self.name} exited with {code} before ready; stderr:\n{self.stderr_tail()}")
            if ready(line):
                return line

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._pump_thread.join(timeout=5)  # reaches end of output once the process is gone
        if not self._pump_thread.is_alive():
            self.popen.stdout.close()
        self._stderr.close()


@pytest.fixture
def processes(tmp_path) -> Iterator[Callable[..., Process]]:
    """Start processes with ``processes(name, argv, env=...)``; all are terminated at teardown."""
    started: list[Process] = []

    def start(name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Process:
        process = Process(name, argv, env=env or {}, cwd=NODE_DIR, log_dir=tmp_path)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def _x402sim() -> list[str]:
    """The ``x402sim`` console script of this interpreter's environment (or the same CLI via -c)."""
    script = Path(sys.executable).parent / "x402sim"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from x402sim.cli import app; app()"]


def _json_line(line: str) -> bool:
    return line.startswith("{") and line.endswith("}")


def start_x402sim(processes, *args: str) -> dict:
    """Run ``x402sim serve <args> --port 0`` and return the JSON line it prints when ready."""
    process = processes("x402sim-serve", [*_x402sim(), "serve", *args, "--port", "0"])
    return json.loads(process.wait_for(_json_line))


def start_node(processes, script: str, ready: str, env: dict[str, str]) -> str:
    """Run ``node <script>`` on a free port; returns its base URL once it prints ``ready``."""
    port = free_port()
    process = processes(script, ["node", script], env={**env, "PORT": str(port)})
    process.wait_for(lambda line: line.startswith(ready))
    return f"http://127.0.0.1:{port}"


def start_ts_server(processes, info: dict, facilitator_url: str, payee: str) -> str:
    return start_node(
        processes,
        "server.mjs",
        "Server listening",
        {
            "FACILITATOR_URL": facilitator_url,
            "EVM_PAYEE_ADDRESS": payee,
            "EVM_NETWORK": info["network"],
            "ASSET": info["asset"],
            "ASSET_NAME": info["asset_name"],
            "ASSET_VERSION": info["asset_version"],
            "PRICE": str(PRICE),
        },
    )


def fresh_payee(label: str) -> str:
    """An address nobody holds a key for, so its balance starts at zero."""
    return to_checksum_address(keccak(text=f"x402sim interop payee {label}")[-20:])


# -- the chain, read through its JSON-RPC ---------------------------------------------------------------


class OnChain:
    """web3.py over the chain's JSON-RPC: the ground truth the tests judge by."""

    def __init__(self, rpc_url: str, asset: str):
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        self.token = self.w3.eth.contract(
            address=to_checksum_address(asset), abi=list(load_artifact("usdc").abi)
        )

    def balance(self, address: str) -> int:
        return self.token.functions.balanceOf(to_checksum_address(address)).call()

    def authorization_used(self, authorizer: str, nonce: bytes) -> bool:
        return self.token.functions.authorizationState(to_checksum_address(authorizer), nonce).call()

    def settlement(self, tx_hash: str) -> dict:
        """The settlement transaction's receipt, with its decoded token events."""
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        return {
            "receipt": receipt,
            "transfers": [
                (e.args["from"], e.args["to"], e.args["value"])
                for e in self.token.events.Transfer().process_receipt(receipt, errors=DISCARD)
            ],
            "authorizations": [
                (e.args["authorizer"], bytes(e.args["nonce"]))
                for e in self.token.events.AuthorizationUsed().process_receipt(receipt, errors=DISCARD)
            ],
        }


def assert_settled_on_chain(chain: OnChain, tx_hash: str, *, payer: str, payee: str, settler: str) -> bytes:
    """The transaction moved exactly PRICE from payer to payee by an EIP-3009 authorization that
    ``settler`` submitted; returns the authorization nonce."""
    facts = chain.settlement(tx_hash)
    receipt = facts["receipt"]
    assert receipt["status"] == 1
    assert receipt["from"].lower() == settler.lower()
    assert receipt["to"].lower() == chain.token.address.lower()
    assert facts["transfers"] == [(to_checksum_address(payer), to_checksum_address(payee), PRICE)]
    assert len(facts["authorizations"]) == 1
    authorizer, nonce = facts["authorizations"][0]
    assert authorizer == to_checksum_address(payer)
    assert chain.authorization_used(payer, nonce) is True
    return nonce


# -- (e) TypeScript client and server, our facilitator ---------------------------------------------------


def test_ts_fetch_client_pays_ts_express_server_settled_by_our_facilitator(processes):
    info = start_x402sim(processes)
    chain = OnChain(info["rpc_url"], info["asset"])
    payer = info["accounts"][0]
    payee = fresh_payee("e")
    server_url = start_ts_server(processes, info, info["facilitator_url"], payee)
    before = chain.balance(payer["address"]), chain.balance(payee)

    env = {
        "EVM_PRIVATE_KEY": payer["private_key"],
        "RESOURCE_URL": f"{server_url}/weather",
        "EVM_NETWORK": info["network"],
        "ASSET": info["asset"],
        "MAX_AMOUNT_PER_PAYMENT": str(PRICE),
    }
    run = subprocess.run(
        ["node", "client.mjs"],
        cwd=NODE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    lines = run.stdout.strip().splitlines()
    assert lines, f"client.mjs printed nothing (exit {run.returncode}); stderr:\n{run.stderr}"
    verdict = json.loads(lines[-1])
    assert verdict["success"] is True, f"{verdict}\nstderr:\n{run.stderr}"
    assert run.returncode == 0
    assert verdict["status_code"] == 200
    assert verdict["data"]["report"]["weather"] == "sunny"
    response = verdict["payment_response"]
    assert response["success"] is True
    assert response["network"] == info["network"]
    assert response["payer"].lower() == payer["address"].lower()

    nonce = assert_settled_on_chain(
        chain,
        response["transaction"],
        payer=payer["address"],
        payee=payee,
        settler=info["facilitator_address"],
    )
    assert len(nonce) == 32
    assert chain.balance(payer["address"]) == before[0] - PRICE
    assert chain.balance(payee) == before[1] + PRICE == PRICE


# -- (f) our client, TypeScript server and facilitator ---------------------------------------------------


def test_our_client_pays_ts_express_server_settled_by_ts_facilitator_on_our_chain(processes):
    from x402sim.http import PayingClient

    info = start_x402sim(processes, "chain")
    chain = OnChain(info["rpc_url"], info["asset"])
    payer, settler = info["accounts"][0], info["accounts"][1]
    payee = fresh_payee("f")
    facilitator_url = start_node(
        processes,
        "facilitator.mjs",
        "Facilitator listening",
        {
            "EVM_PRIVATE_KEY": settler["private_key"],
            "EVM_NETWORK": info["network"],
            "CHAIN_ID": str(info["chain_id"]),
            "EVM_RPC_URL": info["rpc_url"],
        },
    )
    server_url = start_ts_server(processes, info, facilitator_url, payee)
    before = chain.balance(payer["address"]), chain.balance(payee)

    with PayingClient(payer["private_key"], networks=(info["network"],)) as client:
        result = client.get(f"{server_url}/weather")

    assert result.status == 200, result.body
    assert json.loads(result.body)["report"]["weather"] == "sunny"
    settlement = result.settlement
    assert settlement is not None and settlement.success is True
    assert settlement.payer.lower() == payer["address"].lower()
    signed_nonce = bytes.fromhex(result.payment.payload["authorization"]["nonce"].removeprefix("0x"))

    nonce = assert_settled_on_chain(
        chain, settlement.transaction, payer=payer["address"], payee=payee, settler=settler["address"]
    )
    assert nonce == signed_nonce
    assert chain.balance(payer["address"]) == before[0] - PRICE
    assert chain.balance(payee) == before[1] + PRICE == PRICE
