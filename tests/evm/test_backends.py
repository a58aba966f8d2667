"""The conformance test of the ``Chain`` interface (``x402sim.evm.backend``): every backend passes it.

Each backend is built with the same accounts and funding, then driven through the interface only:
reads, a reverted call as a value, a refused transaction as ``ChainError``, and the facilitator role
settling a real payment on it, judged from the backend's own receipts, balances and
``authorizationState``. A new backend joins ``BACKEND_NAMES`` (and ``BACKENDS`` if a scenario can
build it) and must pass every test here.
"""

from __future__ import annotations

import time

import pytest

from x402sim.actors import Facilitator
from x402sim.errors import ChainError
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.backend import BACKENDS, Chain, ChainConfig, make_chain
from x402sim.evm.chain import ETHER
from x402sim.evm.rpc_chain import RpcChain
from x402sim.evm.token import encode_call
from x402sim.http import Services
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.mechanisms import EXACT_EIP3009, Offer
from x402sim.protocol import PaymentPayload, PaymentRequirements, Reason

PRICE = 10_000
BACKEND_NAMES = ("evm", "ledger", "rpc")


class World:
    """One backend with a funded payer, a funded facilitator and a payee, reached as a ``Chain``."""

    def __init__(self, name: str, seed: int = 3) -> None:
        self.services: Services | None = None
        config = ChainConfig(seed=seed, start_time=int(time.time()))
        if name == "rpc":  # a LocalChain behind JSON-RPC, reached only over HTTP
            node = make_chain("evm", config)
            self._fund(node)
            self.services = Services()
            url = self.services.add("chain", chain_rpc_app(node, clock=time.time))
            self.services.start()
            self.chain: Chain = RpcChain(url)
            self.asset = node.usdc
        else:
            self.chain = make_chain(name, config)
            self._fund(self.chain)
            self.asset = self.chain.usdc

    def _fund(self, chain) -> None:
        self.payer_key, self.facilitator_key, payee_key = (chain.new_key() for _ in range(3))
        self.payer, self.payee = address_of_key(self.payer_key), address_of_key(payee_key)
        chain.fund_many([(self.payer, 10 * PRICE, 0), (address_of_key(self.facilitator_key), 0, 10 * ETHER)])

    def close(self) -> None:
        if self.services is not None:
            self.services.stop()

    def requirements(self) -> PaymentRequirements:
        return PaymentRequirements(
            scheme="exact",
            network=self.chain.network,
            amount=PRICE,
            asset=self.asset,
            pay_to=self.payee,
            max_timeout_seconds=300,
            extra=EXACT_EIP3009.extra(self.chain.name_of(self.asset), self.chain.version_of(self.asset)),
        )

    def payment(self, requirements: PaymentRequirements, nonce: bytes) -> PaymentPayload:
        offer = Offer.of(requirements)
        payload = EXACT_EIP3009.sign(self.payer_key, self.payer, offer, self.chain.now, nonce)
        return PaymentPayload(x402_version=2, accepted=requirements, payload=payload)


@pytest.fixture(params=BACKEND_NAMES)
def world(request):
    made = World(request.param)
    yield made
    made.close()


def test_the_registry_names_the_embedded_backends():
    assert set(BACKENDS) == {"evm", "ledger"}
    assert isinstance(make_chain("evm", ChainConfig()), LocalChain)
    with pytest.raises(ValueError, match="unknown chain backend 'nope'"):
        make_chain("nope", ChainConfig())


def test_identity_time_and_reads(world):
    chain = world.chain
    assert chain.network == f"eip155:{chain.chain_id}"
    assert chain.remote is isinstance(chain, RpcChain)
    assert chain.code(world.asset) != b""
    assert chain.code(world.payer) == b""
    assert chain.balance_of(world.payer, world.asset) == 10 * PRICE
    assert chain.total_supply(world.asset) == 10 * PRICE
    assert chain.authorization_state(world.payer, b"\x01" * 32, world.asset) is False
    assert chain.name_of(world.asset) and chain.version_of(world.asset)
    assert chain.base_fee > 0
    assert chain.now >= int(time.time()) - 5 and chain.block_number >= 1


def test_a_reverting_call_is_a_value_and_a_refused_transaction_a_chain_error(world):
    chain = world.chain
    overdraw = encode_call("transfer(address,uint256)", world.payee, 10**12)
    result = chain.call(world.asset, overdraw)
    assert result.success is False  # the call has no balance behind it: reverted, as a value
    with pytest.raises(ChainError):
        chain.send_raw_transaction(b"\x02not a transaction")


def test_the_facilitator_settles_through_the_interface(world):
    chain = world.chain
    facilitator = Facilitator(chain, world.facilitator_key)
    requirements = world.requirements()
    nonce = b"\x07" * 32
    payment = world.payment(requirements, nonce)
    before = chain.pending_nonce(facilitator.address)
    verdict = facilitator.verify(payment, requirements, chain.now)
    assert verdict.is_valid, verdict
    answer = facilitator.settle_now(payment, requirements, chain.now)
    assert answer.success, answer
    receipt = chain.receipt(bytes.fromhex(answer.transaction[2:]))
    assert receipt is not None and receipt.success
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(world.payer, world.payee, PRICE)]
    assert chain.balance_of(world.payee, world.asset) == PRICE
    assert chain.balance_of(world.payer, world.asset) == 9 * PRICE
    assert chain.authorization_state(world.payer, nonce, world.asset) is True
    assert chain.pending_nonce(facilitator.address) == before + 1
    # The same authorization again: refused before the chain by the facilitator's claim, and by
    # the chain's own state for a facilitator that keeps no claims.
    again = facilitator.settle_now(payment, requirements, chain.now)
    assert again.error_reason == Reason.duplicate_settlement.value
    blind = Facilitator(chain, world.facilitator_key, dedupe="off")
    assert blind.verify(payment, requirements, chain.now).invalid_reason == (
        Reason.invalid_exact_evm_nonce_already_used.value
    )
    assert chain.balance_of(world.payee, world.asset) == PRICE


def test_the_storage_view_agrees_with_the_chain_where_a_backend_gives_one(world):
    chain = world.chain
    view = chain.token_state(world.asset)
    if chain.remote:
        assert view is None  # nothing to read storage from: verification simulates
        return
    assert view is not None
    assert view.balance_of(world.payer) == chain.balance_of(world.payer, world.asset)
    assert view.name_of() == chain.name_of(world.asset)
    assert chain.token_state(world.payer) is None  # not a token
