"""The JSON-RPC methods: a table from method name to handler, filled by the ``_rpc`` decorator.

Each handler takes the served chain (``ServedChain``) and the call's ``Params`` and returns the
JSON result or raises ``RpcError``. They are grouped as the package docstring lists them: identity
and fees, blocks and state, calls, transactions, receipts and logs, and the test methods
(``evm_*``, ``x402sim_*``). ``service`` looks methods up in ``METHODS`` and checks their arity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from eth_bloom import BloomFilter

from x402sim.errors import ChainError
from x402sim.evm import CallResult
from x402sim.evm.token import revert_reason

from .errors import INVALID_PARAMS, LIMIT_EXCEEDED, REVERTED, SERVER_ERROR, RpcError
from .gas import CALL_GAS_CAP, PRIORITY_FEE, TX_GAS, effective_price, intrinsic_gas
from .params import (
    BlockRef,
    InvalidParam,
    LogFilter,
    Params,
    no_overrides,
    parse_address,
    parse_block_ref,
    parse_bool,
    parse_call_object,
    parse_data,
    parse_filter,
    parse_hash,
    parse_percentiles,
    parse_quantity,
)
from .shapes import block_json, hex_data, hex_qty, logs_json, receipt_json, topic_bytes, tx_json
from .state import ServedChain

MAX_FEE_HISTORY = 1024  # blocks in one eth_feeHistory (geth's cap; larger counts are cut to it)
MAX_LOG_RANGE = 1000  # blocks one eth_getLogs may scan (~65 ms here), as hosted nodes cap it
MAX_LOGS = 10_000  # logs one eth_getLogs may return

METHODS: dict[str, tuple[Callable[[ServedChain, Params], Any], int]] = {}


def _rpc(name: str, arity: int) -> Callable:
    """Register a handler for ``name`` taking at most ``arity`` positional params."""

    def register(fn: Callable) -> Callable:
        METHODS[name] = (fn, arity)
        return fn

    return register


# -- identity and fees ------------------------------------------------------------------------------


@_rpc("web3_clientVersion", 0)
def _client_version(rpc: ServedChain, p: Params) -> str:
    return rpc.client_version


@_rpc("eth_chainId", 0)
def _chain_id(rpc: ServedChain, p: Params) -> str:
    return hex_qty(rpc.chain.chain_id)


@_rpc("net_version", 0)
def _net_version(rpc: ServedChain, p: Params) -> str:
    return str(rpc.chain.chain_id)


@_rpc("eth_accounts", 0)
def _accounts(rpc: ServedChain, p: Params) -> list:
    return []


@_rpc("eth_syncing", 0)
def _syncing(rpc: ServedChain, p: Params) -> bool:
    return False


@_rpc("eth_gasPrice", 0)
def _gas_price(rpc: ServedChain, p: Params) -> str:
    return hex_qty(rpc.chain.base_fee + PRIORITY_FEE)


@_rpc("eth_maxPriorityFeePerGas", 0)
def _max_priority_fee(rpc: ServedChain, p: Params) -> str:
    return hex_qty(PRIORITY_FEE)


@_rpc("eth_feeHistory", 3)
def _fee_history(rpc: ServedChain, p: Params) -> dict:
    count = p.take(0, "blockCount", lambda v: parse_quantity(v, limit=2**63 - 1))
    newest = rpc.header(p.take(1, "newestBlock", parse_block_ref))
    percentiles = p.take(2, "rewardPercentiles", parse_percentiles, default=None)
    count = min(count, MAX_FEE_HISTORY, newest.block_number + 1)
    if count == 0:
        return {"oldestBlock": hex_qty(0), "baseFeePerGas": [], "gasUsedRatio": []}
    evm = rpc.chain.evm
    oldest = newest.block_number - count + 1
    base_fees, ratios, rewards = [], [], []
    for number in range(oldest, newest.block_number + 1):
        base_fee, ratio, gas_used, tips = _fee_facts(rpc, number)
        base_fees.append(hex_qty(base_fee))
        ratios.append(ratio)
        if percentiles is not None:
            rewards.append([hex_qty(r) for r in _rewards(tips, gas_used, percentiles)])
    following = evm.create_header_from_parent(newest, timestamp=newest.timestamp + 1)
    base_fees.append(hex_qty(following.base_fee_per_gas))
    out = {"oldestBlock": hex_qty(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios}
    if percentiles is not None:
        out["reward"] = rewards
    return out


def _fee_facts(rpc: ServedChain, number: int) -> tuple[int, float, int, list[tuple[int, int]]]:
    """Base fee, gas used ratio, gas used and the sorted (tip, gas) pairs of canonical block
    ``number``; kept by block hash (a mined block never changes), as nodes keep a fee history."""
    evm = rpc.chain.evm
    block_hash = evm.get_canonical_block_hash(number)
    facts = rpc.fee_facts.get(block_hash)
    if facts is None:
        block = evm.get_canonical_block_by_number(number)
        h = block.header
        tips, previous = [], 0
        for tx, receipt in zip(block.transactions, rpc.receipts(block), strict=True):
            tips.append(
                (effective_price(tx, h.base_fee_per_gas) - h.base_fee_per_gas, receipt.gas_used - previous)
            )
            previous = receipt.gas_used
        facts = (
            h.base_fee_per_gas,
            h.gas_used / h.gas_limit if h.gas_limit else 0.0,
            h.gas_used,
            sorted(tips),
        )
        rpc.fee_facts.put(block_hash, facts)
    return facts


def _rewards(tips: list[tuple[int, int]], gas_used: int, percentiles: list[float]) -> list[int]:
    """Priority fee paid per unit of gas at each percentile of the block's gas (0 if empty)."""
    if not tips:
        return [0] * len(percentiles)
    out, i, reached = [], 0, tips[0][1]
    for pct in percentiles:
        threshold = gas_used * pct / 100
        while reached < threshold and i < len(tips) - 1:
            i += 1
            reached += tips[i][1]
        out.append(tips[i][0])
    return out


