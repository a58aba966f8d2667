"""batch-settlement between x402sim and the official x402 Python SDK, on one chain, judged on chain.

(1) The SDK's client (``BatchSettlementEvmScheme``) pays our resource server, which verifies and
    settles through our facilitator;
(2) our paying client pays the SDK's FastAPI server (``sdk_batch_apps``), whose claims and
    settlements are made by the SDK's channel manager, through the SDK's facilitator settling on our
    chain over its JSON-RPC, and through ours.

Each is one whole channel life: a deposit, many vouchers, the server's claim and settle, a top-up
deposit, a partial cooperative refund (the unclaimed vouchers claimed with it), and the payer's own
withdrawal of the rest (initiate, the chain's time moved past the delay, finalize). After each phase:
the payer's, the contract's and the receiver's token balances, the contract's ``channels(id)`` and
``receivers(receiver, token)``.

Where the SDK decides differently from x402sim, the test asserts what the SDK does and says so
(docs/explanation/sdk-findings.md, "batch-settlement").

One stack per module; every life uses a fresh payer. The chain is read directly only while no
request is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

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
from x402.mechanisms.evm import EthAccountSigner, EthAccountSignerWithRPC
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, RefundOptions

from tests.interop.batch_rig import (
    HTTP_TIMEOUT,
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
from tests.interop.sdk_batch_apps import SdkBatchServer, sdk_batch_facilitator, sdk_batch_server
from x402sim.evm import address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.channels import ChannelConfig, channel_id, finalize_withdraw_call, initiate_withdraw_call
from x402sim.http import Services
from x402sim.protocol import decode_json_header


@dataclass
class Rig(OurSide):
    sdk_receivers: dict[str, str] = field(default_factory=dict)  # one per SDK server
    sdk_authorizer: str = ""
    # the SDK's server settling through the SDK's facilitator ("sdk") and through ours ("ours")
    sdk_servers: dict[str, SdkBatchServer] = field(default_factory=dict)
    sdk_urls: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def side() -> Iterator[Rig]:
    ours, services = build(seed=57)
    chain = ours.chain
    sdk_key, authorizer_key = chain.new_key(), chain.new_key()
    chain.fund(address_of_key(sdk_key), eth=10 * ETHER)
    sdk_facilitator_url = services.add(
        "sdk-facilitator", sdk_batch_facilitator(sdk_key, authorizer_key, ours.rpc_url, chain.network)
    )
    services.start()
    sdk_services = Services()  # its own loop: the SDK server fetches /supported with a blocking call
    try:
        rig = Rig(**vars(ours), sdk_authorizer=address_of_key(authorizer_key))
        for name, url in (("sdk", sdk_facilitator_url), ("ours", ours.facilitator_url)):
            rig.sdk_receivers[name] = address_of_key(chain.new_key())
            server = sdk_batch_server(
                url,
                network=chain.network,
                asset=chain.usdc,
                asset_name=chain.token_name,
                asset_version=chain.token_version,
                pay_to=rig.sdk_receivers[name],
                price=PRICE,
                withdraw_delay=WITHDRAW_DELAY,
            )
            rig.sdk_servers[name] = server
            sdk_services.add(f"sdk-server-{name}", server.app)
        urls = sdk_services.start()
        rig.sdk_urls = {name: urls[f"sdk-server-{name}"] for name in rig.sdk_servers}
        yield rig
    finally:
        sdk_services.stop()
        services.stop()


class SdkPayer:
    """One SDK client (its channels in the SDK's in-memory storage) and what it was answered."""

    def __init__(self, side: OurSide, key: bytes, *, reads_chain: bool = False) -> None:
        self.side = side
        account = Account.from_key(key)
        # the SDK client recovers a channel (cold start, corrective 402) only with a signer that
        # reads the chain
        signer = EthAccountSignerWithRPC(account, side.rpc_url) if reads_chain else EthAccountSigner(account)
        self.scheme = BatchSettlementEvmScheme(signer)
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

    def get(self, n: int = 1, url: str | None = None) -> list:
        """``n`` paid GETs of ``url`` (our route), in sequence; each must be served. Their settlements."""
        url = url or self.side.server_url + "/feed"

        async def fetch() -> list:
            settlements = []
            async with x402HttpxClient(self.client, timeout=HTTP_TIMEOUT) as http:
                for _ in range(n):
                    response = await http.get(url)
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
    assert {s.payer for s in [opened, *settlements]} == {payer}  # checksummed in every answer
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


def test_sdk_client_that_lost_its_channel_adopts_our_corrective_402(side):
    """A second SDK client of the same payer (its storage empty, its signer reading the chain) finds
    the channel on chain, signs a voucher from what was claimed (nothing), is answered our corrective
    402 (channelState and the payer's own last voucher), checks it, and pays on from there."""
    key, payer = side.payer()
    SdkPayer(side, key).get(3)
    fresh = SdkPayer(side, key, reads_chain=True)
    (paid,) = fresh.get()
    assert [(p["type"], p["voucher"]["maxClaimableAmount"]) for p in fresh.payloads] == [
        ("voucher", str(PRICE)),
        ("voucher", str(4 * PRICE)),
    ]
    assert paid.extra["channelState"]["chargedCumulativeAmount"] == str(4 * PRICE)
    config_wire = fresh.payloads[0]["channelConfig"]
    cid = channel_id(ChannelConfig.from_wire(config_wire), side.chain.chain_id)
    now = side.facts(payer, cid)
    assert now.payer == PAYER_FUNDS - MIN_DEPOSIT  # one deposit, nothing paid twice
    assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)


