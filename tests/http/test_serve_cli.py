"""``x402sim serve`` and ``x402sim pay`` run as a user runs them: subprocesses on loopback."""

import json

import httpx
import pytest

from tests.http.conftest import closed_port_url, run_cli, start_cli, stop_cli, three_processes, token_balance
from x402sim.http.runner import bind


@pytest.fixture(scope="module")
def served():
    """One ``serve`` for the module's tests: each pays (or refuses) from an account of its own."""
    proc, info = start_cli("serve", "--port", "0", "--accounts", "3")
    yield info
    assert stop_cli(proc) == 0  # SIGTERM is a clean shutdown


def test_serve_prints_one_json_line_and_pays_over_http(served):
    info = served
    for key in (
        "rpc_url",
        "facilitator_url",
        "server_url",
        "network",
        "chain_id",
        "asset",
        "asset_name",
        "asset_version",
        "payee",
        "facilitator_address",
        "accounts",
    ):
        assert key in info, key
    assert all(
        url.startswith("http://127.0.0.1:")
        for url in (info["rpc_url"], info["facilitator_url"], info["server_url"])
    )
    assert len(info["accounts"]) == 3 and info["accounts"][0]["usdc"] == 1_000_000_000
    assert info["network"] == f"eip155:{info['chain_id']}"
    payer = info["accounts"][0]

    unpaid = httpx.get(info["server_url"] + "/weather")
    assert unpaid.status_code == 402 and "payment-required" in unpaid.headers

    pay = run_cli("pay", info["server_url"] + "/weather", "--rpc-url", info["rpc_url"], "-v")
    assert pay.returncode == 0, pay.stderr
    assert json.loads(pay.stdout)["paid"] is True
    assert "402 payment required" in pay.stderr and '"success": true' in pay.stderr
    assert token_balance(info, payer["address"]) == 1_000_000_000 - 1_000
    assert token_balance(info, info["payee"]) == 1_000


def test_pay_refuses_a_price_over_max_price(served):
    pay = run_cli(
        "pay",
        served["server_url"] + "/weather",
        "--key",
        served["accounts"][1]["private_key"],
        "--network",
        served["network"],
        "--max-price",
        "999",
    )
    assert pay.returncode == 1 and "exceeds max price 999" in pay.stderr
    assert token_balance(served, served["accounts"][1]["address"]) == 1_000_000_000


def test_serve_chain_alone_is_a_json_rpc_chain():
    proc, info = start_cli("serve", "chain", "--port", "0", "--accounts", "2")
    try:
        assert set(info) >= {"rpc_url", "chain_id", "network", "asset", "accounts"}
        assert "facilitator_url" not in info and "server_url" not in info
        chain_id = httpx.post(
            info["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        ).json()
        assert int(chain_id["result"], 16) == info["chain_id"]
    finally:
        assert stop_cli(proc) == 0


def test_the_three_parts_started_separately_work_together(tmp_path):
    with three_processes(tmp_path) as (info, f_info, s_info):
        assert f_info["network"] == info["network"]
        assert (
            s_info["asset"] == info["asset"]
            and s_info["payee"] == "0x1111111111111111111111111111111111111111"
        )
        pay = run_cli("pay", s_info["server_url"] + "/weather", "--rpc-url", info["rpc_url"])
        assert pay.returncode == 0, pay.stderr
        assert token_balance(info, s_info["payee"]) == 2500
        assert token_balance(info, info["accounts"][0]["address"]) == 1_000_000_000 - 2500


def _fails(*args):
    result = run_cli(*args)
    assert result.returncode != 0 and result.stdout == ""  # no JSON line, no half output
    return result.stderr


def test_port_in_use_is_one_clear_error():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        stderr = _fails("serve", "chain", "--port", str(port))
        assert f"127.0.0.1:{port}" in stderr and "port in use" in stderr
        assert "Traceback" not in stderr
    finally:
        sock.close()


def test_bad_routes_file_is_one_clear_error(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text("[[routes]]\nmethod = 'GET'\npath = '/a'\nprice = 'lots'\n")
    stderr = _fails("serve", "--port", "0", "--routes", str(routes))
    assert str(routes) in stderr and "price" in stderr and "Traceback" not in stderr


def test_unreachable_rpc_url_is_one_clear_error():
    dead = closed_port_url()
    stderr = _fails("serve", "facilitator", "--rpc-url", dead, "--port", "0")
    assert dead in stderr and "unreachable" in stderr and "Traceback" not in stderr
    stderr = _fails("pay", "http://127.0.0.1:1/weather", "--rpc-url", dead)
    assert dead in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["pay", "http://example.com/weather", "--key", "0x" + "11" * 32],
        ["pay", "http://127.0.0.1:1/weather", "--rpc-url", "http://10.1.2.3:8545"],
        ["serve", "facilitator", "--rpc-url", "http://example.com:8545", "--port", "0"],
        ["serve", "server", "--facilitator-url", "https://facilitator.example/", "--routes", "routes.toml"],
        ["pay", "ftp://127.0.0.1/file"],
    ],
)
def test_urls_off_this_machine_are_refused_before_any_connection(args):
    stderr = _fails(*args)
    assert ("not a loopback address" in stderr and "--allow-remote" in stderr) or "expected an http" in stderr
    assert "Traceback" not in stderr
