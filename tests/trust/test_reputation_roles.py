"""ERC-8004 through the reference roles on the testbed chain: the client pays only an agent's
registered wallet, reviews what it paid for with proof of payment, and servers judge payers by
their on-chain identity and reputation."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from eth_abi import decode

from x402sim.evm import erc8004
from x402sim.trust.identity import AgentDirectory
from x402sim.trust.reputation import (
    TAG_DELIVERED,
    TAG_GOOD_PAYER,
    AgentRef,
    PayerRules,
    ServerIdentity,
    choose_by_reputation,
    read_feedback_uri,
)

PRICE = 10_000


def register_agent(tb, owner, wallet) -> AgentRef:
    agent_id = erc8004.register(tb.chain, owner.key, "https://agent.test/registration.json")
    if wallet.address != owner.address:
        erc8004.set_agent_wallet(tb.chain, owner.key, agent_id, wallet.key)
    return AgentRef(agent_id, tb.chain.chain_id, tb.chain.identity_registry)


def registered_shop(tb, *, pay_to=None, **kwargs):
    owner, wallet = tb.account(eth=10**18), tb.account()
    agent = register_agent(tb, owner, wallet)
    identity = ServerIdentity(agent, tb.chain.reputation_registry, "https://shop.test/data")
    server = tb.server({"GET /data": PRICE}, pay_to=pay_to or wallet.address, identity=identity, **kwargs)
    return server, agent, wallet


def test_the_client_refuses_a_pay_to_that_is_not_the_agents_wallet(tb):
    server, agent, wallet = registered_shop(tb, pay_to=tb.account().address)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, directory=AgentDirectory(tb.chain))
    before = tb.chain.block_number
    result = client.get(server, "/data")
    assert result.payment is None
    assert f"is not agent {agent.agent_id}'s registered wallet {wallet.address}" in result.refused
    tb.mine()
    assert tb.chain.transfers(since_block=before + 1) == []


def test_a_client_that_reads_no_registry_pays_the_same_server(tb):
    """The check is the directory's: without it, the mismatched payTo is paid (the attack works)."""
    thief = tb.account()
    server, _, _ = registered_shop(tb, pay_to=thief.address)
    result = tb.client(tb.account(usdc=10**6)).get(server, "/data")
    assert result.paid
    tb.mine()
    assert tb.chain.balance_of(thief.address) == PRICE


def test_feedback_is_posted_on_chain_with_the_settlement_as_proof_of_payment(tb):
    server, agent, wallet = registered_shop(tb)
    payer = tb.account(usdc=10**6, eth=10**18)
    client = tb.client(payer, directory=AgentDirectory(tb.chain), rate=lambda response: 87)
    result = client.get(server, "/data")
    assert result.paid and result.feedback_tx is not None
    summary = erc8004.get_summary(tb.chain, agent.agent_id, [payer.address], TAG_DELIVERED)
    assert (summary.count, summary.mean) == (1, 87)
    receipt = tb.chain.receipt(result.feedback_tx)
    (log,) = [entry for entry in receipt.logs if entry.topics[0] == erc8004.NEW_FEEDBACK_TOPIC]
    fields = decode(
        ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"], log.data
    )
    file = read_feedback_uri(fields[6])
    proof = file["proofOfPayment"]
    assert proof["txHash"] == result.settlement.transaction
    assert (proof["fromAddress"], proof["toAddress"]) == (payer.address, wallet.address)
    paid = tb.chain.receipt(bytes.fromhex(proof["txHash"][2:])).transfers()
    assert [(t.from_, t.to, t.value) for t in paid] == [(payer.address, wallet.address, PRICE)]


def test_a_client_with_a_reputation_floor_leaves_a_badly_reviewed_server(tb):
    server, agent, _ = registered_shop(tb)
    critic = tb.account(eth=10**18)
    erc8004.give_feedback(tb.chain, critic.key, agent.agent_id, 10, 0, TAG_DELIVERED)
    payer = tb.account(usdc=10**6)
    client = tb.client(payer, directory=AgentDirectory(tb.chain), min_reputation=50)
    result = client.get(server, "/data")
    assert result.payment is None and "reputation 10 is below 50" in result.refused
    assert tb.chain.balance_of(payer.address) == 10**6


