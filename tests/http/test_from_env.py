"""``--from-env``: the reference roles run under the official x402 e2e harness's contract.

Each role is a real subprocess configured only by environment variables, against an x402sim chain
served in this process on loopback. Readiness is the stdout line the harness waits for, read by a
thread into a queue with a deadline; shutdown is ``POST /close``; payments are checked on chain."""

import json
import os
import queue
import subprocess
import threading

import httpx
import pytest

from tests.http.conftest import CLI, closed_port_url, start_cli, stop_cli, token_balance
from x402sim.evm import address_of_key, preset
from x402sim.evm.rpc_chain import RpcChain
from x402sim.evm.token import AUTHORIZATION_USED_TOPIC
from x402sim.http.serve import ChainSetup, EnvError, client_env, facilitator_env, serve_chain, server_env

# Every variable of the contract: removed from the inherited environment so that only ours count.
CONTRACT = {
    "PORT",
    "FACILITATOR_URL",
    "EVM_NETWORK",
    "EVM_RPC_URL",
    "EVM_PAYEE_ADDRESS",
    "SERVER_EVM_ADDRESS",
    "EVM_ASSET",
    "EVM_ASSET_NAME",
    "EVM_ASSET_VERSION",
    "PRICE_ATOMIC",
    "PROTECTED_PATH",
    "EVM_PRIVATE_KEY",
    "FACILITATOR_EVM_PRIVATE_KEY",
    "CLIENT_EVM_PRIVATE_KEY",
    "RESOURCE_SERVER_URL",
    "ENDPOINT_PATH",
    "MAX_AMOUNT_ATOMIC",
}
DEADLINE = 20.0  # seconds a role may take to print its readiness line


def _env(**variables: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in CONTRACT}
    return base | {"NO_COLOR": "1"} | variables


def _free_port() -> int:
    return int(closed_port_url().rsplit(":", 1)[1])


class Role:
    """One ``x402sim`` subprocess; its stdout lines arrive in a queue, its stderr is collected."""

    def __init__(self, *args: str, **variables: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**variables)
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def line(self, deadline: float = DEADLINE) -> str:
        """The next stdout line; fails at the deadline or when the process ended without one."""
        try:
            line = self.lines.get(timeout=deadline)
        except queue.Empty:
            pytest.fail(f"no output within {deadline} s; stderr: {self.stderr}")
        if line is None:
            self.proc.wait(timeout=5)
            pytest.fail(f"exited {self.proc.returncode} without output; stderr: {self.stderr}")
        return line

    def ready(self, prefix: str) -> str:
        """Wait for the line starting ``prefix`` (the harness's readiness signal); return its URL."""
        line = self.line()
        assert line.startswith(prefix), line
        return line.rsplit(" ", 1)[1]

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def roles():
    started: list[Role] = []

    def start(*args: str, **variables: str) -> Role:
        started.append(Role(*args, **variables))
        return started[-1]

    yield start
    for role in started:
        role.kill()


def _chain(network: str):
    running = serve_chain(ChainSetup(accounts=2, network=network), port=0)
    return running, running.info


@pytest.fixture(scope="module")
def local_chain():
    running, info = _chain("local")
    yield info
    running.stop()


@pytest.fixture(scope="module")
def sepolia_chain():
    running, info = _chain("base-sepolia")
    yield info
    running.stop()


