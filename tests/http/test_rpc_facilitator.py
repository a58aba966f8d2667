"""The reference facilitator settling on a chain it reaches only over JSON-RPC (``RpcChain``)."""

import time

import pytest

from tests.helpers import craft_payment
from tests.http.conftest import PRICE
from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http import FacilitatorClient, PayingClient, Services, facilitator_app, resource_server_app
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.mechanisms.exact_eip3009 import settlement_calldata
from x402sim.protocol import ReasonClass, parse_exact_evm_payload, reason_class


@pytest.fixture
def remote():
    chain = LocalChain(seed=12, start_time=int(time.time()))
    payer_key, fkey, payee_key = (chain.new_key() for _ in range(3))
    chain.fund_many([(address_of_key(payer_key), 1_000_000, 0), (address_of_key(fkey), 0, 10 * ETHER)])
    node = Services()
    rpc_url = node.add("chain", chain_rpc_app(chain, clock=time.time))
    node.start()
    facilitator = Facilitator(RpcChain(rpc_url), fkey)
    edge = Services()
    facilitator_url = edge.add("facilitator", facilitator_app(facilitator, automine=False, settle_timeout=5))
    server = ResourceServer.with_prices(
        {"GET /weather": PRICE},
        chain=chain,
        pay_to=address_of_key(payee_key),
    )
    server_url = edge.add("server", resource_server_app(server, FacilitatorClient(facilitator_url)))
    edge.start()
    yield chain, facilitator, server, server_url, payer_key
    edge.stop()
    node.stop()


def test_settles_over_json_rpc(remote):
    chain, facilitator, server, server_url, payer_key = remote
    assert facilitator.chain.network == chain.network
    with PayingClient(payer_key, networks=(chain.network,)) as client:
        result = client.get(server_url + "/weather")
    assert result.status == 200 and result.settlement.success
    nonce = bytes.fromhex(result.payment.payload["authorization"]["nonce"][2:])
    assert chain.authorization_state(address_of_key(payer_key), nonce)
    assert chain.balance_of(server.pay_to) == PRICE
    record = facilitator.settlements[-1]
    assert record.success and record.gas_used == chain.receipt(record.tx_hash).gas_used


def test_diagnoses_and_replays_failures_over_json_rpc(remote):
    chain, facilitator, server, _, payer_key = remote
    requirements = server.requirements(server.routes["GET /weather"])
    payer = address_of_key(payer_key)
    now = int(time.time())
    wrong_name = requirements.model_copy(update={"extra": {"name": "USDC", "version": "2"}})
    payment = craft_payment(payer_key, payer, wrong_name, now, nonce=b"\x01" * 32)
    verdict = facilitator.verify(payment, wrong_name, now)
    assert reason_class(verdict.invalid_reason) is ReasonClass.token_name

    # a settlement that reverts on chain: someone else's transaction with the same authorization is
    # pending when ours arrives, and the node mines both in one block, theirs first
    payment = craft_payment(payer_key, payer, requirements, now, nonce=b"\x02" * 32)
    thief = chain.new_key()
    chain.fund(address_of_key(thief), eth=ETHER)
    chain.transact(
        thief, chain.usdc, settlement_calldata(parse_exact_evm_payload(payment.payload)), gas=150_000
    )
    pending = facilitator.begin_settle(payment, requirements, now)
    receipt = facilitator.chain.receipt(pending.tx_hash)
    assert receipt is not None and not receipt.success
    answer = facilitator.finish_settle(pending, receipt)
    assert not answer.success and reason_class(answer.error_reason) is ReasonClass.nonce_used
    assert answer.transaction == "0x" + pending.tx_hash.hex()
    assert chain.balance_of(server.pay_to) == PRICE  # paid once, by the thief's transaction
