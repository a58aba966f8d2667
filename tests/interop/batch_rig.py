"""Our side of the batch-settlement interop tests: one chain served over JSON-RPC (its clock shared by
every service), our facilitator and our resource server selling ``GET /feed`` through payment
channels, and the on-chain facts the tests judge each phase of a channel's life by.

``build`` returns the side with its ``Services`` not yet started, so a test module can add its own
apps (the SDK's) to the same loop first. Our server's claim and settle work is run by the test
(``claim_and_settle``), not on a timer, and only while no request is in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from x402sim.actors import Facilitator
from x402sim.actors.driver import BaseDriver, run
from x402sim.actors.messages import Settle
from x402sim.actors.server import ResourceServer, Route
from x402sim.actors.server_channels import ChannelWork
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ChannelConfig,
    ChannelState,
    channel_id,
    finalize_withdraw_call,
    initiate_withdraw_call,
    read_channel,
    read_receiver,
)
from x402sim.evm.rpc_chain import RpcChain
from x402sim.evm.txsign import GWEI, sign_eip1559
from x402sim.http import FacilitatorClient, PayingClient, Services, facilitator_app, resource_server_app
from x402sim.http.chain_clock import ChainClock
from x402sim.http.chain_rpc import chain_rpc_app

HTTP_TIMEOUT = 10.0
PRICE = 1_000  # per request, atomic units
MIN_DEPOSIT = 10 * PRICE  # the SDK server's default, and ours
WITHDRAW_DELAY = 900  # the least the contract allows
WITHDRAW_GAS = 200_000
PAYER_FUNDS = 100_000  # each payer's tokens


@dataclass(frozen=True)
class Facts:
    """What the chain says at one point of a channel's life."""

    payer: int  # the payer's token balance
    escrow: int  # the batch-settlement contract's token balance
    receiver: int  # the receiver's token balance
    channel: ChannelState
    receivers: tuple[int, int]  # (total claimed, total settled) of the receiver in the token


@dataclass
class OurSide:
    chain: LocalChain
    clock: ChainClock
    rpc_url: str
    receiver: str
    facilitator: Facilitator
    facilitator_url: str
    server: ResourceServer
    server_url: str
    work_time: int = 0  # the time our server's last channel work round was given

    def payer(self, *, usdc: int = PAYER_FUNDS) -> tuple[bytes, str]:
        """A fresh payer with tokens and ether for its own withdrawal transactions."""
        key = self.chain.new_key()
        self.chain.fund(address_of_key(key), usdc=usdc, eth=ETHER)
        return key, address_of_key(key)

    def facts(self, payer: str, channel: bytes, receiver: str | None = None) -> Facts:
        receiver = receiver or self.receiver
        chain, token = self.chain, self.chain.usdc
        return Facts(
            chain.balance_of(payer),
            chain.balance_of(BATCH_SETTLEMENT_ADDRESS),
            chain.balance_of(receiver),
            read_channel(chain, channel),
            read_receiver(chain, receiver, token),
        )

    def claim_and_settle(self, server: ResourceServer | None = None) -> list[ChannelWork]:
        """Run our server's channel work (claim, then settle) until a round claims and settles
        nothing more. Each round is an hour after the last one run (past every cadence), so the
        server's cadence marks never see time go backwards."""
        server = server or self.server
        driver = _FacilitatorDriver(self.facilitator, self.clock)
        rounds = []
        for n in range(1, 6):
            self.work_time = max(self.work_time, int(time.time())) + 3600
            work = run(server.channel_work(self.work_time), driver)
            assert not work.errors, work.errors
            if n > 1 and not (work.claims or work.settlements):
                break
            rounds.append(work)
        return rounds

    def send_from(self, key: bytes, data: bytes) -> None:
        """A payer's own transaction to the batch-settlement contract, mined and successful."""
        sender = address_of_key(key)
        signed = sign_eip1559(
            key,
            chain_id=self.chain.chain_id,
            nonce=self.chain.pending_nonce(sender),
            gas=WITHDRAW_GAS,
            max_fee_per_gas=2 * self.chain.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=BATCH_SETTLEMENT_ADDRESS,
            data=data,
        )
        tx_hash = self.chain.send_raw_transaction(signed.raw)
        self.clock.sync()
        self.chain.mine()
        receipt = self.chain.receipt(tx_hash)
        assert receipt is not None and receipt.success, receipt

    def withdraw(self, key: bytes, config: ChannelConfig, amount: int) -> None:
        """The payer's own withdrawal: initiate, move the chain's time past the delay, finalize."""
        self.send_from(key, initiate_withdraw_call(config, amount))
        self.clock.increase(config.withdraw_delay + 1)
        self.send_from(key, finalize_withdraw_call(config))


