"""batch-settlement between x402sim and the official x402 TypeScript SDK 2.27, on one chain.

(1) The ``@x402/fetch`` client with ``BatchSettlementEvmScheme`` (``node/client-batch.mjs``, one node
    process kept alive for a whole channel life, driven line by line) pays our resource server, which
    verifies and settles through our facilitator (``batch_rig``): a deposit, many vouchers, our
    server's claim and settle, a top-up deposit, a partial cooperative refund, the payer's own
    withdrawal; and a second client of the same payer that lost its channel adopts our corrective 402.
(2) Our paying client pays an ``@x402/express`` server (``node/server-batch.mjs``, its channel manager
    claiming and settling when the test says so) settling through the TypeScript facilitator
    (``node/facilitator-batch.mjs``, over our chain's JSON-RPC) and through ours: the same life.

After each phase: the payer's, the contract's and the receiver's token balances, the contract's
``channels(id)`` and ``receivers(receiver, token)``. Our side runs in this process (one loop).
Without node or the pinned packages every test here is skipped with the command to run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.interop.batch_rig import (
    MIN_DEPOSIT,
    PAYER_FUNDS,
    PRICE,
    WITHDRAW_DELAY,
    OurSide,
    build,
    our_client_life,
    our_client_recovers,
    payer_named_for_deposit_and_voucher,
)
from tests.interop.test_typescript_sdk import (
    CLIENT_TIMEOUT,
    NODE_DIR,
    Process,
    free_port,
    skip_module_without_typescript_sdk,
)
from x402sim.evm import address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.channels import ChannelConfig, channel_id

skip_module_without_typescript_sdk(__name__)


@dataclass
class Rig(OurSide):
    ts_authorizer: str = ""
    # the TS server settling through the TS facilitator ("ts") and through ours ("ours")
    ts_servers: dict[str, str] = field(default_factory=dict)
    ts_receivers: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def side(tmp_path_factory) -> Iterator[Rig]:
    ours, services = build(seed=73)
    chain = ours.chain
    services.start()
    logs = tmp_path_factory.mktemp("node-logs")
    started: list[Process] = []

    def node(script: str, ready: str, env: dict[str, str]) -> str:
        port = free_port()
        process = Process(
            script, ["node", script], env={**env, "PORT": str(port)}, cwd=NODE_DIR, log_dir=logs
        )
        started.append(process)
        process.wait_for(lambda line: line.startswith(ready))
        return f"http://127.0.0.1:{port}"

    try:
        ts_key, authorizer_key = chain.new_key(), chain.new_key()
        chain.fund(address_of_key(ts_key), eth=10 * ETHER)
        rig = Rig(**vars(ours), ts_authorizer=address_of_key(authorizer_key))
        ts_facilitator = node(
            "facilitator-batch.mjs",
            "Facilitator listening",
            {
                "EVM_PRIVATE_KEY": "0x" + ts_key.hex(),
                "AUTHORIZER_PRIVATE_KEY": "0x" + authorizer_key.hex(),
                "EVM_NETWORK": chain.network,
                "EVM_RPC_URL": ours.rpc_url,
            },
        )
        for name, url in (("ts", ts_facilitator), ("ours", ours.facilitator_url)):
            rig.ts_receivers[name] = address_of_key(chain.new_key())
            rig.ts_servers[name] = node(
                "server-batch.mjs",
                "Server listening",
                {
                    "FACILITATOR_URL": url,
                    "EVM_PAYEE_ADDRESS": rig.ts_receivers[name],
                    "EVM_NETWORK": chain.network,
                    "ASSET": chain.usdc,
                    "ASSET_NAME": chain.token_name,
                    "ASSET_VERSION": chain.token_version,
                    "PRICE": str(PRICE),
                    "WITHDRAW_DELAY": str(WITHDRAW_DELAY),
                },
            )
        yield rig
    finally:
        for process in reversed(started):
            process.stop()
        services.stop()


class TsPayer:
    """One ``node/client-batch.mjs`` process: a TS client whose channels live as long as it does."""

    def __init__(self, side: OurSide, key: bytes, log_dir: Path, *, reads_chain: bool = False) -> None:
        self.url = side.server_url + "/feed"
        env = {
            **os.environ,
            "EVM_PRIVATE_KEY": "0x" + key.hex(),
            "EVM_NETWORK": side.chain.network,
            "ASSET": side.chain.usdc,
            "EVM_RPC_URL": side.rpc_url,
            "READS_CHAIN": "1" if reads_chain else "0",
            "MAX_AMOUNT_PER_PAYMENT": str(100 * PRICE),
        }
        self.stderr_path = log_dir / f"client-batch-{key.hex()[:8]}.stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.popen = subprocess.Popen(
            ["node", "client-batch.mjs"],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self._next() == "Client ready"

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next(self) -> str:
        try:
            line = self.lines.get(timeout=CLIENT_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"client-batch.mjs silent for {CLIENT_TIMEOUT} s; stderr:\n{self._tail()}")
        if line is None:
            pytest.fail(f"client-batch.mjs exited ({self.popen.wait()}); stderr:\n{self._tail()}")
        return line

    def _tail(self) -> str:
        self._stderr.flush()
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-30:])

    def ask(self, **command) -> dict:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()
        answer = json.loads(self._next())
        assert "error" not in answer, (answer, self._tail())
        return answer

    def get(self, n: int = 1) -> list[dict]:
        """``n`` paid GETs in sequence; each must be served. Their (PAYMENT-RESPONSE, payload)."""
        results = self.ask(op="get", url=self.url, n=n)["results"]
        assert [r["status_code"] for r in results] == [200] * n, [
            (r["status_code"], (r["payment_required"] or {}).get("error"), r["payment_response"])
            for r in results
        ]
        return results

    def refund(self, amount: int) -> dict:
        return self.ask(op="refund", url=self.url, amount=str(amount))["settle"]

    def close(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._stderr.close()


@pytest.fixture
def logs(tmp_path) -> Path:
    return tmp_path


def test_ts_client_runs_a_whole_channel_life_with_our_server_and_facilitator(side, logs):
    key, payer = side.payer()
    start = side.facts(payer, b"\x00" * 32)
    ts = TsPayer(side, key, logs)
    try:
        # -- deposit -----------------------------------------------------------------------------
        (opened,) = ts.get()
        deposit = opened["payment"]
        assert deposit["type"] == "deposit" and deposit["deposit"]["amount"] == str(MIN_DEPOSIT)
        config = ChannelConfig.from_wire(deposit["channelConfig"])
        assert (config.payer, config.receiver, config.withdraw_delay) == (
            payer,
            side.receiver,
            WITHDRAW_DELAY,
        )
        assert config.receiver_authorizer == side.facilitator.address
        cid = channel_id(config, side.chain.chain_id)
        assert opened["payment_response"]["success"] and opened["payment_response"]["transaction"]
        now = side.facts(payer, cid)
        assert now.payer == start.payer - MIN_DEPOSIT and now.escrow == start.escrow + MIN_DEPOSIT
        assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)
        assert now.receivers == (0, 0) and now.receiver == 0

        # -- vouchers ----------------------------------------------------------------------------
        vouchers = ts.get(4)
        assert [r["payment"]["type"] for r in vouchers] == ["voucher"] * 4
        assert [r["payment"]["voucher"]["maxClaimableAmount"] for r in vouchers] == [
            str(n * PRICE) for n in (2, 3, 4, 5)
        ]
        charged = [
            r["payment_response"]["extra"]["channelState"]["chargedCumulativeAmount"] for r in vouchers
        ]
        assert charged == [str(n * PRICE) for n in (2, 3, 4, 5)]
        assert side.facts(payer, cid) == now

        # -- our server claims and settles -----------------------------------------------------------
        side.claim_and_settle()
        was, now = now, side.facts(payer, cid)
        assert now.escrow == was.escrow - 5 * PRICE and now.receiver == was.receiver + 5 * PRICE
        assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 5 * PRICE)
        assert now.receivers == (5 * PRICE, 5 * PRICE)

        # -- top-up --------------------------------------------------------------------------------
        more = ts.get(6)
        assert [r["payment"]["type"] for r in more] == ["voucher"] * 5 + ["deposit"]
        assert more[-1]["payment"]["deposit"]["amount"] == str(MIN_DEPOSIT)
        was, now = now, side.facts(payer, cid)
        assert now.payer == was.payer - MIN_DEPOSIT and now.escrow == was.escrow + MIN_DEPOSIT
        assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT, 5 * PRICE)

        # -- a partial refund, the unclaimed vouchers claimed with it -----------------------------------
        refunded = ts.refund(3 * PRICE)
        assert refunded["success"] and refunded["transaction"] and refunded["amount"] == str(3 * PRICE)
        was, now = now, side.facts(payer, cid)
        assert now.payer == was.payer + 3 * PRICE and now.escrow == was.escrow - 3 * PRICE
        assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT - 3 * PRICE, 11 * PRICE)
        assert now.channel.refund_nonce == 1 and now.receivers == (11 * PRICE, 5 * PRICE)
        side.claim_and_settle()
        was, now = now, side.facts(payer, cid)
        assert now.receiver == was.receiver + 6 * PRICE and now.receivers == (11 * PRICE, 11 * PRICE)

        # -- the payer's own withdrawal ------------------------------------------------------------
        left = now.channel.balance - now.channel.total_claimed
        side.withdraw(key, config, left)
        was, now = now, side.facts(payer, cid)
        assert now.payer == was.payer + left and now.escrow == was.escrow - left
        assert now.channel.balance == now.channel.total_claimed == 11 * PRICE
        assert now.payer == start.payer - 11 * PRICE and now.receiver == 11 * PRICE
    finally:
        ts.close()


def test_ts_client_that_lost_its_channel_adopts_our_corrective_402(side, logs):
    """A second TS client of the same payer, its signer reading the chain (``READS_CHAIN``), finds the
    channel on chain, is answered our corrective 402 (channelState and the payer's own last voucher),
    checks it, and pays on from there: no second deposit."""
    key, payer = side.payer()
    first = TsPayer(side, key, logs)
    try:
        first.get(3)
    finally:
        first.close()
    fresh = TsPayer(side, key, logs, reads_chain=True)
    try:
        (paid,) = fresh.get()
    finally:
        fresh.close()
    assert paid["payment"]["type"] == "voucher"
    assert paid["payment"]["voucher"]["maxClaimableAmount"] == str(4 * PRICE)  # the retry, after our 402
    assert paid["payment_response"]["extra"]["channelState"]["chargedCumulativeAmount"] == str(4 * PRICE)
    cid = channel_id(ChannelConfig.from_wire(paid["payment"]["channelConfig"]), side.chain.chain_id)
    now = side.facts(payer, cid)
    assert now.payer == PAYER_FUNDS - MIN_DEPOSIT
    assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)


def test_ts_client_that_cannot_read_the_chain_cannot_adopt_our_corrective_402(side, logs):
    """Given only an account (the scheme's ``rpcUrl`` option is for gas sponsoring), the TS client
    has no record of the channel: it sends a second deposit, our server refuses it with the
    corrective 402 before anything lands, and the client cannot check the 402 against the chain, so
    it does not adopt it: the request ends 402. Nothing moved."""
    key, payer = side.payer()
    first = TsPayer(side, key, logs)
    try:
        first.get(3)
    finally:
        first.close()
    lost = TsPayer(side, key, logs)
    try:
        (answer,) = lost.ask(op="get", url=lost.url, n=1)["results"]
    finally:
        lost.close()
    assert answer["status_code"] == 402
    assert answer["payment_required"]["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    assert (answer["payment"]["type"], answer["payment"]["voucher"]["maxClaimableAmount"]) == (
        "deposit",
        str(PRICE),
    )
    assert side.chain.balance_of(payer) == PAYER_FUNDS - MIN_DEPOSIT


# -- (2) our client pays the TS server ------------------------------------------------------------


@pytest.mark.parametrize("facilitator", ["ts", "ours"])
def test_we_run_a_whole_channel_life_with_the_ts_server(side, facilitator):
    server = side.ts_servers[facilitator]

    def post(path: str) -> dict:
        answer = httpx.post(server + path, timeout=CLIENT_TIMEOUT)
        assert answer.status_code == 200, answer.text
        return answer.json()

    authorizer = side.ts_authorizer if facilitator == "ts" else side.facilitator.address
    our_client_life(
        side,
        server + "/feed",
        side.ts_receivers[facilitator],
        authorizer,
        claim=lambda: [int(c["vouchers"]) for c in post("/claim-now")],
        settle=lambda: post("/settle-now")["transaction"],
    )
    # nothing left claimed and unsettled: the SDK's channel manager raises where x402sim's server
    # counts no work
    nothing = httpx.post(server + "/settle-now", timeout=CLIENT_TIMEOUT)
    assert nothing.status_code == 500 and "invalid_batch_settlement_evm_nothing_to_settle" in nothing.text


@pytest.mark.parametrize("facilitator", ["ts", "ours"])
def test_our_client_that_lost_its_channel_adopts_the_ts_servers_corrective_402(side, facilitator):
    our_client_recovers(side, side.ts_servers[facilitator] + "/feed", side.ts_receivers[facilitator])


def test_ts_server_names_the_payer_in_lowercase_in_voucher_answers(side):
    """As the Python SDK server: the deposit's answer names the payer checksummed, a voucher's in
    lowercase (x402sim: checksummed in every answer)."""
    on_deposit, on_voucher, payer = payer_named_for_deposit_and_voucher(side, side.ts_servers["ts"] + "/feed")
    assert (on_deposit, on_voucher) == (payer, payer.lower())