def _start_pair(roles, info: dict, **server_vars: str):
    """Facilitator and server from the environment, started together; their URLs and processes."""
    facilitator_port, server_port = _free_port(), _free_port()
    facilitator = roles(
        "serve",
        "facilitator",
        "--from-env",
        PORT=str(facilitator_port),
        EVM_RPC_URL=info["rpc_url"],
        EVM_NETWORK=info["network"],
        FACILITATOR_EVM_PRIVATE_KEY=info["accounts"][1]["private_key"],
        EVM_PRIVATE_KEY="0x" + "00" * 31 + "01",  # the prefixed variable wins over this one
    )
    server = roles(
        "serve",
        "server",
        "--from-env",
        PORT=str(server_port),
        FACILITATOR_URL=f"http://127.0.0.1:{facilitator_port}",
        EVM_NETWORK=info["network"],
        **server_vars,
    )
    facilitator_url = facilitator.ready("Facilitator listening")
    server_url = server.ready("Server listening")
    assert facilitator_url == f"http://127.0.0.1:{facilitator_port}"
    assert server_url == f"http://127.0.0.1:{server_port}"
    return facilitator, facilitator_url, server, server_url


def _pay(roles, info: dict, server_url: str, path: str, **variables: str) -> dict:
    client = roles(
        "pay",
        "--from-env",
        RESOURCE_SERVER_URL=server_url,
        ENDPOINT_PATH=path,
        CLIENT_EVM_PRIVATE_KEY=info["accounts"][0]["private_key"],
        EVM_NETWORK=info["network"],
        **variables,
    )
    verdict = json.loads(client.line())
    code = client.wait()
    assert client.lines.get(timeout=5) is None  # exactly one stdout line
    return {"exit": code, "stderr": client.stderr, **verdict}


def _used_nonce(chain: RpcChain, tx_hash: str) -> tuple[str, bytes]:
    """The (authorizer, nonce) of the AuthorizationUsed log of a settlement transaction."""
    receipt = chain.rpc("eth_getTransactionReceipt", tx_hash)
    (log,) = [
        log for log in receipt["logs"] if bytes.fromhex(log["topics"][0][2:]) == AUTHORIZATION_USED_TOPIC
    ]
    return "0x" + log["topics"][1][-40:], bytes.fromhex(log["topics"][2][2:])


def _assert_paid(info: dict, verdict: dict, payee: str, price: int, asset: str) -> None:
    assert verdict["exit"] == 0, verdict
    assert verdict["success"] is True and verdict["status_code"] == 200
    settlement = verdict["payment_response"]
    assert settlement["success"] is True and settlement["network"] == info["network"]
    payer = info["accounts"][0]["address"]
    chain = RpcChain(info["rpc_url"])
    try:
        assert chain.balance_of(payer, asset) == info["accounts"][0]["usdc"] - price
        assert chain.balance_of(payee, asset) == price
        authorizer, nonce = _used_nonce(chain, settlement["transaction"])
        assert authorizer.lower() == payer.lower()
        assert chain.authorization_state(payer, nonce, asset) is True
    finally:
        chain.close()


def _close(role: Role, url: str) -> None:
    answer = httpx.post(url + "/close")
    assert answer.status_code == 200
    assert role.wait() == 0, role.stderr


