"""Services on 127.0.0.1 with free ports, over an embedded chain whose clock follows the wall clock; and
the command line run as a user runs it, in subprocesses."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import FacilitatorClient, Services, facilitator_app, resource_server_app
from x402sim.http.runner import bind

PRICE = 1_000


def closed_port_url() -> str:
    """A loopback URL where nothing listens (a port we bound, then released)."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


class World:
    """A chain, a facilitator service and a resource-server service, all live on loopback."""

    def __init__(
        self,
        *,
        handlers=None,
        origin=None,
        routes=None,
        facilitator_url=None,
        upfront=False,
        facilitator_timeout=5,
    ):
        self.chain = LocalChain(seed=8, start_time=int(time.time()))
        self.payer_key, fkey, payee_key = (self.chain.new_key() for _ in range(3))
        self.payer = address_of_key(self.payer_key)
        self.payee = address_of_key(payee_key)
        self.chain.fund_many([(self.payer, 1_000_000, 0), (address_of_key(fkey), 0, 10 * ETHER)])
        self.facilitator = Facilitator(self.chain, fkey)
        self.services = Services()
        self.facilitator_url = self.services.add("facilitator", facilitator_app(self.facilitator))
        self.server = ResourceServer.with_prices(
            routes or {"GET /weather": PRICE},
            chain=self.chain,
            pay_to=self.payee,
            upfront=upfront,
        )
        client = FacilitatorClient(facilitator_url or self.facilitator_url, timeout=facilitator_timeout)
        app = resource_server_app(self.server, client, handlers=handlers, origin=origin)
        self.server_url = self.services.add("server", app)
        self.server.base_url = self.server_url
        self.services.start()

    def stop(self):
        self.services.stop()


@pytest.fixture
def world():
    w = World()
    yield w
    w.stop()


@pytest.fixture
def make_world():
    made = []

    def make(**kwargs):
        made.append(World(**kwargs))
        return made[-1]

    yield make
    for w in made:
        w.stop()


CLI = [sys.executable, "-m", "x402sim"]


def start_cli(*args):
    """Start ``x402sim ARGS`` and return ``(process, the JSON line it printed when ready)``."""
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"NO_COLOR": "1"},
    )
    line = proc.stdout.readline()  # blocks until the services print their one JSON line (or exit)
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
    return proc, json.loads(line)


def stop_cli(proc):
    """SIGTERM, and the exit code (the process is killed if it does not stop)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def run_cli(*args):
    """Run ``x402sim ARGS`` to completion."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=os.environ | {"NO_COLOR": "1"}
    )


WEATHER_ROUTES = (
    'pay_to = "0x1111111111111111111111111111111111111111"\n'
    '[[routes]]\nmethod = "GET"\npath = "/weather"\nprice = 2500\n'
)


@contextlib.contextmanager
def three_processes(tmp_path, *, accounts: int = 1, server_args=lambda chain_info: ()):
    """``serve chain``, ``serve facilitator`` and ``serve server`` (selling ``GET /weather`` for 2500,
    plus ``server_args(the chain's JSON line)``) each in its own process; yields the chain's,
    facilitator's and server's JSON lines, and stops them (each must exit 0)."""
    routes = tmp_path / "routes.toml"
    routes.write_text(WEATHER_ROUTES)
    started = []
    try:
        chain, info = start_cli("serve", "chain", "--port", "0", "--accounts", str(accounts))
        started.append(chain)
        facilitator, f_info = start_cli("serve", "facilitator", "--rpc-url", info["rpc_url"], "--port", "0")
        started.append(facilitator)
        server, s_info = start_cli(
            "serve",
            "server",
            "--facilitator-url",
            f_info["facilitator_url"],
            "--routes",
            str(routes),
            "--rpc-url",
            info["rpc_url"],
            "--port",
            "0",
            *server_args(info),
        )
        started.append(server)
        yield info, f_info, s_info
    finally:
        for proc in reversed(started):
            assert stop_cli(proc) == 0


def token_balance(info, address):
    """``address``'s balance of the token ``info["asset"]``, read over ``info["rpc_url"]``."""
    from x402sim.evm.token import encode_call

    data = "0x" + encode_call("balanceOf(address)", address).hex()
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_call",
        "params": [{"to": info["asset"], "data": data}, "latest"],
    }
    return int(httpx.post(info["rpc_url"], json=call).json()["result"], 16)
