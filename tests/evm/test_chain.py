"""LocalChain: time and blocks under our control, batch mining, funding, reads and snapshots."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.errors import ChainError
from x402sim.evm import MULTICALL3_ADDRESS, LocalChain, address_of_key, load_artifact
from x402sim.evm.chain import ETHER
from x402sim.evm.eip712 import Authorization, authorization_digest, sign_digest, split_signature
from x402sim.evm.token import transfer_with_authorization_call


@pytest.fixture
def chain() -> LocalChain:
    return LocalChain(seed=5)


def _payment_call(chain, key, to, value, nonce, *, valid_before=None):
    auth = Authorization(
        address_of_key(key), to, value, chain.now - 600, valid_before or chain.now + 3600, nonce
    )
    v, r, s = split_signature(sign_digest(key, authorization_digest(chain.domain, auth)))
    return transfer_with_authorization_call(
        auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s
    )


def test_setup_deploys_token_and_multicall(chain):
    assert chain.name_of() == "USD Coin" and chain.version_of() == "2"
    assert chain.total_supply() == 0
    assert chain.code(MULTICALL3_ADDRESS) == load_artifact("multicall3").runtime_bytecode
    assert chain.network == "eip155:31337"


@given(steps=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6))
@settings(max_examples=15)
def test_blocks_are_stamped_with_the_clock_and_mining_never_moves_it(steps):
    chain = LocalChain(seed=1)
    last = chain.latest_timestamp
    for step in steps:
        now = chain.advance(step)
        block = chain.mine()
        assert block.timestamp == now == chain.now == chain.latest_timestamp
        assert block.timestamp >= last  # blocks may share a second, never go back
        last = block.timestamp


def test_many_blocks_in_one_second_keep_the_clock():
    chain = LocalChain(seed=1)
    now = chain.now
    blocks = [chain.mine() for _ in range(5)]
    assert [b.timestamp for b in blocks] == [now] * 5 and chain.now == now
    assert [b.number for b in blocks] == list(range(blocks[0].number, blocks[0].number + 5))


def test_time_never_moves_back(chain):
    with pytest.raises(ChainError, match="time only moves forward"):
        chain.advance(-1)
    chain.advance(100)
    chain.mine()
    with pytest.raises(ChainError, match="latest block"):
        chain.set_time(chain.latest_timestamp - 1)


def test_many_transactions_from_one_sender_mine_in_one_block(chain):
    payer, relayer = chain.new_key(), chain.new_key()
    payee = address_of_key(chain.new_key())
    chain.fund_many([(address_of_key(payer), 1_000_000, 0), (address_of_key(relayer), 0, ETHER)])
    hashes = [
        chain.transact(
            relayer, chain.usdc, _payment_call(chain, payer, payee, 10, bytes([i]) * 32), gas=150_000
        )
        for i in range(1, 31)
    ]
    assert chain.pending_count == 30 and all(chain.receipt(h) is None for h in hashes)
    block = chain.mine()
    assert block.tx_hashes == tuple(hashes)
    assert chain.pending_count == 0
    assert all(chain.receipt(h).success and chain.receipt(h).block_number == block.number for h in hashes)
    assert chain.balance_of(payee) == 300
    assert len([t for t in chain.transfers(since_block=block.number) if t.to == payee]) == 30


def test_first_payment_to_a_fresh_payee_costs_more_gas(chain):
    payer, relayer = chain.new_key(), chain.new_key()
    payee = address_of_key(chain.new_key())
    chain.fund_many([(address_of_key(payer), 1_000, 0), (address_of_key(relayer), 0, ETHER)])
    first = chain.transact(
        relayer, chain.usdc, _payment_call(chain, payer, payee, 1, b"\x01" * 32), gas=150_000
    )
    chain.mine()
    second = chain.transact(
        relayer, chain.usdc, _payment_call(chain, payer, payee, 1, b"\x02" * 32), gas=150_000
    )
    chain.mine()
    # EIP-3009 on a plain token: ~81.5k for a fresh payee's first payment, ~64.4k after (reference notes)
    assert 78_000 < chain.receipt(first).gas_used < 85_000
    assert 61_000 < chain.receipt(second).gas_used < 68_000
    assert (
        chain.receipt(first).fee == chain.receipt(first).gas_used * chain.receipt(first).effective_gas_price
    )


def test_reverted_transaction_has_a_receipt_with_the_reason(chain):
    payer, relayer = chain.new_key(), chain.new_key()
    chain.fund(address_of_key(relayer), eth=ETHER)
    payee = address_of_key(chain.new_key())
    tx = chain.transact(relayer, chain.usdc, _payment_call(chain, payer, payee, 5, b"\x03" * 32), gas=150_000)
    chain.mine()
    receipt = chain.receipt(tx)
    assert not receipt.success
    assert receipt.revert_reason == "ERC20: transfer amount exceeds balance"
    assert chain.authorization_state(address_of_key(payer), b"\x03" * 32) is False


def test_call_simulates_at_the_given_time(chain):
    payer = chain.new_key()
    chain.fund(address_of_key(payer), usdc=100)
    payee = address_of_key(chain.new_key())
    data = _payment_call(chain, payer, payee, 1, b"\x04" * 32, valid_before=chain.now + 100)
    assert chain.call(chain.usdc, data).success
    late = chain.call(chain.usdc, data, timestamp=chain.now + 100)
    assert not late.success and late.revert_reason == "FiatTokenV2: authorization is expired"
    assert chain.balance_of(payee) == 0  # a call changes nothing


def test_refuses_transactions_that_could_never_be_mined(chain):
    poor = chain.new_key()
    with pytest.raises(ChainError, match="too little ether"):
        chain.transact(poor, chain.usdc, b"")
    rich = chain.new_key()
    chain.fund(address_of_key(rich), eth=ETHER)
    chain.transact(rich, address_of_key(poor), b"", value=1)
    from eth_account import Account

    stale = Account.sign_transaction(
        {
            "type": 2,
            "chainId": chain.chain_id,
            "nonce": 0,
            "gas": 21_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 0,
            "to": address_of_key(poor),
            "value": 1,
            "data": b"",
        },
        rich,
    )
    with pytest.raises(ChainError, match="already pending"):
        chain.send_raw_transaction(bytes(stale.raw_transaction))
    wrong_chain = Account.sign_transaction(
        {
            "type": 2,
            "chainId": 1,
            "nonce": 1,
            "gas": 21_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 0,
            "to": address_of_key(poor),
            "value": 1,
            "data": b"",
        },
        rich,
    )
    with pytest.raises(ChainError):
        chain.send_raw_transaction(bytes(wrong_chain.raw_transaction))
    with pytest.raises(ChainError, match="invalid transaction"):
        chain.send_raw_transaction(b"\x02garbage")


def test_snapshot_and_revert_restore_state_clock_and_pool(chain):
    payer = chain.new_key()
    address = address_of_key(payer)
    chain.fund(address, usdc=500)
    snap = chain.snapshot()
    now, number = chain.now, chain.block_number
    chain.advance(1000)
    chain.fund(address, usdc=700)
    chain.transact(chain.minter_key, chain.usdc, b"")
    assert chain.balance_of(address) == 1200 and chain.pending_count == 1
    chain.revert(snap)
    assert (chain.balance_of(address), chain.now, chain.block_number, chain.pending_count) == (
        500,
        now,
        number,
        0,
    )
    assert all(r.block_number <= number for r in chain.receipts())
    chain.fund(address, usdc=1)  # the chain goes on from the snapshot
    assert chain.balance_of(address) == 501 and chain.block_number == number + 1


def test_same_seed_same_chain():
    a, b = LocalChain(seed=9), LocalChain(seed=9)
    assert a.usdc == b.usdc and a.new_key() == b.new_key()
    assert a.mine().hash == b.mine().hash
    assert LocalChain(seed=10).new_key() != LocalChain(seed=9).new_key()
