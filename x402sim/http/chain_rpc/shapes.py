"""The JSON shapes of what the methods answer: blocks, transactions, receipts and logs.

Quantities are hex strings without leading zeros (``_qty``), byte strings are ``0x``-prefixed hex
(``_hex``), addresses are EIP-55 checksummed. The shapes follow geth's, so web3.py, viem and the
x402 SDKs parse them unchanged.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth_utils import to_checksum_address

from .gas import _effective_price


def _qty(number: int) -> str:
    return hex(number)


def _hex(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def _topic(value: int | bytes) -> bytes:
    return value.to_bytes(32, "big") if isinstance(value, int) else bytes(value)


def block_json(block, full: bool) -> dict:
    h = block.header
    if full:
        txs = [tx_json(tx, block, i) for i, tx in enumerate(block.transactions)]
    else:
        txs = [_hex(tx.hash) for tx in block.transactions]
    out = {
        "number": _qty(h.block_number),
        "hash": _hex(h.hash),
        "parentHash": _hex(h.parent_hash),
        "nonce": _hex(h.nonce),
        "mixHash": _hex(h.mix_hash),
        "sha3Uncles": _hex(h.uncles_hash),
        "logsBloom": _hex(h.bloom.to_bytes(256, "big")),
        "transactionsRoot": _hex(h.transaction_root),
        "stateRoot": _hex(h.state_root),
        "receiptsRoot": _hex(h.receipt_root),
        "miner": to_checksum_address(h.coinbase),
        "difficulty": _qty(h.difficulty),
        "extraData": _hex(h.extra_data),
        "size": _qty(len(rlp.encode(block))),
        "gasLimit": _qty(h.gas_limit),
        "gasUsed": _qty(h.gas_used),
        "timestamp": _qty(h.timestamp),
        "transactions": txs,
        "uncles": [_hex(u.hash) for u in block.uncles],
        "baseFeePerGas": _qty(h.base_fee_per_gas),
    }
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals is not None:
        out["withdrawals"] = [
            {
                "index": _qty(w.index),
                "validatorIndex": _qty(w.validator_index),
                "address": to_checksum_address(w.address),
                "amount": _qty(w.amount),
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
            out[key] = _qty(value) if isinstance(value, int) else _hex(value)
    return out


def tx_json(tx, block=None, index: int | None = None) -> dict:
    """A transaction object; ``block`` None means it is still pending."""
    type_id = getattr(tx, "type_id", None)
    out: dict[str, Any] = {
        "hash": _hex(tx.hash),
        "type": _qty(type_id or 0),
        "blockHash": _hex(block.header.hash) if block is not None else None,
        "blockNumber": _qty(block.header.block_number) if block is not None else None,
        "transactionIndex": _qty(index) if block is not None else None,
        "from": to_checksum_address(tx.sender),
        "to": to_checksum_address(tx.to) if tx.to else None,
        "nonce": _qty(tx.nonce),
        "gas": _qty(tx.gas),
        "value": _qty(tx.value),
        "input": _hex(tx.data),
        "r": _qty(tx.r),
        "s": _qty(tx.s),
    }
    if type_id is None:  # legacy
        out["gasPrice"] = _qty(tx.gas_price)
        out["v"] = _qty(tx.v)
        if tx.v >= 35:
            out["chainId"] = _qty((tx.v - 35) // 2)
        return out
    out["chainId"] = _qty(tx.chain_id)
    out["v"] = out["yParity"] = _qty(tx.y_parity)
    out["accessList"] = [
        {"address": to_checksum_address(a), "storageKeys": [_hex(_topic(k)) for k in keys]}
        for a, keys in tx.access_list
    ]
    if type_id == 1:
        out["gasPrice"] = _qty(tx.gas_price)
        return out
    out["maxFeePerGas"] = _qty(tx.max_fee_per_gas)
    out["maxPriorityFeePerGas"] = _qty(tx.max_priority_fee_per_gas)
    price = _effective_price(tx, block.header.base_fee_per_gas) if block is not None else tx.max_fee_per_gas
    out["gasPrice"] = _qty(price)
    if type_id == 3:
        out["maxFeePerBlobGas"] = _qty(tx.max_fee_per_blob_gas)
        out["blobVersionedHashes"] = [_hex(v) for v in tx.blob_versioned_hashes]
    if type_id == 4:
        out["authorizationList"] = [
            {
                "chainId": _qty(a.chain_id),
                "address": to_checksum_address(a.address),
                "nonce": _qty(a.nonce),
                "yParity": _qty(a.y_parity),
                "r": _qty(a.r),
                "s": _qty(a.s),
            }
            for a in tx.authorization_list
        ]
    return out


def logs_json(block, index: int, receipt, first_log_index: int) -> list[dict]:
    tx = block.transactions[index]
    return [
        {
            "address": to_checksum_address(entry.address),
            "topics": [_hex(_topic(t)) for t in entry.topics],
            "data": _hex(entry.data),
            "blockNumber": _qty(block.header.block_number),
            "blockHash": _hex(block.header.hash),
            "blockTimestamp": _qty(block.header.timestamp),
            "transactionHash": _hex(tx.hash),
            "transactionIndex": _qty(index),
            "logIndex": _qty(first_log_index + i),
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
        "type": _qty(getattr(tx, "type_id", None) or 0),
        "transactionHash": _hex(tx.hash),
        "transactionIndex": _qty(index),
        "blockHash": _hex(block.header.hash),
        "blockNumber": _qty(block.header.block_number),
        "from": to_checksum_address(tx.sender),
        "to": to_checksum_address(tx.to) if tx.to else None,
        "contractAddress": created,
        "status": _qty(1 if receipt.state_root == b"\x01" else 0),
        "gasUsed": _qty(receipt.gas_used - previous),
        "cumulativeGasUsed": _qty(receipt.gas_used),
        "effectiveGasPrice": _qty(_effective_price(tx, block.header.base_fee_per_gas)),
        "logs": logs_json(block, index, receipt, first_log),
        "logsBloom": _hex(receipt.bloom.to_bytes(256, "big")),
    }
