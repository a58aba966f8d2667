"""``x402sim pay --discover QUERY`` end to end on loopback: a chain, a facilitator and a resource
server whose routes file declares listings; paid requests get the services cataloged, then one
command finds the cheapest and pays it, proven by the token's balances and Transfer log."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from x402sim.actors import Facilitator
from x402sim.cli import app
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http import PayingClient, Services, facilitator_app
from x402sim.http.chain_clock import ChainClock
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.http.routes_file import load_routes
from x402sim.http.serve import serve_server

ROUTES = """
[[routes]]
method = "GET"
path = "/weather"
price = 3000
description = "Weather by city"
tags = ["weather"]
[routes.discovery]
example = { city = "Oslo" }
input_schema = { properties = { city = { type = "string" } } }
output = { celsius = 3 }

[[routes]]
method = "GET"
path = "/forecast"
price = 1000
description = "Weather forecast, five days"
tags = ["weather", "forecast"]
[routes.discovery]
example = { city = "Oslo" }

[[routes]]
method = "GET"
path = "/stocks"
price = 10
description = "Stock quotes"
[routes.discovery]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    chain = LocalChain(seed=25, start_time=int(time.time()))
    fkey, payee = chain.new_key(), address_of_key(chain.new_key())
    chain.fund(address_of_key(fkey), eth=10 * ETHER)
    facilitator = Facilitator(chain, fkey)
    clock = ChainClock(chain, time.time)
    services = Services()
    rpc_url = services.add("chain", chain_rpc_app(chain, chain_clock=clock))
    facilitator_url = services.add("facilitator", facilitator_app(facilitator, chain_clock=clock))
    services.start()
    path = tmp_path_factory.mktemp("routes") / "routes.toml"
    path.write_text(
        f'network = "{chain.network}"\nasset = "{chain.usdc}"\nasset_name = "{chain.token_name}"\n'
        f'asset_version = "{chain.token_version}"\npay_to = "{payee}"\n' + ROUTES
    )
    running = serve_server(load_routes(path), facilitator_url, port=0)
    try:
        yield chain, rpc_url, facilitator_url, running.info["server_url"], payee, facilitator
    finally:
        running.stop()
        services.stop()


def cli_pay(words: str, facilitator_url: str, rpc_url: str, key: bytes, *more: str):
    args = ["pay", "--discover", words, "--facilitator-url", facilitator_url, "--rpc-url", rpc_url]
    return CliRunner().invoke(app, [*args, "--key", "0x" + key.hex(), *more])


def funded(chain, usdc: int) -> tuple[bytes, str]:
    key = chain.new_key()
    chain.fund(address_of_key(key), usdc=usdc)
    return key, address_of_key(key)


def test_paid_requests_catalog_the_services_then_pay_discover_pays_the_cheapest(stack):
    chain, rpc_url, facilitator_url, server_url, payee, facilitator = stack
    key, _ = funded(chain, 100_000)
    reads = RpcChain(rpc_url)
    try:
        with PayingClient(key, networks=(chain.network,), chain=reads, timeout=10) as client:
            for path in ("/weather", "/forecast", "/stocks"):
                assert client.get(server_url + path).status == 200
    finally:
        reads.close()
    assert len(facilitator.catalog) == 3  # learned from the three settled payments

    buyer, address = funded(chain, 10_000)
    block, was = chain.block_number, chain.balance_of(payee)
    done = CliRunner().invoke(
        app,
        [
            "pay",
            "--discover",
            "weather forecast",
            "--facilitator-url",
            facilitator_url,
            "--rpc-url",
            rpc_url,
            "--key",
            "0x" + buyer.hex(),
            "--max-price",
            "5000",
        ],
    )
    assert done.exit_code == 0, done.output
    assert f"chose GET {server_url}/forecast by cheapest: price 1000" in done.stderr
    assert "discovered 2 service(s)" in done.stderr  # /stocks does not match the words
    assert chain.balance_of(address) == 9_000 and chain.balance_of(payee) == was + 1_000
    (transfer,) = chain.transfers(since_block=block + 1)
    assert (transfer.from_.lower(), transfer.to.lower(), transfer.value) == (
        address.lower(),
        payee.lower(),
        1_000,
    )
    # by reputation, read on the chain at --rpc-url: these servers declare no agent, so price decides
    again = cli_pay("weather", facilitator_url, rpc_url, buyer, "--choose-by", "reputation")
    assert again.exit_code == 0, again.output
    assert f"chose GET {server_url}/forecast by reputation: price 1000" in again.stderr
    assert chain.balance_of(address) == 8_000


def test_nothing_found_is_a_clear_failure_and_nothing_is_paid(stack):
    chain, rpc_url, facilitator_url, _, _, _ = stack
    buyer, address = funded(chain, 10_000)
    for words, cap in (("submarine", "5000"), ("weather", "5")):
        done = CliRunner().invoke(
            app,
            [
                "pay",
                "--discover",
                words,
                "--facilitator-url",
                facilitator_url,
                "--rpc-url",
                rpc_url,
                "--key",
                "0x" + buyer.hex(),
                "--max-price",
                cap,
            ],
        )
        assert done.exit_code == 1 and "error: no service found for" in done.stderr, done.output
    assert chain.balance_of(address) == 10_000
    both = CliRunner().invoke(app, ["pay", "http://127.0.0.1:1/x", "--discover", "weather"])
    assert both.exit_code == 2 and "not two of them" in both.stderr
