"""The fast EIP-1559 signer is byte-identical to eth-account's, and the chain takes what it signs."""

from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.evm import LocalChain
from x402sim.evm.chain import ETHER
from x402sim.evm.eip712 import SECP256K1_N, address_of_key
from x402sim.evm.token import encode_call
from x402sim.evm.txsign import sign_eip1559

keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
uint64 = st.integers(min_value=0, max_value=2**64 - 1)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
small = st.sampled_from([0, 1, 127, 128, 255, 256, 21_000])  # RLP's one-byte and length edges


@settings(max_examples=300)
@given(
    key=keys,
    chain_id=st.integers(min_value=1, max_value=2**64 - 1) | st.sampled_from([1, 127, 128, 31337]),
    nonce=uint64 | small,
    gas=uint64 | small,
    max_fee=uint256 | small,
    priority_fee=uint256 | small,
    to=st.none() | st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b)),
    value=uint256 | small,
    data=st.binary(max_size=300) | st.sampled_from([b"", b"\x00", b"\x7f", b"\x80", b"\x00" * 56]),
)
def test_fast_signature_is_byte_identical_to_eth_account(
    key, chain_id, nonce, gas, max_fee, priority_fee, to, value, data
):
    tx = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "gas": gas,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority_fee,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to
    reference = Account.sign_transaction(tx, key)
    fast = sign_eip1559(
        key,
        chain_id=chain_id,
        nonce=nonce,
        gas=gas,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority_fee,
        to=to,
        value=value,
        data=data,
    )
    assert fast.raw == bytes(reference.raw_transaction)
    assert fast.hash == bytes(reference.hash)


def test_the_chain_takes_it_and_recovers_the_sender():
    chain = LocalChain()
    key = chain.new_key()
    sender = address_of_key(key)
    chain.fund(sender, eth=ETHER)
    data = encode_call("balanceOf(address)", sender)
    signed = sign_eip1559(
        key,
        chain_id=chain.chain_id,
        nonce=chain.pending_nonce(sender),
        gas=100_000,
        max_fee_per_gas=2 * chain.base_fee,
        max_priority_fee_per_gas=0,
        to=chain.usdc,
        data=data,
    )
    assert chain.send_raw_transaction(signed.raw) == signed.hash
    assert chain.pending_transaction(signed.hash).sender == bytes.fromhex(sender[2:])
    chain.mine()
    assert chain.receipt(signed.hash).success and chain.receipt(signed.hash).sender == sender