# -- blocks and state -------------------------------------------------------------------------------


@_rpc("eth_blockNumber", 0)
def _block_number(rpc: ServedChain, p: Params) -> str:
    return hex_qty(rpc.chain.block_number)


@_rpc("eth_getBlockByNumber", 2)
def _block_by_number(rpc: ServedChain, p: Params) -> dict | None:
    ref = p.take(0, "block", parse_block_ref)
    full = p.take(1, "fullTransactions", parse_bool, default=False)
    if ref.number is not None and ref.number > rpc.chain.block_number:
        return None
    header = rpc.header(ref)
    return block_json(rpc.chain.evm.get_canonical_block_by_number(header.block_number), full)


@_rpc("eth_getBlockByHash", 2)
def _block_by_hash(rpc: ServedChain, p: Params) -> dict | None:
    block_hash = p.take(0, "blockHash", parse_hash)
    full = p.take(1, "fullTransactions", parse_bool, default=False)
    block = rpc.block_by_hash(block_hash)
    return block_json(block, full) if block is not None else None


@_rpc("eth_getBalance", 2)
def _balance(rpc: ServedChain, p: Params) -> str:
    address = p.take(0, "address", parse_address)
    ref = p.take(1, "block", parse_block_ref, default=BlockRef(tag="latest"))
    return hex_qty(rpc.state_at(ref).get_balance(bytes.fromhex(address[2:])))


@_rpc("eth_getCode", 2)
def _code(rpc: ServedChain, p: Params) -> str:
    address = p.take(0, "address", parse_address)
    ref = p.take(1, "block", parse_block_ref, default=BlockRef(tag="latest"))
    return hex_data(rpc.state_at(ref).get_code(bytes.fromhex(address[2:])))


@_rpc("eth_getTransactionCount", 2)
def _transaction_count(rpc: ServedChain, p: Params) -> str:
    address = p.take(0, "address", parse_address)
    ref = p.take(1, "block", parse_block_ref, default=BlockRef(tag="latest"))
    if ref.tag == "pending":
        return hex_qty(rpc.chain.pending_nonce(address))
    return hex_qty(rpc.state_at(ref).get_nonce(bytes.fromhex(address[2:])))


# -- calls ------------------------------------------------------------------------------------------


def _revert_error(result: CallResult) -> RpcError:
    reason = revert_reason(result.output)
    message = f"execution reverted: {reason}" if reason else "execution reverted"
    return RpcError(REVERTED, message, hex_data(result.output))


