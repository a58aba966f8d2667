"""``x402sim pay`` with batch-settlement: ``--channel-state FILE`` keeps the payer's channel between
invocations (the second pay sends a voucher, not a second deposit), ``--refund`` gets the unclaimed
escrow back, and each prints the channel's life. Judged on chain: the channel's balance and the
payer's token balance. Also: the channel options are checked before anything is contacted."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from tests.http.conftest import start_cli, stop_cli
from x402sim.cli import app
from x402sim.evm.channels import ChannelConfig, channel_id, read_channel
from x402sim.evm.eip712 import address_of_key
from x402sim.evm.rpc_chain import RpcChain
from x402sim.protocol import PAYMENT_REQUIRED, PaymentRequired, decode_header

PRICE = 1_000
RECEIVER = "0x" + "33" * 20
ROUTES = (
    f'pay_to = "{RECEIVER}"\n[[routes]]\nmethod = "GET"\npath = "/feed"\nprice = 1000\n'
    'scheme = "batch-settlement"\n'
)


def test_channel_options_are_checked_before_anything_is_contacted(tmp_path):
    url = "http://127.0.0.1:9/feed"  # nothing listens
    not_db = tmp_path / "notes.sqlite"
    not_db.write_bytes(b"not a database " * 200)
    cases = [
        (("--refund-amount", "5"), "--refund-amount needs --refund"),
        (("--channel-state", str(not_db)), "not a channel state file"),
    ]
    for args, message in cases:
        argv = ["pay", url, "--key", "0x" + "11" * 32, "--network", "eip155:31337", *args]
        done = CliRunner().invoke(app, argv)
        assert done.exit_code == 2 and message in done.stderr, (args, done.output)


def test_pay_keeps_its_channel_in_a_file_and_refunds_it(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    served, info = start_cli("serve", "--port", "0", "--accounts", "1", "--routes", str(routes))
    try:
        rpc = RpcChain(info["rpc_url"])
        url = info["server_url"] + "/feed"
        challenge = httpx.get(url, timeout=30).headers[PAYMENT_REQUIRED]
        offer = decode_header(challenge, PaymentRequired).accepts[0]
        account = info["accounts"][0]
        payer = address_of_key(bytes.fromhex(account["private_key"].removeprefix("0x")))
        config = ChannelConfig(
            payer,
            payer,
            offer.pay_to,
            offer.extra["receiverAuthorizer"],
            offer.asset,
            offer.extra["withdrawDelay"],
        )
        cid = channel_id(config, info["chain_id"])
        start = rpc.balance_of(payer, offer.asset)
        state = tmp_path / "agent.sqlite"

        def pay(*args: str):
            argv = ["pay", url, "--rpc-url", info["rpc_url"], "--channel-state", str(state), *args]
            done = CliRunner().invoke(app, argv)
            assert done.exit_code == 0, (done.stdout, done.stderr)
            return done

        first = pay()
        deposit = int(offer.extra["minDeposit"])
        assert read_channel(rpc, cid).balance == deposit
        assert rpc.balance_of(payer, offer.asset) == start - deposit
        assert f"channel 0x{cid.hex()}" in first.stderr
        assert f"deposit {deposit}: cumulative 0, balance {deposit} tx 0x" in first.stderr

        second = pay()  # a new process would do the same: the channel comes from the file
        assert read_channel(rpc, cid).balance == deposit  # a voucher: no second deposit
        assert f"voucher charged {PRICE}: cumulative {2 * PRICE}" in second.stderr
        assert second.stderr.count("deposit ") == 1  # the life so far, from the file

        refunded = pay("--refund", "--refund-amount", "3000")
        onchain = read_channel(rpc, cid)
        assert onchain.balance == deposit - 3000 and onchain.total_claimed == 2 * PRICE
        assert rpc.balance_of(payer, offer.asset) == start - deposit + 3000
        assert "refund 3000" in refunded.stderr
        assert f"available {deposit - 3000 - 2 * PRICE}" in refunded.stderr
    finally:
        stop_cli(served)
