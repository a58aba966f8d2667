"""Multicall3 at its canonical address: Solidity Multicall3's encodings, reverts and bounds."""

import os
import re

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import to_checksum_address

from .helpers import INITIAL_BALANCE, Chain

IDENTITY_PRECOMPILE = "0x0000000000000000000000000000000000000004"
ERROR_SELECTOR = bytes.fromhex("08c379a0")
MAX_CALLS = 64
MAX_DATA = 4096

# Solidity Multicall3's own result types, written out rather than read from our ABI.
RESULTS = ["(bool,bytes)[]"]
AGGREGATE = ["uint256", "bytes[]"]
BLOCK_AND_RESULTS = ["uint256", "bytes32", "(bool,bytes)[]"]


def error_data(reason: str) -> bytes:
    return ERROR_SELECTOR + encode(["string"], [reason])


def reverts(reason: str):
    return pytest.raises(TransactionFailed, match=f"^{re.escape(reason)}$")


def probe_calls(chain: Chain, holder: str, nonce: bytes) -> list[tuple[str, bytes]]:
    """(target, callData) pairs a facilitator reads while diagnosing, plus one that reverts."""
    token = chain.token
    return [
        (token.address, token.encode("balanceOf", holder)),
        (token.address, token.encode("name")),
        (token.address, token.encode("version")),
        (token.address, token.encode("authorizationState", holder, nonce)),
        # Multicall3 is not the minter, so this one reverts with a reason.
        (token.address, token.encode("mint", holder, 1)),
    ]


def expected_results(chain: Chain, calls: list[tuple[str, bytes]]) -> list[tuple[bool, bytes]]:
    """What each call returns when made directly by a non-minter (revert data for the failing one)."""
    # Multicall3 itself has no ether to pay for an eth_call, so a funded non-minter stands in.
    results = []
    for target, data in calls:
        try:
            results.append((True, chain.call_raw(target, data, sender=chain.accounts[1])))
        except TransactionFailed as failure:
            results.append((False, error_data(str(failure))))
    return results


@pytest.fixture
def probes(chain, payer):
    calls = probe_calls(chain, payer.address, os.urandom(32))
    return calls, expected_results(chain, calls)


def multicall(chain: Chain, name: str, *args, value: int = 0) -> bytes:
    return chain.call_raw(chain.multicall.address, chain.multicall.encode(name, *args), value=value)


def pending_block_number(chain: Chain) -> int:
    return chain.tester.get_block_by_number("pending")["number"]


def test_aggregate3_matches_solidity_encoding(chain, probes):
    calls, expected = probes
    assert expected[0] == (True, encode(["uint256"], [INITIAL_BALANCE]))
    assert expected[-1] == (False, error_data("FiatToken: caller is not a minter"))

    raw = multicall(chain, "aggregate3", [(target, True, data) for target, data in calls])

    assert raw == encode(RESULTS, [expected])
    assert chain.multicall.decode("aggregate3", raw) == (tuple(expected),)


def test_aggregate3_reverts_when_a_required_call_fails(chain, probes):
    calls, _ = probes
    last = len(calls) - 1
    # Only the reverting call is allowed to fail ...
    lenient = [(target, index == last, data) for index, (target, data) in enumerate(calls)]
    multicall(chain, "aggregate3", lenient)
    # ... and once it is not, the whole batch reverts.
    strict = [(target, False, data) for target, data in calls]
    with reverts("Multicall3: call failed"):
        multicall(chain, "aggregate3", strict)


def test_try_aggregate(chain, probes):
    calls, expected = probes
    assert multicall(chain, "tryAggregate", False, calls) == encode(RESULTS, [expected])
    assert multicall(chain, "tryAggregate", True, calls[:-1]) == encode(RESULTS, [expected[:-1]])
    with reverts("Multicall3: call failed"):
        multicall(chain, "tryAggregate", True, calls)


def test_aggregate(chain, probes):
    calls, expected = probes
    raw = multicall(chain, "aggregate", calls[:-1])
    block = pending_block_number(chain)
    assert raw == encode(AGGREGATE, [block, [data for _, data in expected[:-1]]])
    with reverts("Multicall3: call failed"):
        multicall(chain, "aggregate", calls)


