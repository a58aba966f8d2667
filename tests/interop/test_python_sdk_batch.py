"""batch-settlement between x402sim and the official x402 Python SDK, on one chain, judged on chain.

(1) The SDK's client (``BatchSettlementEvmScheme``) pays our resource server, which verifies and
    settles through our facilitator: one whole channel life (a deposit, many vouchers, our server's
    claim and settle, a top-up deposit, a partial cooperative refund, the payer's own withdrawal).
    After each phase: the payer's, the contract's and the receiver's token balances, the contract's
    ``channels(id)`` and ``receivers(receiver, token)``.

Where the SDK decides differently from x402sim, the test asserts what the SDK does and says so
(docs/explanation/sdk-findings.md, "batch-settlement").

One stack per module; every life uses a fresh payer. The chain is read directly only while no
request is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

try:
    import x402  # noqa: F401
except ImportError as exc:  # a pinned dev dependency: this happens only outside `make test`
    _why = f"the official x402 Python SDK is not importable ({exc})"
    print(f"skipping {__name__}: {_why}")
    pytest.skip(_why, allow_module_level=True)

import httpx
from eth_account import Account
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, RefundOptions

from tests.interop.batch_rig import HTTP_TIMEOUT, MIN_DEPOSIT, PRICE, WITHDRAW_DELAY, OurSide, build
from x402sim.evm.channels import ChannelConfig, channel_id


@pytest.fixture(scope="module")
def side() -> Iterator[OurSide]:
    ours, services = build(seed=57)
    services.start()
    try:
        yield ours
    finally:
        services.stop()


class SdkPayer:
    """One SDK client (its channels in the SDK's in-memory storage) and what it was answered."""

    def __init__(self, side: OurSide, key: bytes) -> None:
        self.side = side
        self.scheme = BatchSettlementEvmScheme(EthAccountSigner(Account.from_key(key)))
        self.client = x402Client()
        self.client.register(side.chain.network, self.scheme)
        cap = {
            "network": side.chain.network,
            "asset": side.chain.usdc,
            "max_amount_per_payment": str(100 * PRICE),
        }
        self.client.set_spend_controls({"allowed_assets": [cap]})
        self.payloads: list[dict] = []
        self.client.on_after_payment_creation(lambda ctx: self.payloads.append(ctx.payment_payload.payload))

    def get(self, n: int = 1) -> list:
        """``n`` paid GETs of our route, in sequence; each must be served. Their settlements."""

        async def fetch() -> list:
            settlements = []
            async with x402HttpxClient(self.client, timeout=HTTP_TIMEOUT) as http:
                for _ in range(n):
                    response = await http.get(self.side.server_url + "/feed")
                    assert response.status_code == 200, (response.status_code, response.headers)
                    settlements.append(
                        x402HTTPClient(self.client).get_payment_settle_response(response.headers.get)
                    )
            return settlements

        return asyncio.run(fetch())

    def refund(self, amount: int | None):
        options = RefundOptions()
        options.amount = None if amount is None else str(amount)
        return self.scheme.refund(self.side.server_url + "/feed", options)


def test_sdk_client_runs_a_whole_channel_life_with_our_server_and_facilitator(side):
    key, payer = side.payer()
    sdk = SdkPayer(side, key)
    start = side.facts(payer, b"\x00" * 32)

    # -- deposit: the first request opens the channel with the offer's minDeposit --------------------
    (opened,) = sdk.get()
    deposit = sdk.payloads[0]
    assert set(deposit) == {"type", "channelConfig", "voucher", "deposit"} and deposit["type"] == "deposit"
    config = ChannelConfig.from_wire(deposit["channelConfig"])
    assert (config.payer, config.receiver) == (payer, side.receiver)
    assert config.receiver_authorizer == side.facilitator.address  # from our /supported, via the offer
    assert config.withdraw_delay == WITHDRAW_DELAY
    cid = channel_id(config, side.chain.chain_id)
    assert deposit["voucher"]["channelId"].lower() == "0x" + cid.hex()
    assert deposit["deposit"]["amount"] == str(MIN_DEPOSIT)
    assert opened.success and opened.transaction  # the deposit's transaction, confirmed before serving
    was, now = start, side.facts(payer, cid)
    assert now.payer == was.payer - MIN_DEPOSIT and now.escrow == was.escrow + MIN_DEPOSIT
    assert now.receiver == was.receiver == 0
    assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)
    assert now.receivers == (0, 0)
    assert opened.extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)

    # -- vouchers: four more requests, nothing moves on chain --------------------------------------
    settlements = sdk.get(4)
    assert [p["type"] for p in sdk.payloads[1:]] == ["voucher"] * 4
    assert [p["voucher"]["maxClaimableAmount"] for p in sdk.payloads[1:]] == [
        str(n * PRICE) for n in (2, 3, 4, 5)
    ]
    assert [s.extra["channelState"]["chargedCumulativeAmount"] for s in settlements] == [
        str(n * PRICE) for n in (2, 3, 4, 5)
    ]
    assert all(s.transaction == "" for s in settlements)
    assert side.facts(payer, cid) == now

    # -- our server claims and settles ------------------------------------------------------------
    rounds = side.claim_and_settle()
    assert sum(len(w.claims) for w in rounds) == 1 and sum(len(w.settlements) for w in rounds) == 1
    was, now = now, side.facts(payer, cid)
    assert now.payer == was.payer
    assert now.escrow == was.escrow - 5 * PRICE and now.receiver == was.receiver + 5 * PRICE
    assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 5 * PRICE)
    assert now.receivers == (5 * PRICE, 5 * PRICE)

    # -- top-up: requests 6..11; the 11th needs more than the balance and deposits minDeposit again --
    sdk.get(6)
    kinds = [p["type"] for p in sdk.payloads[5:]]
    assert kinds == ["voucher"] * 5 + ["deposit"]
    assert sdk.payloads[-1]["deposit"]["amount"] == str(MIN_DEPOSIT)
    assert sdk.payloads[-1]["voucher"]["maxClaimableAmount"] == str(11 * PRICE)
    was, now = now, side.facts(payer, cid)
    assert now.payer == was.payer - MIN_DEPOSIT and now.escrow == was.escrow + MIN_DEPOSIT
    assert now.receiver == was.receiver
    assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT, 5 * PRICE)

    # -- a partial cooperative refund: our server claims the unclaimed 6 requests with it --------------
    refunded = sdk.refund(3 * PRICE)
    assert refunded.success and refunded.transaction, refunded
    assert refunded.amount == str(3 * PRICE)
    was, now = now, side.facts(payer, cid)
    assert now.payer == was.payer + 3 * PRICE and now.escrow == was.escrow - 3 * PRICE
    assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT - 3 * PRICE, 11 * PRICE)
    assert now.channel.refund_nonce == 1
    assert now.receivers == (11 * PRICE, 5 * PRICE)
    side.claim_and_settle()  # the refund's claim is settled
    was, now = now, side.facts(payer, cid)
    assert now.receiver == was.receiver + 6 * PRICE and now.escrow == was.escrow - 6 * PRICE
    assert now.receivers == (11 * PRICE, 11 * PRICE)

    # -- the payer withdraws what is left, from its own key --------------------------------------
    left = now.channel.balance - now.channel.total_claimed
    assert left == 2 * MIN_DEPOSIT - 14 * PRICE
    side.withdraw(key, config, left)
    was, now = now, side.facts(payer, cid)
    assert now.payer == was.payer + left and now.escrow == was.escrow - left
    assert now.channel.balance == now.channel.total_claimed == 11 * PRICE
    assert (now.channel.withdraw_amount, now.channel.withdraw_requested_at) == (0, 0)
    # the whole life: the payer paid exactly the 11 requests, the receiver got them
    assert now.payer == start.payer - 11 * PRICE and now.receiver == 11 * PRICE
    assert now.escrow == start.escrow
