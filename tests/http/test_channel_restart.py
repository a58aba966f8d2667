"""A served resource server keeps its batch-settlement channels in ``--state FILE``: killed (SIGKILL)
between vouchers and their claim, then restarted on the same file, it still claims every voucher it
served; the claim is judged on chain. Also: the routes file's batch keys, and a state file that is
not one."""

from __future__ import annotations

import json
import queue
import threading
import time

import httpx
import pytest

from tests.http.conftest import closed_port_url, run_cli, start_cli, stop_cli
from x402sim.evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ChannelConfig,
    channel_id,
    erc3009_deposit_nonce,
    read_channel,
    receive_authorization_digest,
    sign_voucher,
)
from x402sim.evm.eip712 import Domain, address_of_key, sign_digest
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http.routes_file import RoutesFileError, parse_routes
from x402sim.mechanisms.batch_wire import DepositPayload, Erc3009Deposit, Voucher, VoucherPayload
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    PaymentPayload,
    PaymentRequired,
    SettleResponse,
    decode_header,
    encode_header,
)

PRICE = 1_000
PAYEE = "0x1111111111111111111111111111111111111111"


def routes_text(claim_interval: int) -> str:
    return (
        '[[routes]]\nmethod = "GET"\npath = "/feed"\nprice = 1000\n'
        f'scheme = "batch-settlement"\nclaim_interval = {claim_interval}\nsettle_interval = 3600\n'
    )


def test_the_routes_file_reads_the_batch_keys_and_refuses_them_elsewhere():
    config = parse_routes(
        {
            "routes": [
                {
                    "method": "GET",
                    "path": "/feed",
                    "price": 100,
                    "scheme": "batch-settlement",
                    "transfer_method": "permit2",
                    "min_deposit": 5000,
                    "withdraw_delay": 3600,
                    "claim_interval": 30,
                    "settle_interval": 90,
                }
            ]
        }
    )
    route = config.routes["GET /feed"]
    assert (route.scheme, route.transfer_method) == ("batch-settlement", "permit2")
    assert (route.min_deposit, route.withdraw_delay, route.claim_interval, route.settle_interval) == (
        5000,
        3600,
        30,
        90,
    )
    with pytest.raises(RoutesFileError, match=r"routes\[0\]: claim_interval: only a batch-settlement route"):
        parse_routes({"routes": [{"method": "GET", "path": "/a", "price": 1, "claim_interval": 5}]})
    with pytest.raises(RoutesFileError, match=r"withdraw_delay must be 900\.\.2592000"):
        parse_routes(
            {
                "routes": [
                    {
                        "method": "GET",
                        "path": "/a",
                        "price": 1,
                        "scheme": "batch-settlement",
                        "withdraw_delay": 60,
                    }
                ]
            }
        )


def test_a_state_file_that_is_not_one_is_refused_naming_it(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        'network = "eip155:31337"\nasset = "0x' + "22" * 20 + '"\nasset_name = "USDC"\nasset_version = "2"\n'
        'pay_to = "0x' + "33" * 20 + '"\n' + routes_text(60)
    )
    state = tmp_path / "channels.sqlite"
    state.write_bytes(b"not a database " * 200)
    done = run_cli(
        "serve",
        "server",
        "--facilitator-url",
        closed_port_url(),
        "--routes",
        str(routes),
        "--state",
        str(state),
    )
    assert done.returncode != 0
    assert str(state) in done.stderr and "not a usable channel state file" in done.stderr