def test_sdk_client_that_cannot_read_the_chain_cannot_adopt_our_corrective_402(side):
    """Without a chain-reading signer the SDK client has no record of a channel it opened elsewhere:
    it sends a second deposit (its voucher at one price), our server refuses it with the corrective
    402 before anything lands, and the SDK client, which checks the 402 against the chain, cannot
    adopt it: the request ends 402. Nothing moved."""
    key, payer = side.payer()
    SdkPayer(side, key).get(3)
    lost = SdkPayer(side, key)
    paid_before = side.chain.balance_of(payer)

    async def fetch() -> httpx.Response:
        async with x402HttpxClient(lost.client, timeout=HTTP_TIMEOUT) as http:
            return await http.get(side.server_url + "/feed")

    response = asyncio.run(fetch())
    assert response.status_code == 402
    required = decode_json_header(response.headers["PAYMENT-REQUIRED"], where="402")
    assert required["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    assert required["accepts"][0]["extra"]["channelState"]["chargedCumulativeAmount"] == str(3 * PRICE)
    assert [(p["type"], p["voucher"]["maxClaimableAmount"]) for p in lost.payloads] == [
        ("deposit", str(PRICE))
    ]
    assert side.chain.balance_of(payer) == paid_before == PAYER_FUNDS - MIN_DEPOSIT


# -- (2) our client pays the SDK's server --------------------------------------------------------


@pytest.mark.parametrize("facilitator", ["sdk", "ours"])
def test_we_run_a_whole_channel_life_with_the_sdk_server(side, facilitator):
    manager = side.sdk_servers[facilitator].manager
    authorizer = side.sdk_authorizer if facilitator == "sdk" else side.facilitator.address
    our_client_life(
        side,
        side.sdk_urls[facilitator] + "/feed",
        side.sdk_receivers[facilitator],
        authorizer,
        claim=lambda: [c.vouchers for c in manager.claim()],
        settle=lambda: manager.settle().transaction,
    )
    # nothing left claimed and unsettled: the SDK's channel manager raises where x402sim's server
    # counts no work
    with pytest.raises(RuntimeError, match="invalid_batch_settlement_evm_nothing_to_settle"):
        manager.settle()


def test_sdk_server_names_the_payer_in_lowercase_in_voucher_answers(side):
    """The SDK server's PAYMENT-RESPONSE for a deposit names the payer checksummed, for a voucher in
    lowercase (x402sim: checksummed in every answer). Harmless to a client comparing addresses
    case-insensitively; x402sim's client does."""
    on_deposit, on_voucher, payer = payer_named_for_deposit_and_voucher(side, side.sdk_urls["sdk"] + "/feed")
    assert (on_deposit, on_voucher) == (payer, payer.lower())


@pytest.mark.parametrize("facilitator", ["sdk", "ours"])
def test_our_client_that_lost_its_channel_adopts_the_sdk_servers_corrective_402(side, facilitator):
    """Our client with a fresh channel store reads the channel from the chain, signs a voucher from
    what was claimed, is answered the SDK server's corrective 402, and pays on from there."""
    our_client_recovers(side, side.sdk_urls[facilitator] + "/feed", side.sdk_receivers[facilitator])


def test_a_withdrawal_racing_unclaimed_vouchers_leaves_the_receiver_what_it_served(side):
    """The SDK client's payer starts withdrawing its whole balance while our server holds four
    unclaimed vouchers, and pays once more. Our server claims before the delay ends; the payer's
    finalize gets back only what was not charged.

    Within its mirrored state's time to live our server (as the SDK server) verifies a voucher
    locally and does not see the withdrawal; the TTL is a third of the delay, so it sees it in time.
    Here the TTL is 0 for this payment: the facilitator's verify reports the pending withdrawal."""
    key, payer = side.payer()
    sdk = SdkPayer(side, key)
    sdk.get(4)
    before = side.facts(payer, b"\x00" * 32)  # the receiver's totals hold other payers' channels too
    config = ChannelConfig.from_wire(sdk.payloads[0]["channelConfig"])
    cid = channel_id(config, side.chain.chain_id)
    side.send_from(key, initiate_withdraw_call(config, MIN_DEPOSIT))
    pending = side.facts(payer, cid).channel
    assert pending.withdraw_amount == MIN_DEPOSIT and pending.withdraw_requested_at > 0
    ttl, side.server.channel_state_ttl = side.server.channel_state_ttl, 0
    try:
        (paid,) = sdk.get()  # served: the escrow still holds it until the delay ends
    finally:
        side.server.channel_state_ttl = ttl
    assert paid.extra["channelState"]["withdrawRequestedAt"] == pending.withdraw_requested_at
    side.claim_and_settle()
    claimed = side.facts(payer, cid)
    assert claimed.channel.total_claimed == 5 * PRICE
    # this round also claimed what earlier tests left unclaimed; all of it was settled to the receiver
    assert claimed.receivers[0] == claimed.receivers[1] >= before.receivers[1] + 5 * PRICE
    assert claimed.receiver - before.receiver == claimed.receivers[1] - before.receivers[1]
    side.clock.increase(config.withdraw_delay + 1)
    side.send_from(key, finalize_withdraw_call(config))
    done = side.facts(payer, cid)
    assert done.payer == claimed.payer + MIN_DEPOSIT - 5 * PRICE
    assert done.channel.balance == done.channel.total_claimed == 5 * PRICE
    assert done.payer == PAYER_FUNDS - 5 * PRICE