@_rpc("eth_call", 3)
def _call(rpc: ServedChain, p: Params) -> str:
    call = p.take(0, "transaction", parse_call_object)
    ref = p.take(1, "block", parse_block_ref, default=BlockRef(tag="latest"))
    p.take(2, "stateOverrides", no_overrides, default=None)
    gas = min(call.gas or CALL_GAS_CAP, rpc.chain.block_gas_limit)
    result = rpc.simulate(call, gas, ref)
    if result.success:
        return hex_data(result.output)
    if result.reverted:
        raise _revert_error(result)
    raise RpcError(SERVER_ERROR, result.revert_reason or "execution failed")


@_rpc("eth_estimateGas", 3)
def _estimate_gas(rpc: ServedChain, p: Params) -> str:
    call = p.take(0, "transaction", parse_call_object)
    ref = p.take(1, "block", parse_block_ref, default=BlockRef(tag="latest"))
    p.take(2, "stateOverrides", no_overrides, default=None)
    cap = min(call.gas or rpc.chain.block_gas_limit, rpc.chain.block_gas_limit)
    result = rpc.simulate(call, cap, ref)
    if not result.success:
        if result.reverted:
            raise _revert_error(result)
        text = result.revert_reason or "execution failed"
        if "out of gas" in text.lower():
            text = f"gas required exceeds allowance ({cap})"
        raise RpcError(SERVER_ERROR, text)
    intrinsic, floor = intrinsic_gas(call.data)
    estimate = max(intrinsic + math.ceil(result.gas_used * 1.2), floor, TX_GAS)
    return hex_qty(min(estimate, cap) if call.gas else estimate)


# -- transactions, receipts, logs -------------------------------------------------------------------


@_rpc("eth_sendRawTransaction", 1)
def _send_raw_transaction(rpc: ServedChain, p: Params) -> str:
    raw = p.take(0, "signedTransaction", parse_data)
    try:
        tx_hash = rpc.chain.send_raw_transaction(raw)
    except ChainError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from None
    if rpc.automine:
        rpc.chain.mine()
    return hex_data(tx_hash)


@_rpc("eth_getTransactionByHash", 1)
def _transaction_by_hash(rpc: ServedChain, p: Params) -> dict | None:
    tx_hash = p.take(0, "transactionHash", parse_hash)
    found = rpc.find_mined(tx_hash)
    if found is not None:
        block, index = found
        return tx_json(block.transactions[index], block, index)
    pending = rpc.chain.pending_transaction(tx_hash)
    return tx_json(pending) if pending is not None else None


@_rpc("eth_getTransactionReceipt", 1)
def _transaction_receipt(rpc: ServedChain, p: Params) -> dict | None:
    found = rpc.find_mined(p.take(0, "transactionHash", parse_hash))
    if found is None:
        return None
    block, index = found
    return receipt_json(block, index, rpc.receipts(block))


def _matches(f: LogFilter, address: bytes, topics: list[bytes]) -> bool:
    if f.addresses is not None and address not in f.addresses:
        return False
    if len(topics) < len(f.topics):
        return False
    return all(wanted is None or topic in wanted for wanted, topic in zip(f.topics, topics, strict=False))


def _may_match(f: LogFilter, bloom: BloomFilter) -> bool:
    if f.addresses is not None and not any(a in bloom for a in f.addresses):
        return False
    return all(wanted is None or any(t in bloom for t in wanted) for wanted in f.topics)


@_rpc("eth_getLogs", 1)
def _get_logs(rpc: ServedChain, p: Params) -> list[dict]:
    f = p.take(0, "filter", parse_filter)
    evm = rpc.chain.evm
    if f.block_hash is not None:
        block = rpc.block_by_hash(f.block_hash)
        if block is None:
            raise RpcError(SERVER_ERROR, f"header not found: no canonical block {hex_data(f.block_hash)}")
        numbers = range(block.header.block_number, block.header.block_number + 1)
    else:
        head = rpc.chain.block_number
        first, last = (
            _resolve_number(rpc, f.from_block, head),
            _resolve_number(rpc, f.to_block, head),
        )
        if first > last:
            raise RpcError(
                INVALID_PARAMS, f"invalid params for eth_getLogs: fromBlock {first} is after toBlock {last}"
            )
        numbers = range(first, min(last, head) + 1)
        if len(numbers) > MAX_LOG_RANGE:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"query exceeds the block range limit: {len(numbers)} blocks "
                f"({first}..{numbers[-1]}), at most {MAX_LOG_RANGE} per eth_getLogs",
            )
    found: list[dict] = []
    for number in numbers:
        block_hash = evm.get_canonical_block_hash(number)
        logs = rpc.block_logs.get(block_hash)
        if logs is None:
            if not _may_match(f, BloomFilter(evm.get_block_header_by_hash(block_hash).bloom)):
                continue
            logs = _block_logs(rpc, number)
            rpc.block_logs.put(block_hash, logs)
        found.extend(entry for entry, address, topics in logs if _matches(f, address, topics))
        if len(found) > MAX_LOGS:
            raise RpcError(
                LIMIT_EXCEEDED, f"query returned more than {MAX_LOGS} results; narrow the block range"
            )
    return found