class _Lines:
    """A process's stderr, read on a thread; ``wait_for`` blocks until a line matches."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r} within {timeout} s; saw {seen}") from None
            seen.append(line)
            if line.startswith(prefix):
                return line


def _serve(facilitator_url: str, rpc_url: str, routes, state, every: float):
    return start_cli(
        "serve",
        "server",
        "--facilitator-url",
        facilitator_url,
        "--routes",
        str(routes),
        "--rpc-url",
        rpc_url,
        "--port",
        "0",
        "--state",
        str(state),
        "--channel-work-every",
        str(every),
    )


def _pay(url: str, offer, body) -> httpx.Response:
    payment = PaymentPayload(x402_version=2, payload=body.to_wire(), accepted=offer)
    return httpx.get(url, headers={PAYMENT_SIGNATURE: encode_header(payment)}, timeout=60)


def _why(answer: httpx.Response) -> str:
    """What a refused payment's answer says: its 402's error, its settlement, or its body."""
    if PAYMENT_RESPONSE in answer.headers:
        return decode_header(answer.headers[PAYMENT_RESPONSE], SettleResponse).to_json()
    if PAYMENT_REQUIRED in answer.headers:
        return str(decode_header(answer.headers[PAYMENT_REQUIRED], PaymentRequired).error)
    return answer.text


def test_a_server_killed_between_vouchers_and_their_claim_claims_them_all_after_a_restart(tmp_path):
    started = []
    try:
        chain, info = start_cli("serve", "chain", "--port", "0", "--accounts", "1")
        started.append(chain)
        rpc = RpcChain(info["rpc_url"])
        assert rpc.code(BATCH_SETTLEMENT_ADDRESS)  # the contract is at genesis on a served chain
        facilitator, f_info = start_cli("serve", "facilitator", "--rpc-url", info["rpc_url"], "--port", "0")
        started.append(facilitator)
        routes, state = tmp_path / "routes.toml", tmp_path / "channels.sqlite"
        routes.write_text(f'pay_to = "{PAYEE}"\n' + routes_text(claim_interval=1))
        # the first server never runs its channel work: nothing is claimed before it is killed
        server, s_info = _serve(f_info["facilitator_url"], info["rpc_url"], routes, state, every=3600)
        started.append(server)
        assert s_info["channel_state"] == str(state)
        url = s_info["server_url"] + "/feed"
        challenge = httpx.get(url, timeout=30)
        assert challenge.status_code == 402
        offer = decode_header(challenge.headers[PAYMENT_REQUIRED], PaymentRequired).accepts[0]
        assert offer.scheme == "batch-settlement"

        key = bytes.fromhex(info["accounts"][0]["private_key"].removeprefix("0x"))
        payer = address_of_key(key)
        config = ChannelConfig(
            payer,
            payer,
            offer.pay_to,
            offer.extra["receiverAuthorizer"],
            offer.asset,
            offer.extra["withdrawDelay"],
            b"\x07" * 32,
        )
        cid = channel_id(config, info["chain_id"])

        def voucher(n: int) -> Voucher:
            return Voucher(cid, n * PRICE, sign_voucher(key, info["chain_id"], cid, n * PRICE))

        deposit = int(offer.extra["minDeposit"])
        valid_before, salt = int(time.time()) + 600, 7
        digest = receive_authorization_digest(
            Domain(offer.extra["name"], offer.extra["version"], info["chain_id"], offer.asset),
            payer,
            deposit,
            0,
            valid_before,
            erc3009_deposit_nonce(cid, salt),
        )
        authorization = Erc3009Deposit(0, valid_before, salt, sign_digest(key, digest))
        answer = _pay(url, offer, DepositPayload(config, voucher(1), deposit, authorization))
        assert answer.status_code == 200, _why(answer)
        assert decode_header(answer.headers[PAYMENT_RESPONSE], SettleResponse).transaction
        for n in (2, 3, 4):
            answer = _pay(url, offer, VoucherPayload(config, voucher(n)))
            assert answer.status_code == 200, _why(answer)
            paid = decode_header(answer.headers[PAYMENT_RESPONSE], SettleResponse)
            assert paid.extra["channelState"]["chargedCumulativeAmount"] == str(n * PRICE)
        assert read_channel(rpc, cid).total_claimed == 0  # served, not yet claimed

        server.kill()  # SIGKILL: no shutdown, nothing flushed but what was committed
        assert server.wait(timeout=30) != 0
        started.remove(server)

        server, s_info = _serve(f_info["facilitator_url"], info["rpc_url"], routes, state, every=0.5)
        started.append(server)
        url = s_info["server_url"] + "/feed"
        # the book survived: the fifth voucher follows the fourth (no corrective 402)
        answer = _pay(url, offer, VoucherPayload(config, voucher(5)))
        assert answer.status_code == 200, _why(answer)
        stderr = _Lines(server.stderr)
        line = stderr.wait_for('channel work: {"claims": [[', timeout=60)
        assert json.loads(line.removeprefix("channel work: "))["claims"][0][0] == 1
        on_chain = read_channel(rpc, cid)
        assert on_chain.total_claimed == 5 * PRICE  # every voucher served, by both lives of the server
        assert on_chain.balance == deposit
    finally:
        for proc in reversed(started):
            stop_cli(proc)