class _FacilitatorDriver(BaseDriver):
    """Our server's channel work, its ``Settle`` effects answered by our facilitator in process."""

    def __init__(self, facilitator: Facilitator, clock: ChainClock) -> None:
        self.facilitator, self.clock = facilitator, clock

    def settle(self, effect: Settle):
        return self.facilitator.settle_now(effect.payload, effect.requirements, self.clock.sync())


def build(seed: int) -> tuple[OurSide, Services]:
    """Our side on a fresh chain, its services added but not started."""
    chain = LocalChain(seed=seed, start_time=int(time.time()))
    receiver = address_of_key(chain.new_key())
    key = chain.new_key()
    chain.fund(address_of_key(key), eth=10 * ETHER)
    facilitator = Facilitator(chain, key)
    clock = ChainClock(chain, time.time)
    services = Services()
    rpc_url = services.add("chain-rpc", chain_rpc_app(chain, chain_clock=clock))
    facilitator_url = services.add("facilitator", facilitator_app(facilitator, chain_clock=clock))
    route = Route(
        "GET /feed",
        PRICE,
        scheme="batch-settlement",
        withdraw_delay=WITHDRAW_DELAY,
        claim_interval=1,
        # the SDK client signs its deposit's validBefore from the wall clock, which falls behind
        # the chain's by a withdraw delay after each life's withdrawal
        max_timeout_seconds=4 * 3600,
        settle_interval=1,
    )
    server = ResourceServer.with_prices(
        {"GET /feed": route}, chain=chain, pay_to=receiver, supported=facilitator.supported()
    )
    app = resource_server_app(server, FacilitatorClient(facilitator_url, timeout=HTTP_TIMEOUT))
    server.base_url = server_url = services.add("server", app)
    side = OurSide(chain, clock, rpc_url, receiver, facilitator, facilitator_url, server, server_url)
    return side, services


def our_client_life(
    side: OurSide,
    url: str,
    receiver: str,
    authorizer: str,
    *,
    claim: Callable[[], list[int]],
    settle: Callable[[], str],
) -> None:
    """Our paying client runs a whole channel life with an SDK server selling ``url`` (``PRICE`` a
    request, paid to ``receiver``, the SDK server's default ``minDeposit``), whose facilitator's
    receiver authorizer is ``authorizer``; ``claim`` has the server claim (vouchers per claim
    transaction), ``settle`` has it settle (the transaction). Judged on chain after each phase."""
    key, payer = side.payer()
    reads = RpcChain(side.rpc_url)
    # our client's time is the chain's: an earlier life's withdrawal moved it past the wall clock
    client = PayingClient(
        key, networks=(side.chain.network,), chain=reads, timeout=HTTP_TIMEOUT, clock=side.clock.sync
    )
    try:

        def pay(n: int) -> list:
            results = [client.get(url) for _ in range(n)]
            for result in results:
                assert result.status == 200, (result.status, result.response.headers, result.channel_problem)
            return results

        # -- deposit: the offer's minDeposit ---------------------------------------------------------
        start = side.facts(payer, b"\x00" * 32, receiver)
        (opened,) = pay(1)
        offer = opened.payment.accepted
        assert offer.extra["receiverAuthorizer"] == authorizer  # the facilitator's /supported
        assert offer.extra["minDeposit"] == str(MIN_DEPOSIT)  # the SDK server's default: 10 x price
        config = ChannelConfig.from_wire(opened.payment.payload["channelConfig"])
        cid = channel_id(config, side.chain.chain_id)
        assert opened.payment.payload["deposit"]["amount"] == str(MIN_DEPOSIT)
        assert opened.settlement.success and opened.settlement.transaction
        assert opened.settlement.extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)
        now = side.facts(payer, cid, receiver)
        assert now.payer == start.payer - MIN_DEPOSIT and now.escrow == start.escrow + MIN_DEPOSIT
        assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)
        assert now.receivers == (0, 0) and now.receiver == 0

        # -- vouchers: nothing moves on chain --------------------------------------------------------
        vouchers = pay(4)
        expected = [str(n * PRICE) for n in (2, 3, 4, 5)]
        assert [r.payment.payload["voucher"]["maxClaimableAmount"] for r in vouchers] == expected
        assert [r.settlement.extra["channelState"]["chargedCumulativeAmount"] for r in vouchers] == expected
        assert side.facts(payer, cid, receiver) == now

        # -- the SDK server claims and settles --------------------------------------------------------
        assert claim() == [1]
        assert settle()
        was, now = now, side.facts(payer, cid, receiver)
        assert now.payer == was.payer
        assert now.escrow == was.escrow - 5 * PRICE and now.receiver == was.receiver + 5 * PRICE
        assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 5 * PRICE)
        assert now.receivers == (5 * PRICE, 5 * PRICE)

        # -- top-up: the 11th request needs more than the balance ---------------------------------------
        more = pay(6)
        assert [r.payment.payload["type"] for r in more] == ["voucher"] * 5 + ["deposit"]
        assert more[-1].payment.payload["deposit"]["amount"] == str(MIN_DEPOSIT)
        was, now = now, side.facts(payer, cid, receiver)
        assert now.payer == was.payer - MIN_DEPOSIT and now.escrow == was.escrow + MIN_DEPOSIT
        assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT, 5 * PRICE)

        # -- a partial refund, the unclaimed vouchers claimed with it ---------------------------------
        refunded = client.refund(url, 3 * PRICE)
        assert refunded.settlement.success and refunded.settlement.transaction, refunded.settlement
        assert refunded.settlement.amount == str(3 * PRICE)
        was, now = now, side.facts(payer, cid, receiver)
        assert now.payer == was.payer + 3 * PRICE and now.escrow == was.escrow - 3 * PRICE
        assert (now.channel.balance, now.channel.total_claimed) == (2 * MIN_DEPOSIT - 3 * PRICE, 11 * PRICE)
        assert now.channel.refund_nonce == 1
        assert now.receivers == (11 * PRICE, 5 * PRICE)
        assert settle()
        was, now = now, side.facts(payer, cid, receiver)
        assert now.receiver == was.receiver + 6 * PRICE and now.receivers == (11 * PRICE, 11 * PRICE)

        # -- the payer's own withdrawal of the rest ---------------------------------------------------
        left = now.channel.balance - now.channel.total_claimed
        side.withdraw(key, config, left)
        was, now = now, side.facts(payer, cid, receiver)
        assert now.payer == was.payer + left and now.escrow == was.escrow - left
        assert now.channel.balance == now.channel.total_claimed == 11 * PRICE
        assert (now.channel.withdraw_amount, now.channel.withdraw_requested_at) == (0, 0)
        assert now.payer == start.payer - 11 * PRICE and now.receiver == 11 * PRICE
    finally:
        client.close()
        reads.close()