def test_the_three_roles_pay_on_chain_and_close(roles, local_chain):
    info = local_chain
    payee = address_of_key(b"\x21" * 32)
    facilitator, facilitator_url, server, server_url = _start_pair(
        roles,
        info,
        SERVER_EVM_ADDRESS=payee,  # the prefixed variable wins over EVM_PAYEE_ADDRESS
        EVM_PAYEE_ADDRESS=address_of_key(b"\x23" * 32),
        EVM_ASSET=info["asset"],
        EVM_ASSET_NAME=info["asset_name"],
        EVM_ASSET_VERSION=info["asset_version"],
        PRICE_ATOMIC="2500",
        PROTECTED_PATH="/paid/thing",
        EVM_RPC_URL=info["rpc_url"],
    )
    for url in (facilitator_url, server_url):
        health = httpx.get(url + "/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    unpaid = httpx.get(server_url + "/paid/thing")
    assert unpaid.status_code == 402 and "payment-required" in unpaid.headers

    verdict = _pay(roles, info, server_url, "/paid/thing", EVM_RPC_URL=info["rpc_url"])
    assert verdict["data"]["paid"] is True
    _assert_paid(info, verdict, payee, 2500, info["asset"])

    capped = _pay(roles, info, server_url, "paid/thing", MAX_AMOUNT_ATOMIC="2499")
    assert capped["exit"] == 1 and capped["success"] is False and capped["status_code"] == 402
    assert capped["payment_response"] is None and "exceeds max price 2499" in capped["stderr"]

    _close(server, server_url)
    _close(facilitator, facilitator_url)


def test_a_preset_network_needs_no_asset_variables(roles, sepolia_chain):
    info = sepolia_chain
    canonical = preset("base-sepolia").token_address
    assert (
        info["asset"] == canonical and info["network"] == "eip155:84532" and info["preset"] == "base-sepolia"
    )
    payee = address_of_key(b"\x22" * 32)
    facilitator, facilitator_url, server, server_url = _start_pair(roles, info, EVM_PAYEE_ADDRESS=payee)
    challenge = httpx.get(server_url + "/protected")
    assert challenge.status_code == 402
    health = httpx.get(server_url + "/health").json()
    assert (health["asset"], health["asset_name"], health["asset_version"]) == (canonical, "USDC", "2")

    verdict = _pay(roles, info, server_url, "/protected")
    assert verdict["data"] == {"message": "paid content", "path": "/protected", "paid": True}
    _assert_paid(info, verdict, payee, 1000, canonical)
    _close(server, server_url)
    _close(facilitator, facilitator_url)


def test_missing_or_wrong_variables_exit_2_naming_them(roles, local_chain):
    info = local_chain
    cases = [
        (
            roles("serve", "server", "--from-env", PORT="0", EVM_NETWORK="eip155:31337"),
            "FACILITATOR_URL",
        ),
        (
            roles(
                "serve",
                "server",
                "--from-env",
                FACILITATOR_URL="http://127.0.0.1:1",
                EVM_NETWORK="eip155:31337",
                EVM_PAYEE_ADDRESS=info["accounts"][0]["address"],
            ),
            "EVM_ASSET",  # a chain without a preset token, and no EVM_RPC_URL to ask
        ),
        (
            roles(
                "serve",
                "facilitator",
                "--from-env",
                EVM_RPC_URL=info["rpc_url"],
                EVM_NETWORK="eip155:84532",
                EVM_PRIVATE_KEY=info["accounts"][1]["private_key"],
            ),
            "EVM_RPC_URL",  # the chain there is 31337: a mismatch
        ),
        (
            roles("pay", "--from-env", RESOURCE_SERVER_URL="http://127.0.0.1:1", ENDPOINT_PATH="/x"),
            "CLIENT_EVM_PRIVATE_KEY",
        ),
        (
            roles(
                "pay",
                "--from-env",
                RESOURCE_SERVER_URL="http://192.0.2.1:4021",  # not this machine: refused before contact
                ENDPOINT_PATH="/x",
                EVM_PRIVATE_KEY=info["accounts"][0]["private_key"],
                EVM_NETWORK="eip155:31337",
            ),
            "RESOURCE_SERVER_URL",
        ),
    ]
    for role, variable in cases:
        assert role.wait() == 2, role.stderr
        assert variable in role.stderr, role.stderr
        assert role.lines.get(timeout=5) is None  # nothing on stdout, no readiness line


# -- reading the environment, in process ----------------------------------------------------------------

PAYEE = address_of_key(b"\x24" * 32)


def test_server_env_fills_a_preset_network_and_lets_variables_win():
    env = server_env(
        {"FACILITATOR_URL": "http://127.0.0.1:4022", "EVM_NETWORK": "base", "EVM_PAYEE_ADDRESS": PAYEE}
    )
    base = preset("base")
    assert (env.network, env.asset, env.asset_name, env.asset_version) == (
        "eip155:8453",
        base.token_address,
        "USD Coin",
        "2",
    )
    assert (env.port, env.price, env.path, env.pay_to) == (4021, 1000, "/protected", PAYEE)
    mine = server_env(
        {
            "PORT": "4100",
            "FACILITATOR_URL": "http://127.0.0.1:4022",
            "EVM_NETWORK": "eip155:84532",
            "EVM_PAYEE_ADDRESS": PAYEE,
            "EVM_ASSET_NAME": "Other",
            "PRICE_ATOMIC": "7",
            "PROTECTED_PATH": "/x",
        }
    )
    assert (mine.port, mine.asset, mine.asset_name, mine.asset_version, mine.price, mine.path) == (
        4100,
        preset("base-sepolia").token_address,
        "Other",
        "2",
        7,
        "/x",
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"EVM_NETWORK": "solana:mainnet"}, "EVM_NETWORK"),
        ({"EVM_NETWORK": "nowhere"}, "EVM_NETWORK"),
        ({"EVM_PAYEE_ADDRESS": "0x1234"}, "EVM_PAYEE_ADDRESS"),
        ({"PRICE_ATOMIC": "0"}, "PRICE_ATOMIC"),
        ({"PROTECTED_PATH": "protected"}, "PROTECTED_PATH"),
        ({"FACILITATOR_URL": "127.0.0.1:4022"}, "FACILITATOR_URL"),
        ({"EVM_NETWORK": "eip155:1"}, "EVM_ASSET"),
    ],
)
def test_server_env_names_the_wrong_variable(variables, named):
    good = {
        "FACILITATOR_URL": "http://127.0.0.1:4022",
        "EVM_NETWORK": "base-sepolia",
        "EVM_PAYEE_ADDRESS": PAYEE,
    }
    with pytest.raises(EnvError, match=named):
        server_env(good | variables)
    assert server_env(good).network == "eip155:84532"  # a v1 name is translated