def test_a_client_chooses_among_servers_by_their_reputation_on_chain(tb):
    critic = tb.account(eth=10**18)
    good, bad, fresh = (registered_shop(tb)[1].agent_id for _ in range(3))
    erc8004.give_feedback(tb.chain, critic.key, good, 90, 0, TAG_DELIVERED)
    erc8004.give_feedback(tb.chain, critic.key, bad, 0, 0, TAG_DELIVERED)
    erc8004.give_feedback(tb.chain, critic.key, bad, 90, 0, "another-tag")  # not a delivery review
    directory, rng = AgentDirectory(tb.chain), random.Random(1)
    ids = [good, bad, fresh, None]  # fresh: no feedback yet; None: a server without an agent
    picks = Counter(choose_by_reputation(directory, ids, rng, explore=0, prior=30) for _ in range(400))
    assert picks[1] == 0  # reputation 0: never chosen without exploring
    # weights 90^2 : 30^2 : 30^2, so the reviewed server takes about 9/11 of the picks
    assert 0.75 < picks[0] / 400 < 0.88 and picks[2] > 0 and picks[3] > 0
    explored = Counter(choose_by_reputation(directory, ids, rng, explore=1) for _ in range(400))
    assert set(explored) == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        choose_by_reputation(directory, [], rng)


def test_the_client_can_demand_a_registered_server(tb):
    server = tb.server({"GET /data": PRICE})
    client = tb.client(tb.account(usdc=10**6), require_identity=True)
    result = client.get(server, "/data")
    assert result.payment is None and "declares no agent identity" in result.refused


@pytest.fixture
def payer_agent(tb):
    payer = tb.account(usdc=10**6, eth=10**18)
    return payer, register_agent(tb, payer, payer)


def test_a_server_for_registered_payers_refuses_an_anonymous_one(tb, payer_agent):
    directory = AgentDirectory(tb.chain)
    server = tb.server({"GET /data": PRICE}, payers=PayerRules(directory, require_registered=True))
    anonymous = tb.account(usdc=10**6)
    before = tb.chain.block_number
    refused = tb.client(anonymous).get(server, "/data")
    assert refused.status == 402 and not refused.paid
    tb.mine()
    assert tb.chain.transfers(since_block=before + 1) == []
    payer, agent = payer_agent
    paid = tb.client(payer, identity=agent, directory=directory).get(server, "/data")
    assert paid.paid and paid.payment.extensions["8004-reputation"]["info"]["identity"]["agentId"] == str(
        agent.agent_id
    )


def test_a_payer_cannot_borrow_another_agents_identity(tb, payer_agent):
    _, agent = payer_agent
    directory = AgentDirectory(tb.chain)
    server = tb.server({"GET /data": PRICE}, payers=PayerRules(directory, require_registered=True))
    impostor = tb.account(usdc=10**6)
    result = tb.client(impostor, identity=agent, directory=directory).get(server, "/data")
    assert not result.paid
    tb.mine()
    assert tb.chain.balance_of(impostor.address) == 10**6


def test_reputed_payers_are_offered_a_lower_price_and_others_pay_the_full_one(tb, payer_agent):
    directory = AgentDirectory(tb.chain)
    shop_wallet = tb.account()
    rules = PayerRules(directory, tiers={80: 6_000})
    server = tb.server({"GET /data": PRICE}, pay_to=shop_wallet.address, payers=rules)
    payer, agent = payer_agent
    reviewer = tb.account(eth=10**18)
    erc8004.give_feedback(tb.chain, reviewer.key, agent.agent_id, 95, 0, TAG_GOOD_PAYER)
    reputed = tb.client(payer, identity=agent, directory=directory).get(server, "/data")
    newcomer_account = tb.account(usdc=10**6, eth=10**18)
    newcomer = register_agent(tb, newcomer_account, newcomer_account)
    full = tb.client(newcomer_account, identity=newcomer, directory=directory).get(server, "/data")
    assert reputed.paid and full.paid
    tb.mine()
    assert tb.chain.balance_of(payer.address) == 10**6 - 6_000
    assert tb.chain.balance_of(newcomer_account.address) == 10**6 - PRICE
    assert tb.chain.balance_of(shop_wallet.address) == 6_000 + PRICE