def _block_logs(rpc: ServedChain, number: int) -> list[tuple[dict, bytes, list[bytes]]]:
    """Every log of canonical block ``number``: its JSON, address and topics, kept by block hash."""
    block = rpc.chain.evm.get_canonical_block_by_number(number)
    logs: list[tuple[dict[str, Any], bytes, list[bytes]]] = []
    log_index = 0
    for index, receipt in enumerate(rpc.receipts(block)):
        entries = logs_json(block, index, receipt, log_index)
        log_index += len(receipt.logs)
        logs.extend(
            (entry, bytes(raw.address), [topic_bytes(t) for t in raw.topics])
            for entry, raw in zip(entries, receipt.logs, strict=True)
        )
    return logs


def _resolve_number(rpc: ServedChain, ref: BlockRef, head: int) -> int:
    if ref.number is not None:
        return ref.number  # past the head: the range is simply cut at the head
    return rpc.header(ref).block_number


# -- test methods -----------------------------------------------------------------------------------


def _set_next_timestamp(rpc: ServedChain, timestamp: int) -> None:
    chain = rpc.chain
    if timestamp <= chain.latest_timestamp:
        raise InvalidParam(f"{timestamp} is not after the latest block's timestamp {chain.latest_timestamp}")
    if timestamp < chain.now:
        raise InvalidParam(f"{timestamp} is before the chain's clock {chain.now}; time never moves backwards")
    rpc.clock.pin(timestamp)


def _timestamp_param(rpc: ServedChain) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        timestamp = parse_quantity(value, limit=2**63 - 1)
        _set_next_timestamp(rpc, timestamp)
        return timestamp

    return parse


@_rpc("evm_mine", 1)
def _evm_mine(rpc: ServedChain, p: Params) -> str:
    p.take(0, "timestamp", _timestamp_param(rpc), default=None)
    rpc.chain.mine()
    return "0x0"


@_rpc("evm_increaseTime", 1)
def _increase_time(rpc: ServedChain, p: Params) -> int:
    seconds = p.take(0, "seconds", lambda v: parse_quantity(v, limit=2**40))
    return rpc.clock.increase(seconds)


@_rpc("evm_setNextBlockTimestamp", 1)
def _set_next_block_timestamp(rpc: ServedChain, p: Params) -> None:
    p.take(0, "timestamp", _timestamp_param(rpc))
    return None


@_rpc("x402sim_fund", 3)
def _fund(rpc: ServedChain, p: Params) -> bool:
    address = p.take(0, "address", parse_address)
    usdc = p.take(1, "usdcAtomic", parse_quantity, default=0)
    eth = p.take(2, "ethWei", parse_quantity, default=0)
    try:
        rpc.chain.fund(address, usdc=usdc, eth=eth)
    except ChainError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from None
    return True


@_rpc("x402sim_accounts", 0)
def _published_accounts(rpc: ServedChain, p: Params) -> list[dict]:
    return rpc.accounts


@_rpc("x402sim_info", 0)
def _info(rpc: ServedChain, p: Params) -> dict:
    chain = rpc.chain
    return {
        "chainId": chain.chain_id,
        "network": chain.network,
        "token": chain.usdc,
        "tokenName": chain.token_name,
        "tokenVersion": chain.token_version,
        "tokenSymbol": chain.token_symbol,
        "tokenDecimals": rpc.token_decimals,
        "multicall": chain.multicall,
        "automine": rpc.automine,
        "blockTime": rpc.block_time,
        "now": chain.now,
    }