def test_client_and_facilitator_env_prefer_the_role_prefixed_key():
    plain, prefixed = "0x" + "11" * 32, "0x" + "22" * 32
    client = client_env(
        {
            "RESOURCE_SERVER_URL": "http://127.0.0.1:4021/",
            "ENDPOINT_PATH": "/protected",
            "EVM_NETWORK": "eip155:84532",
            "EVM_PRIVATE_KEY": plain,
            "CLIENT_EVM_PRIVATE_KEY": prefixed,
        }
    )
    assert (client.url, client.key, client.max_amount, client.rpc_url) == (
        "http://127.0.0.1:4021/protected",
        b"\x22" * 32,
        1_000_000,
        None,
    )
    facilitator = facilitator_env(
        {"EVM_RPC_URL": "http://127.0.0.1:8545", "EVM_NETWORK": "eip155:8453", "EVM_PRIVATE_KEY": plain}
    )
    assert (facilitator.port, facilitator.key) == (4022, b"\x11" * 32)
    with pytest.raises(EnvError, match="FACILITATOR_EVM_PRIVATE_KEY: not a hex"):
        facilitator_env(
            {
                "EVM_RPC_URL": "http://127.0.0.1:8545",
                "EVM_NETWORK": "eip155:8453",
                "FACILITATOR_EVM_PRIVATE_KEY": "0xzz",
            }
        )


# -- --network ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "network"), [(("serve",), "base-sepolia"), (("serve", "chain"), "base")])
def test_serve_network_puts_the_token_at_the_canonical_address(command, network):
    proc, info = start_cli(*command, "--port", "0", "--accounts", "1", "--network", network)
    try:
        p = preset(network)
        assert (info["preset"], info["network"], info["chain_id"]) == (network, p.network, p.chain_id)
        assert (info["asset"], info["asset_name"], info["asset_version"]) == (
            p.token_address,
            p.token_name,
            p.token_version,
        )
        account = info["accounts"][0]
        assert token_balance(info, account["address"]) == account["usdc"] > 0
    finally:
        assert stop_cli(proc) == 0