def payer_named_for_deposit_and_voucher(side: OurSide, url: str) -> tuple[str, str, str]:
    """Our client pays ``url`` twice (a deposit, then a voucher), both served: the payer as each
    PAYMENT-RESPONSE names it, and the payer's checksummed address."""
    key, payer = side.payer()
    reads = RpcChain(side.rpc_url)
    try:
        with PayingClient(
            key, networks=(side.chain.network,), chain=reads, timeout=HTTP_TIMEOUT, clock=side.clock.sync
        ) as client:
            deposit, voucher = (client.get(url) for _ in range(2))
    finally:
        reads.close()
    assert (deposit.status, voucher.status) == (200, 200)
    return deposit.settlement.payer, voucher.settlement.payer, payer


def our_client_recovers(side: OurSide, url: str, receiver: str) -> None:
    """Our client pays ``url`` three times (a deposit, two vouchers); then a new client of the same
    payer (an empty channel store) reads the channel from the chain, signs a voucher from what was
    claimed, is answered the server's corrective 402, checks and adopts it, and pays on: no second
    deposit."""
    key, payer = side.payer()
    reads = RpcChain(side.rpc_url)
    try:
        for n, kind, voucher in ((3, "deposit", 3 * PRICE), (1, "voucher", 4 * PRICE)):
            with PayingClient(
                key, networks=(side.chain.network,), chain=reads, timeout=HTTP_TIMEOUT, clock=side.clock.sync
            ) as client:
                results = [client.get(url) for _ in range(n)]
            assert [r.status for r in results] == [200] * n
            assert results[0].payment.payload["type"] == kind
            assert results[-1].payment.payload["voucher"]["maxClaimableAmount"] == str(voucher)
        assert results[0].first_status == 402  # the corrective one, adopted
        config = ChannelConfig.from_wire(results[0].payment.payload["channelConfig"])
        now = side.facts(payer, channel_id(config, side.chain.chain_id), receiver)
        assert now.payer == PAYER_FUNDS - MIN_DEPOSIT
        assert (now.channel.balance, now.channel.total_claimed) == (MIN_DEPOSIT, 0)
    finally:
        reads.close()