def test_block_and_aggregate(chain, probes):
    calls, expected = probes
    block = pending_block_number(chain)
    # The current block's hash is zero inside the EVM; Solidity Multicall3 returns it as is.
    raw = multicall(chain, "tryBlockAndAggregate", False, calls)
    assert raw == encode(BLOCK_AND_RESULTS, [block, b"\x00" * 32, expected])
    raw = multicall(chain, "blockAndAggregate", calls[:-1])
    assert raw == encode(BLOCK_AND_RESULTS, [block, b"\x00" * 32, expected[:-1]])
    with reverts("Multicall3: call failed"):
        multicall(chain, "blockAndAggregate", calls)


def test_aggregate3_value(chain):
    payee = chain.accounts[2]
    calls = [(payee, False, 5, b""), (payee, False, 7, b"")]
    raw = multicall(chain, "aggregate3Value", calls, value=12)
    assert raw == encode(RESULTS, [[(True, b""), (True, b"")]])
    with reverts("Multicall3: value mismatch"):
        multicall(chain, "aggregate3Value", calls, value=13)


def test_block_and_chain_getters(chain):
    m = chain.multicall
    chain.mine(3)
    older = chain.tester.get_block_by_number(chain.tester.get_block_by_number("latest")["number"] - 2)
    pending = chain.tester.get_block_by_number("pending")
    latest = chain.tester.get_block_by_number("latest")
    assert chain.call(m, "getChainId") == chain.chain_id
    assert chain.call(m, "getBlockNumber") == pending["number"]
    assert chain.call(m, "getCurrentBlockTimestamp") == pending["timestamp"]
    assert chain.call(m, "getCurrentBlockGasLimit") == pending["gas_limit"]
    assert chain.call(m, "getBasefee") == pending["base_fee_per_gas"]
    coinbase = chain.call(m, "getCurrentBlockCoinbase")
    assert to_checksum_address(coinbase) == to_checksum_address(pending["coinbase"])
    assert chain.call(m, "getLastBlockHash") == bytes.fromhex(latest["hash"][2:])
    assert chain.call(m, "getBlockHash", latest["number"]) == bytes.fromhex(latest["hash"][2:])
    assert chain.call(m, "getBlockHash", older["number"]) == bytes.fromhex(older["hash"][2:])
    assert chain.call(m, "getBlockHash", pending["number"]) == b"\x00" * 32
    assert chain.call(m, "getBlockHash", 10**9) == b"\x00" * 32
    holder = chain.accounts[1]
    assert chain.call(m, "getEthBalance", holder) == chain.tester.get_balance(holder)


def test_bounds(chain):
    full = [(IDENTITY_PRECOMPILE, False, bytes([7]) * MAX_DATA)]
    assert multicall(chain, "aggregate3", full) == encode(RESULTS, [[(True, bytes([7]) * MAX_DATA)]])
    # Past the bounds the arguments fail Vyper's ABI decoding (empty revert).
    with pytest.raises(TransactionFailed):
        multicall(chain, "aggregate3", [(IDENTITY_PRECOMPILE, False, bytes(MAX_DATA + 1))])
    most = [(IDENTITY_PRECOMPILE, False, b"")] * MAX_CALLS
    assert multicall(chain, "aggregate3", most) == encode(RESULTS, [[(True, b"")] * MAX_CALLS])
    with pytest.raises(TransactionFailed):
        multicall(chain, "aggregate3", [*most, most[0]])


def test_long_return_data_is_cut(chain):
    # A contract whose code returns 5120 bytes: 32 bytes of 0xff, then zeros.
    runtime = bytes.fromhex("7f" + "ff" * 32 + "600052" + "611400" + "6000f3")
    init = bytes.fromhex(f"60{len(runtime):02x}80600b6000396000f3") + runtime
    tx_hash = chain.tester.send_transaction(
        {"from": chain.accounts[0], "data": "0x" + init.hex(), "gas": 200_000}
    )
    wide = chain.tester.get_transaction_receipt(tx_hash)["contract_address"]
    assert len(chain.call_raw(wide, b"")) == 5120

    raw = multicall(chain, "aggregate3", [(wide, False, b"")])
    assert raw == encode(RESULTS, [[(True, b"\xff" * 32 + bytes(MAX_DATA - 32))]])
