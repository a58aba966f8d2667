"""The JSON shapes of what the methods answer: blocks, transactions, receipts and logs.

Quantities are hex strings without leading zeros (``hex_qty``), byte strings are ``0x``-prefixed hex
(``hex_data``), addresses are EIP-55 checksummed. The shapes follow geth's, so web3.py, viem and the
x402 SDKs parse them unchanged.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth_utils import to_checksum_address

from .gas import effective_price


def hex_qty(number: int) -> str:
    return hex(number)


def hex_data(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def topic_bytes(value: int | bytes) -> bytes:
    return value.to_bytes(32, "big") if isinstance(value, int) else bytes(value)


def block_json(block, full: bool) -> dict:
    h = block.header
    txs: list[dict[str, Any]] | list[str]
    if full:
        txs = [tx_json(tx, block, i) for i, tx in enumerate(block.transactions)]
    else:
        txs = [hex_data(tx.hash) for tx in block.transactions]
    out = {
        "number": hex_qty(h.block_number),
        "hash": hex_data(h.hash),
        "parentHash": hex_data(h.parent_hash),
        "nonce": hex_data(h.nonce),
        "mixHash": hex_data(h.mix_hash),
        "sha3Uncles": hex_data(h.uncles_hash),
        "logsBloom": hex_data(h.bloom.to_bytes(256, "big")),
        "transactionsRoot": hex_data(h.transaction_root),
        "stateRoot": hex_data(h.state_root),
        "receiptsRoot": hex_data(h.receipt_root),
        "miner": to_checksum_address(h.coinbase),
        "difficulty": hex_qty(h.difficulty),
        "extraData": hex_data(h.extra_data),
        "size": hex_qty(len(rlp.encode(block))),
        "gasLimit": hex_qty(h.gas_limit),
        "gasUsed": hex_qty(h.gas_used),
        "timestamp": hex_qty(h.timestamp),
        "transactions": txs,
        "uncles": [hex_data(u.hash) for u in block.uncles],
        "baseFeePerGas": hex_qty(h.base_fee_per_gas),
    }
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals is not None:
        out["withdrawals"] = [
            {
                "index": hex_qty(w.index),
                "validatorIndex": hex_qty(w.validator_index),
                "address": to_checksum_address(w.address),
                "amount": hex_qty(w.amount),
            }
            for w in withdrawals
        ]
    optional = {
        "withdrawalsRoot": "withdrawals_root",
        "blobGasUsed": "blob_gas_used",
        "excessBlobGas": "excess_blob_gas",
        "parentBeaconBlockRoot": "parent_beacon_block_root",
        "requestsHash": "requests_hash",
    }
    for key, attr in optional.items():
        value = getattr(h, attr, None)
        if value is not None:
            out[key] = hex_qty(value) if isinstance(value, int) else hex_data(value)
    return out


def tx_json(tx, block=None, index: int | None = None) -> dict:
    """A transaction object; ``block`` None means it is still pending."""
    type_id = getattr(tx, "type_id", None)
    out: dict[str, Any] = {
        "hash": hex_data(tx.hash),
        "type": hex_qty(type_id or 0),
        "blockHash": hex_data(block.header.hash) if block is not None else None,
        "blockNumber": hex_qty(block.header.block_number) if block is not None else None,
        "transactionIndex": hex_qty(index) if block is not None and index is not None else None,
        "from": to_checksum_address(tx.sender),
        "to": to_checksum_address(tx.to) if tx.to else None,
        "nonce": hex_qty(tx.nonce),
        "gas": hex_qty(tx.gas),
        "value": hex_qty(tx.value),
        "input": hex_data(tx.data),
        "r": hex_qty(tx.r),
        "s": hex_qty(tx.s),
    }
    if type_id is None:  # legacy
        out["gasPrice"] = hex_qty(tx.gas_price)
        out["v"] = hex_qty(tx.v)
        if tx.v >= 35:
            out["chainId"] = hex_qty((tx.v - 35) // 2)
        return out
    out["chainId"] = hex_qty(tx.chain_id)
    out["v"] = out["yParity"] = hex_qty(tx.y_parity)
    out["accessList"] = [
        {"address": to_checksum_address(a), "storageKeys": [hex_data(topic_bytes(k)) for k in keys]}
        for a, keys in tx.access_list
    ]
    if type_id == 1:
        out["gasPrice"] = hex_qty(tx.gas_price)
        return out
    out["maxFeePerGas"] = hex_qty(tx.max_fee_per_gas)
    out["maxPriorityFeePerGas"] = hex_qty(tx.max_priority_fee_per_gas)
    price = effective_price(tx, block.header.base_fee_per_gas) if block is not None else tx.max_fee_per_gas
    out["gasPrice"] = hex_qty(price)
    if type_id == 3:
        out["maxFeePerBlobGas"] = hex_qty(tx.max_fee_per_blob_gas)
        out["blobVersionedHashes"] = [hex_data(v) for v in tx.blob_versioned_hashes]
    if type_id == 4:
        out["authorizationList"] = [
            {
                "chainId": hex_qty(a.chain_id),
                "address": to_checksum_address(a.address),
                "nonce": hex_qty(a.nonce),
                "yParity": hex_qty(a.y_parity),
                "r": hex_qty(a.r),
                "s": hex_qty(a.s),
            }
            for a in tx.authorization_list
        ]
    return out


def logs_json(block, index: int, receipt, first_log_index: int) -> list[dict]:
    tx = block.transactions[index]
    return [
        {
            "address": to_checksum_address(entry.address),
            "topics": [hex_data(topic_bytes(t)) for t in entry.topics],
            "data": hex_data(entry.data),
            "blockNumber": hex_qty(block.header.block_number),
            "blockHash": hex_data(block.header.hash),
            "blockTimestamp": hex_qty(block.header.timestamp),
            "transactionHash": hex_data(tx.hash),
            "transactionIndex": hex_qty(index),
            "logIndex": hex_qty(first_log_index + i),
            "removed": False,
        }
        for i, entry in enumerate(receipt.logs)
    ]


def receipt_json(block, index: int, receipts: list) -> dict:
    """The receipt of ``block.transactions[index]``; ``receipts`` are all the block's receipts."""
    receipt, tx = receipts[index], block.transactions[index]
    previous = receipts[index - 1].gas_used if index else 0
    first_log = sum(len(r.logs) for r in receipts[:index])
    created = None
    if not tx.to:
        created = to_checksum_address(generate_contract_address(tx.sender, tx.nonce))
    return {
        "type": hex_qty(getattr(tx, "type_id", None) or 0),
        "transactionHash": hex_data(tx.hash),
        "transactionIndex": hex_qty(index),
        "blockHash": hex_data(block.header.hash),
        "blockNumber": hex_qty(block.header.block_number),
        "from": to_checksum_address(tx.sender),
        "to": to_checksum_address(tx.to) if tx.to else None,
        "contractAddress": created,
        "status": hex_qty(1 if receipt.state_root == b"\x01" else 0),
        "gasUsed": hex_qty(receipt.gas_used - previous),
        "cumulativeGasUsed": hex_qty(receipt.gas_used),
        "effectiveGasPrice": hex_qty(effective_price(tx, block.header.base_fee_per_gas)),
        "logs": logs_json(block, index, receipt, first_log),
        "logsBloom": hex_data(receipt.bloom.to_bytes(256, "big")),
    }
