"""Our side of the batch-settlement interop tests: one chain served over JSON-RPC (its clock shared by
every service), our facilitator and our resource server selling ``GET /feed`` through payment
channels, and the on-chain facts the tests judge each phase of a channel's life by.

``build`` returns the side with its ``Services`` not yet started, so a test module can add its own
apps (the SDK's) to the same loop first. Our server's claim and settle work is run by the test
(``claim_and_settle``), not on a timer, and only while no request is in flight.
"""

from __future__ import annotations

import time
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
    finalize_withdraw_call,
    initiate_withdraw_call,
    read_channel,
    read_receiver,
)
from x402sim.evm.txsign import GWEI, sign_eip1559
from x402sim.http import FacilitatorClient, Services, facilitator_app, resource_server_app
from x402sim.http.chain_clock import ChainClock
from x402sim.http.chain_rpc import chain_rpc_app

HTTP_TIMEOUT = 10.0
PRICE = 1_000  # per request, atomic units
MIN_DEPOSIT = 10 * PRICE  # the SDK server's default, and ours
WITHDRAW_DELAY = 900  # the least the contract allows
WITHDRAW_GAS = 200_000


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

    def payer(self, *, usdc: int = 100_000) -> tuple[bytes, str]:
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
        nothing more; the rounds' times are past every cadence."""
        server = server or self.server
        driver = _FacilitatorDriver(self.facilitator, self.clock)
        now, rounds = int(time.time()), []
        for n in range(1, 6):
            work = run(server.channel_work(now + n * 3600), driver)
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
