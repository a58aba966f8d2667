"""Ethereum JSON-RPC 2.0 over HTTP for a ``LocalChain``, so real wallets and SDKs can use it.

``chain_rpc_app(chain)`` is a Starlette app answering ``POST /`` with single requests and batches.
It speaks the subset of the Ethereum API that wallets, web3.py, viem and the x402 SDKs use:
``web3_clientVersion``, ``net_version``, ``eth_chainId``, ``eth_blockNumber``, ``eth_syncing``,
``eth_accounts``, ``eth_getBlockByNumber``, ``eth_getBlockByHash``, ``eth_getBalance``,
``eth_getCode``, ``eth_getTransactionCount``, ``eth_call``, ``eth_estimateGas``, ``eth_gasPrice``,
``eth_maxPriorityFeePerGas``, ``eth_feeHistory``, ``eth_sendRawTransaction``,
``eth_getTransactionByHash``, ``eth_getTransactionReceipt``, ``eth_getLogs``; plus the test
methods listed at the end. Rules:

* **One loop, no threads.** The endpoint is async and every handler runs on the event loop, so the
  chain (not thread-safe) is never touched concurrently. The block producer is an asyncio task on
  the same loop. Handlers are plain functions: the chain's work is synchronous and short.
* **Time.** Without ``clock`` the chain's clock moves only by ``evm_increaseTime``,
  ``evm_setNextBlockTimestamp``, ``evm_mine(timestamp)`` and the ``LocalChain`` API. With ``clock``
  (served mode passes ``time.time``), before each HTTP request the chain's clock is set to
  ``max(chain.now, int(clock()) + offset)``, ``offset`` being the total of ``evm_increaseTime``
  calls, so SDKs that sign with the wall clock see a chain that agrees. Time never moves backwards:
  ``evm_setNextBlockTimestamp`` refuses a time before ``now``, and pins the clock until the next
  block so that block gets exactly that timestamp.
* **Blocks.** ``automine=True`` (the default) mines one block right after each accepted
  ``eth_sendRawTransaction``. With ``block_time`` (seconds) automine is off and a task mines a block
  every ``block_time`` seconds when transactions are pending (no empty blocks). The task starts with
  the ASGI lifespan or, when the server runs with ``lifespan="off"`` (as ``Services`` does), on the
  first request. With ``automine=False`` and no ``block_time`` blocks come only from ``evm_mine``
  (and ``x402sim_fund``, which always mines one block holding whatever is pending).
* **Fees.** No one competes for block space, so a tip buys nothing: ``eth_maxPriorityFeePerGas``
  answers 0 and ``eth_gasPrice`` is the next block's base fee.
* **Reads.** ``eth_getBalance``, ``eth_getCode`` and ``eth_getTransactionCount`` read the state of
  any canonical block; ``"pending"`` is the latest state, except that the transaction count
  includes queued transactions. ``eth_getBlockByNumber("pending")`` is the latest block (the
  pending pool is not a block). ``eth_call`` and ``eth_estimateGas`` on the head (any tag) simulate
  as in the next block at ``now`` (``LocalChain.call``); on an older block ``B`` they run on ``B``'s
  state stamped like the canonical block ``B + 1``, so a mined transaction can be replayed on its
  parent to learn why it reverted.
* **Calls.** A revert answers error code 3, ``execution reverted[: <reason>]`` with the revert data
  in ``data`` (as geth does, so web3.py raises ``ContractLogicError`` and viem decodes the reason);
  any other failure answers -32000 with the EVM's message. Calls need ``to``; a nonzero ``value``
  is simulated only for plain transfers to accounts without code. ``eth_estimateGas`` answers
  intrinsic gas + 1.2 x the execution gas (at least 21000 and the EIP-7623 calldata floor).
* **Refusals.** JSON-RPC 2.0 errors: -32700 invalid JSON, -32600 invalid request (also an empty
  batch and batches over ``MAX_BATCH``), -32601 unknown method (named), -32602 invalid params (naming
  the param and why), -32000 refused by the chain (with ``ChainError``'s message, or
  ``header not found``), -32603 internal error (logged here, never sent as a traceback). Every
  JSON-RPC answer is HTTP 200; notifications alone get 204 No Content; a body over ``MAX_BODY``
  bytes gets HTTP 413 with a JSON-RPC error (it is read and dropped up to ``DRAIN_LIMIT`` bytes so
  the client sees the answer, not a reset). Params must be positional (an array).

Test methods: ``evm_mine([timestamp])``, ``evm_increaseTime(seconds)`` (answers the total offset in
seconds as a JSON number), ``evm_setNextBlockTimestamp(timestamp)``, ``x402sim_fund(address,
usdcAtomic?, ethWei?)`` (mints and sends ether in one mined block; answers true),
``x402sim_info()`` (chain id, token address, name, version, symbol, decimals, Multicall3 address)
and ``x402sim_accounts()`` (the funded test accounts the app was given, keys included: they are
test keys, and the service binds loopback only unless told otherwise). ``eth_accounts`` stays empty:
this node signs nothing (no ``eth_sendTransaction``); clients sign and use ``eth_sendRawTransaction``.
Our own ``x402sim_*`` answers use plain JSON numbers; Ethereum methods use hex quantities.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth.exceptions import HeaderNotFound, TransactionNotFound
from eth_bloom import BloomFilter
from eth_utils import ValidationError, is_checksum_address, to_canonical_address, to_checksum_address
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from x402sim.evm.chain import ZERO_ADDRESS, CallResult, ChainError, LocalChain
from x402sim.evm.token import revert_reason

__all__ = ["MAX_BATCH", "MAX_BODY", "PRIORITY_FEE", "chain_rpc_app"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of one HTTP request body
DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read and dropped before the 413
MAX_BATCH = 1000  # calls in one batch
MAX_FEE_HISTORY = 1024  # blocks in one eth_feeHistory
CALL_GAS_CAP = 50_000_000  # gas of an eth_call that names none (geth's default cap)
PRIORITY_FEE = 0  # wei; see "Fees" above
TX_GAS = 21_000
UINT256_MAX = 2**256 - 1

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
REVERTED = 3

BLOCK_TAGS = ("latest", "pending", "earliest", "safe", "finalized")


class RpcError(Exception):
    """A JSON-RPC error answer: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class _Invalid(ValueError):
    """One param is malformed; the text says why (the caller adds which param)."""


# -- parsing params ---------------------------------------------------------------------------------


def _quantity(value: Any, *, limit: int = UINT256_MAX) -> int:
    """A hex quantity ("0x1a"); a non-negative JSON integer is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) > 2:
        try:
            number = int(value[2:], 16)
        except ValueError:
            raise _Invalid(f"{value!r} is not a hex quantity") from None
    else:
        raise _Invalid(f"expected a hex quantity like '0x1a', got {value!r}")
    if not 0 <= number <= limit:
        raise _Invalid(f"{value!r} is out of range 0..{limit}")
    return number


def _data(value: Any) -> bytes:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise _Invalid(f"expected hex data starting with '0x', got {_short(value)}")
    digits = value[2:]
    if len(digits) % 2:
        raise _Invalid("hex data must have an even number of digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise _Invalid(f"{_short(value)} is not hex data") from None


def _fixed(value: Any, size: int, what: str) -> bytes:
    try:
        raw = _data(value)
    except _Invalid:
        raise _Invalid(f"expected a {what} ({size} bytes of hex), got {_short(value)}") from None
    if len(raw) != size:
        raise _Invalid(f"expected a {what} of {size} bytes, got {len(raw)}")
    return raw


def _address(value: Any) -> str:
    raw = _fixed(value, 20, "20-byte address")
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        raise _Invalid(f"{value} has an invalid EIP-55 checksum")
    return to_checksum_address(raw)


def _hash(value: Any) -> bytes:
    return _fixed(value, 32, "32-byte hash")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class _BlockRef:
    """A block argument: a tag, a number, or (EIP-1898) a hash."""

    tag: str | None = None
    number: int | None = None
    hash: bytes | None = None


def _block_ref(value: Any) -> _BlockRef:
    if isinstance(value, str) and value in BLOCK_TAGS:
        return _BlockRef(tag=value)
    if isinstance(value, dict):  # EIP-1898
        if "blockHash" in value and "blockNumber" in value:
            raise _Invalid("give blockHash or blockNumber, not both")
        if "blockHash" in value:
            if "requireCanonical" in value:
                _bool(value["requireCanonical"])  # every block we serve is canonical
            return _BlockRef(hash=_hash(value["blockHash"]))
        if "blockNumber" in value:
            return _block_ref(value["blockNumber"])
        raise _Invalid("a block object needs blockHash or blockNumber")
    try:
        return _BlockRef(number=_quantity(value, limit=2**63 - 1))
    except _Invalid:
        raise _Invalid(
            f"expected a block number or one of {', '.join(BLOCK_TAGS)}, got {_short(value)}"
        ) from None


@dataclass(frozen=True)
class _CallObject:
    sender: str
    to: str | None
    data: bytes
    gas: int | None
    value: int


def _call_object(value: Any) -> _CallObject:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a transaction object, got {_short(value)}")

    def field(name: str, parse: Callable[[Any], Any]) -> Any:
        if value.get(name) is None:
            return None
        try:
            return parse(value[name])
        except _Invalid as exc:
            raise _Invalid(f"{name}: {exc}") from None

    data, input_ = field("data", _data), field("input", _data)
    if data is not None and input_ is not None and data != input_:
        raise _Invalid('"data" and "input" are both set and differ')
    for name in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce", "type", "chainId"):
        field(name, _quantity)  # accepted and checked, not needed to simulate
    return _CallObject(
        sender=field("from", _address) or ZERO_ADDRESS,
        to=field("to", _address),
        data=input_ if input_ is not None else (data or b""),
        gas=field("gas", lambda v: _quantity(v, limit=2**63 - 1)),
        value=field("value", _quantity) or 0,
    )


_REQUIRED = object()


class _Params:
    """Positional params of one call; ``take`` parses one and names it in any error."""

    def __init__(self, method: str, values: list) -> None:
        self.method = method
        self.values = values

    def take(self, index: int, name: str, parse: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        present = index < len(self.values) and self.values[index] is not None
        if not present and default is not _REQUIRED:
            return default
        if index >= len(self.values):
            raise RpcError(
                INVALID_PARAMS, f"invalid params for {self.method}: missing {name} (params[{index}])"
            )
        try:
            return parse(self.values[index])
        except _Invalid as exc:
            raise RpcError(
                INVALID_PARAMS, f"invalid params for {self.method}: {name} (params[{index}]): {exc}"
            ) from None


# -- formatting -------------------------------------------------------------------------------------


def _qty(number: int) -> str:
    return hex(number)


def _hex(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def _topic(value: int | bytes) -> bytes:
    return value.to_bytes(32, "big") if isinstance(value, int) else bytes(value)


def _effective_price(tx, base_fee: int) -> int:
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def _intrinsic_gas(data: bytes) -> tuple[int, int]:
    """Intrinsic gas of a call with ``data``, and the EIP-7623 (Prague) calldata floor."""
    zeros = data.count(0)
    nonzeros = len(data) - zeros
    return TX_GAS + 4 * zeros + 16 * nonzeros, TX_GAS + 10 * (zeros + 4 * nonzeros)


def _revert_error(result: CallResult) -> RpcError:
    reason = revert_reason(result.output)
    message = f"execution reverted: {reason}" if reason else "execution reverted"
    return RpcError(REVERTED, message, _hex(result.output))


# -- the handlers -----------------------------------------------------------------------------------

_METHODS: dict[str, tuple[Callable[[_ChainRpc, _Params], Any], int]] = {}


def _rpc(name: str, arity: int) -> Callable:
    """Register a handler for ``name`` taking at most ``arity`` positional params."""

    def register(fn: Callable) -> Callable:
        _METHODS[name] = (fn, arity)
        return fn

    return register


class _ChainRpc:
    """The state of one served chain: clock offset, pinned timestamp and the block producer."""

    def __init__(
        self,
        chain: LocalChain,
        *,
        automine: bool,
        block_time: float | None,
        clock: Callable[[], float] | None,
    ) -> None:
        self.chain = chain
        self.automine = automine and block_time is None
        self.block_time = block_time
        self.clock = clock
        self.offset = 0  # total of evm_increaseTime
        self.pinned: int | None = None  # evm_setNextBlockTimestamp until the next block
        self.accounts: list[dict] = []  # published by x402sim_accounts
        self._producer: asyncio.Task | None = None
        try:
            version = metadata.version("x402sim")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self.client_version = f"x402sim/v{version}/py-evm"

    # -- time and blocks ----------------------------------------------------------------------------

    def sync_time(self) -> None:
        if self.clock is None or self.pinned is not None:
            return
        target = int(self.clock()) + self.offset
        if target > self.chain.now:
            self.chain.set_time(target)

    def mine(self):
        block = self.chain.mine()
        self.pinned = None
        return block

    def start_producer(self) -> None:
        if self.block_time is not None and (self._producer is None or self._producer.done()):
            self._producer = asyncio.get_running_loop().create_task(self._produce(self.block_time))

    async def stop_producer(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None

    async def _produce(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self.sync_time()
                if self.chain.pending_count:
                    self.mine()
            except Exception:
                log.exception("block producer: mining failed")

    # -- HTTP ---------------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        try:
            self.start_producer()
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > DRAIN_LIMIT:
                return _too_large()  # not worth reading; the connection closes after the answer
            body, size = bytearray(), 0
            async for chunk in request.stream():
                size += len(chunk)
                if size <= MAX_BODY:
                    body += chunk
                elif size > DRAIN_LIMIT:
                    break
            if size > MAX_BODY:
                return _too_large()
            return self.answer_body(bytes(body))
        except ClientDisconnect:
            return Response(status_code=204)
        except Exception:  # never a 500: the caller gets a JSON-RPC internal error
            log.exception("chain RPC: unexpected failure")
            return _json(_error_answer(None, RpcError(INTERNAL_ERROR, "internal error")))

    def answer_body(self, body: bytes) -> Response:
        try:
            message = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            return _json(
                _error_answer(None, RpcError(PARSE_ERROR, "parse error: the body is not valid JSON"))
            )
        try:
            self.sync_time()
        except Exception:
            log.exception("chain RPC: clock sync failed")
        if isinstance(message, list):
            if not message:
                return _json(_error_answer(None, RpcError(INVALID_REQUEST, "invalid request: empty batch")))
            if len(message) > MAX_BATCH:
                why = f"invalid request: a batch holds at most {MAX_BATCH} calls, got {len(message)}"
                return _json(_error_answer(None, RpcError(INVALID_REQUEST, why)))
            answers = [a for call in message if (a := self.answer(call)) is not None]
            return _json(answers) if answers else Response(status_code=204)
        answer = self.answer(message)
        return _json(answer) if answer is not None else Response(status_code=204)

    def answer(self, call: Any) -> dict | None:
        """The answer to one call, or None for a notification (a call without ``id``)."""
        if not isinstance(call, dict):
            return _error_answer(None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON object"))
        rid = call.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int | float)):
            why = "invalid request: id must be a string, a number or null"
            return _error_answer(None, RpcError(INVALID_REQUEST, why))
        if call.get("jsonrpc") != "2.0":
            return _error_answer(rid, RpcError(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"'))
        method = call.get("method")
        if not isinstance(method, str):
            return _error_answer(rid, RpcError(INVALID_REQUEST, "invalid request: method must be a string"))
        params = call.get("params", [])
        if params is None:
            params = []
        try:
            answer = {"jsonrpc": "2.0", "id": rid, "result": self.dispatch(method, params)}
        except RpcError as exc:
            answer = _error_answer(rid, exc)
        except Exception:
            log.exception("chain RPC: %s failed", method)
            answer = _error_answer(rid, RpcError(INTERNAL_ERROR, f"internal error in {method}"))
        return answer if "id" in call else None  # a notification gets no answer, not even an error

    def dispatch(self, method: str, params: Any) -> Any:
        entry = _METHODS.get(method)
        if entry is None:
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        if isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, f"invalid params for {method}: params must be an array")
        if not isinstance(params, list):
            raise RpcError(INVALID_REQUEST, "invalid request: params must be an array")
        handler, arity = entry
        if len(params) > arity:
            raise RpcError(
                INVALID_PARAMS,
                f"invalid params for {method}: takes at most {arity} params, got {len(params)}",
            )
        return handler(self, _Params(method, params))

    # -- lookups ------------------------------------------------------------------------------------

    def header(self, ref: _BlockRef):
        """The canonical header ``ref`` names; raises -32000 ``header not found``."""
        evm = self.chain.evm
        head = evm.get_canonical_head()
        if ref.hash is not None:
            block = self.block_by_hash(ref.hash)
            if block is None:
                raise RpcError(SERVER_ERROR, f"header not found: no canonical block {_hex(ref.hash)}")
            return block.header
        if ref.tag == "earliest":
            return evm.get_canonical_block_header_by_number(0)
        if ref.tag is not None:
            return head
        if ref.number > head.block_number:
            why = f"header not found: block {ref.number} is beyond the latest block {head.block_number}"
            raise RpcError(SERVER_ERROR, why)
        return evm.get_canonical_block_header_by_number(ref.number)

    def block_by_hash(self, block_hash: bytes):
        evm = self.chain.evm
        try:
            header = evm.get_block_header_by_hash(block_hash)
            if evm.get_canonical_block_hash(header.block_number) != block_hash:
                return None
        except HeaderNotFound:
            return None
        return evm.get_canonical_block_by_number(header.block_number)

    def state_at(self, ref: _BlockRef):
        return self.chain.evm.get_vm(self.header(ref)).state

    def find_mined(self, tx_hash: bytes):
        """``(block, index)`` of a transaction in the canonical chain, or None."""
        evm = self.chain.evm
        try:
            number, index = evm.chaindb.get_transaction_index(tx_hash)
            block = evm.get_canonical_block_by_number(number)
        except (TransactionNotFound, HeaderNotFound):
            return None
        if index >= len(block.transactions) or block.transactions[index].hash != tx_hash:
            return None  # an index left behind by a block that LocalChain.revert dropped
        return block, index

    def receipts(self, block) -> list:
        return list(block.get_receipts(self.chain.evm.chaindb))

    # -- JSON shapes --------------------------------------------------------------------------------

    def block_json(self, block, full: bool) -> dict:
        h = block.header
        if full:
            txs = [self.tx_json(tx, block, i) for i, tx in enumerate(block.transactions)]
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

    def tx_json(self, tx, block=None, index: int | None = None) -> dict:
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
        price = (
            _effective_price(tx, block.header.base_fee_per_gas) if block is not None else tx.max_fee_per_gas
        )
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

    def logs_json(self, block, index: int, receipt, first_log_index: int) -> list[dict]:
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

    def receipt_json(self, block, index: int) -> dict:
        receipts = self.receipts(block)
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
            "logs": self.logs_json(block, index, receipt, first_log),
            "logsBloom": _hex(receipt.bloom.to_bytes(256, "big")),
        }

    # -- simulation ---------------------------------------------------------------------------------

    def simulate(self, call: _CallObject, gas: int, ref: _BlockRef) -> CallResult:
        """Run ``call`` on the state after block ``ref``, as in the block that follows it.

        On the head this is ``LocalChain.call`` (the next block, stamped ``now``). On an older
        block ``B`` the call runs on ``B``'s state stamped like the canonical block ``B + 1``, so a
        mined transaction replayed on its parent block sees the time it saw (not the other
        transactions before it in its block). A plain value transfer needs no EVM.
        """
        chain = self.chain
        parent = self.header(ref)
        if call.to is None:
            why = "invalid params: to is required (contract creation is not simulated)"
            raise RpcError(INVALID_PARAMS, why)
        state = chain.evm.get_vm(parent).state
        if call.value:
            if state.get_code(to_canonical_address(call.to)):
                why = "invalid params: nonzero value is simulated only for transfers to accounts without code"
                raise RpcError(INVALID_PARAMS, why)
            balance = state.get_balance(to_canonical_address(call.sender))
            if balance < call.value:
                why = f"insufficient funds for transfer: {call.sender} has {balance} wei, needs {call.value}"
                raise RpcError(SERVER_ERROR, why)
        needed = max(_intrinsic_gas(call.data))
        if gas < needed:
            raise RpcError(SERVER_ERROR, f"intrinsic gas too low: have {gas}, want {needed}")
        try:
            return chain.call(
                call.to, call.data, sender=call.sender, gas=gas, after_block=parent.block_number
            )
        except ValidationError as exc:  # py-evm refusing the call itself, not the code it runs
            raise RpcError(SERVER_ERROR, f"invalid call: {exc}") from None


def _too_large() -> Response:
    error = RpcError(INVALID_REQUEST, f"request body exceeds {MAX_BODY} bytes")
    return _json(_error_answer(None, error), status=413)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _error_answer(rid: Any, error: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": error.to_json()}


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json")


# -- identity and fees ------------------------------------------------------------------------------


@_rpc("web3_clientVersion", 0)
def _client_version(rpc: _ChainRpc, p: _Params) -> str:
    return rpc.client_version


@_rpc("eth_chainId", 0)
def _chain_id(rpc: _ChainRpc, p: _Params) -> str:
    return _qty(rpc.chain.chain_id)


@_rpc("net_version", 0)
def _net_version(rpc: _ChainRpc, p: _Params) -> str:
    return str(rpc.chain.chain_id)


@_rpc("eth_accounts", 0)
def _accounts(rpc: _ChainRpc, p: _Params) -> list:
    return []


@_rpc("eth_syncing", 0)
def _syncing(rpc: _ChainRpc, p: _Params) -> bool:
    return False


@_rpc("eth_gasPrice", 0)
def _gas_price(rpc: _ChainRpc, p: _Params) -> str:
    return _qty(rpc.chain.base_fee + PRIORITY_FEE)


@_rpc("eth_maxPriorityFeePerGas", 0)
def _max_priority_fee(rpc: _ChainRpc, p: _Params) -> str:
    return _qty(PRIORITY_FEE)


def _percentiles(value: Any) -> list[float]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of percentiles, got {_short(value)}")
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 <= item <= 100:
            raise _Invalid(f"each percentile must be a number in 0..100, got {_short(item)}")
        if out and item < out[-1]:
            raise _Invalid("percentiles must be in increasing order")
        out.append(float(item))
    return out


@_rpc("eth_feeHistory", 3)
def _fee_history(rpc: _ChainRpc, p: _Params) -> dict:
    count = p.take(0, "blockCount", lambda v: _quantity(v, limit=2**63 - 1))
    newest = rpc.header(p.take(1, "newestBlock", _block_ref))
    percentiles = p.take(2, "rewardPercentiles", _percentiles, default=None)
    count = min(count, MAX_FEE_HISTORY, newest.block_number + 1)
    if count == 0:
        return {"oldestBlock": _qty(0), "baseFeePerGas": [], "gasUsedRatio": []}
    evm = rpc.chain.evm
    oldest = newest.block_number - count + 1
    base_fees, ratios, rewards = [], [], []
    for number in range(oldest, newest.block_number + 1):
        block = evm.get_canonical_block_by_number(number)
        h = block.header
        base_fees.append(_qty(h.base_fee_per_gas))
        ratios.append(h.gas_used / h.gas_limit if h.gas_limit else 0.0)
        if percentiles is not None:
            rewards.append([_qty(r) for r in _block_rewards(rpc, block, percentiles)])
    following = evm.create_header_from_parent(newest, timestamp=newest.timestamp + 1)
    base_fees.append(_qty(following.base_fee_per_gas))
    out = {"oldestBlock": _qty(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios}
    if percentiles is not None:
        out["reward"] = rewards
    return out


def _block_rewards(rpc: _ChainRpc, block, percentiles: list[float]) -> list[int]:
    """Priority fee paid per unit of gas at each percentile of the block's gas (0 if empty)."""
    if not block.transactions:
        return [0] * len(percentiles)
    base_fee = block.header.base_fee_per_gas
    receipts = rpc.receipts(block)
    tips, previous = [], 0
    for tx, receipt in zip(block.transactions, receipts, strict=True):
        tips.append((_effective_price(tx, base_fee) - base_fee, receipt.gas_used - previous))
        previous = receipt.gas_used
    tips.sort()
    out, i, reached = [], 0, tips[0][1]
    for pct in percentiles:
        threshold = block.header.gas_used * pct / 100
        while reached < threshold and i < len(tips) - 1:
            i += 1
            reached += tips[i][1]
        out.append(tips[i][0])
    return out


# -- blocks and state -------------------------------------------------------------------------------


@_rpc("eth_blockNumber", 0)
def _block_number(rpc: _ChainRpc, p: _Params) -> str:
    return _qty(rpc.chain.block_number)


@_rpc("eth_getBlockByNumber", 2)
def _block_by_number(rpc: _ChainRpc, p: _Params) -> dict | None:
    ref = p.take(0, "block", _block_ref)
    full = p.take(1, "fullTransactions", _bool, default=False)
    if ref.number is not None and ref.number > rpc.chain.block_number:
        return None
    header = rpc.header(ref)
    return rpc.block_json(rpc.chain.evm.get_canonical_block_by_number(header.block_number), full)


@_rpc("eth_getBlockByHash", 2)
def _block_by_hash(rpc: _ChainRpc, p: _Params) -> dict | None:
    block_hash = p.take(0, "blockHash", _hash)
    full = p.take(1, "fullTransactions", _bool, default=False)
    block = rpc.block_by_hash(block_hash)
    return rpc.block_json(block, full) if block is not None else None


@_rpc("eth_getBalance", 2)
def _balance(rpc: _ChainRpc, p: _Params) -> str:
    address = p.take(0, "address", _address)
    ref = p.take(1, "block", _block_ref, default=_BlockRef(tag="latest"))
    return _qty(rpc.state_at(ref).get_balance(bytes.fromhex(address[2:])))


@_rpc("eth_getCode", 2)
def _code(rpc: _ChainRpc, p: _Params) -> str:
    address = p.take(0, "address", _address)
    ref = p.take(1, "block", _block_ref, default=_BlockRef(tag="latest"))
    return _hex(rpc.state_at(ref).get_code(bytes.fromhex(address[2:])))


@_rpc("eth_getTransactionCount", 2)
def _transaction_count(rpc: _ChainRpc, p: _Params) -> str:
    address = p.take(0, "address", _address)
    ref = p.take(1, "block", _block_ref, default=_BlockRef(tag="latest"))
    if ref.tag == "pending":
        return _qty(rpc.chain.pending_nonce(address))
    return _qty(rpc.state_at(ref).get_nonce(bytes.fromhex(address[2:])))


# -- calls ------------------------------------------------------------------------------------------


def _no_overrides(value: Any) -> None:
    raise _Invalid("state overrides are not supported")


@_rpc("eth_call", 3)
def _call(rpc: _ChainRpc, p: _Params) -> str:
    call = p.take(0, "transaction", _call_object)
    ref = p.take(1, "block", _block_ref, default=_BlockRef(tag="latest"))
    p.take(2, "stateOverrides", _no_overrides, default=None)
    gas = min(call.gas or CALL_GAS_CAP, rpc.chain.block_gas_limit)
    result = rpc.simulate(call, gas, ref)
    if result.success:
        return _hex(result.output)
    if result.reverted:
        raise _revert_error(result)
    raise RpcError(SERVER_ERROR, result.revert_reason or "execution failed")


@_rpc("eth_estimateGas", 3)
def _estimate_gas(rpc: _ChainRpc, p: _Params) -> str:
    call = p.take(0, "transaction", _call_object)
    ref = p.take(1, "block", _block_ref, default=_BlockRef(tag="latest"))
    p.take(2, "stateOverrides", _no_overrides, default=None)
    cap = min(call.gas or rpc.chain.block_gas_limit, rpc.chain.block_gas_limit)
    result = rpc.simulate(call, cap, ref)
    if not result.success:
        if result.reverted:
            raise _revert_error(result)
        text = result.revert_reason or "execution failed"
        if "out of gas" in text.lower():
            text = f"gas required exceeds allowance ({cap})"
        raise RpcError(SERVER_ERROR, text)
    intrinsic, floor = _intrinsic_gas(call.data)
    estimate = max(intrinsic + math.ceil(result.gas_used * 1.2), floor, TX_GAS)
    return _qty(min(estimate, cap) if call.gas else estimate)


# -- transactions, receipts, logs -------------------------------------------------------------------


@_rpc("eth_sendRawTransaction", 1)
def _send_raw_transaction(rpc: _ChainRpc, p: _Params) -> str:
    raw = p.take(0, "signedTransaction", _data)
    try:
        tx_hash = rpc.chain.send_raw_transaction(raw)
    except ChainError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from None
    if rpc.automine:
        rpc.mine()
    return _hex(tx_hash)


@_rpc("eth_getTransactionByHash", 1)
def _transaction_by_hash(rpc: _ChainRpc, p: _Params) -> dict | None:
    tx_hash = p.take(0, "transactionHash", _hash)
    found = rpc.find_mined(tx_hash)
    if found is not None:
        block, index = found
        return rpc.tx_json(block.transactions[index], block, index)
    pending = rpc.chain.pending_transaction(tx_hash)
    return rpc.tx_json(pending) if pending is not None else None


@_rpc("eth_getTransactionReceipt", 1)
def _transaction_receipt(rpc: _ChainRpc, p: _Params) -> dict | None:
    found = rpc.find_mined(p.take(0, "transactionHash", _hash))
    return rpc.receipt_json(*found) if found is not None else None


@dataclass(frozen=True)
class _Filter:
    from_block: _BlockRef
    to_block: _BlockRef
    block_hash: bytes | None
    addresses: frozenset[bytes] | None  # None: any address
    topics: tuple[frozenset[bytes] | None, ...]  # per position; None: any topic


def _filter(value: Any) -> _Filter:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a filter object, got {_short(value)}")

    def field(name: str, parse: Callable[[Any], Any], default: Any) -> Any:
        if value.get(name) is None:
            return default
        try:
            return parse(value[name])
        except _Invalid as exc:
            raise _Invalid(f"{name}: {exc}") from None

    def addresses(v: Any) -> frozenset[bytes]:
        items = v if isinstance(v, list) else [v]
        return frozenset(bytes.fromhex(_address(a)[2:]) for a in items)

    def topics(v: Any) -> tuple:
        if not isinstance(v, list) or len(v) > 4:
            raise _Invalid("expected a list of at most 4 topic positions")
        out = []
        for position in v:
            if position is None:
                out.append(None)
            elif isinstance(position, list):
                # an empty list or one holding null matches any topic, as in geth
                wanted = [_hash(t) for t in position if t is not None]
                out.append(frozenset(wanted) if wanted and None not in position else None)
            else:
                out.append(frozenset([_hash(position)]))
        return tuple(out)

    latest = _BlockRef(tag="latest")
    block_hash = field("blockHash", _hash, None)
    if block_hash is not None and (value.get("fromBlock") is not None or value.get("toBlock") is not None):
        raise _Invalid("blockHash cannot be combined with fromBlock or toBlock")
    return _Filter(
        from_block=field("fromBlock", _block_ref, latest),
        to_block=field("toBlock", _block_ref, latest),
        block_hash=block_hash,
        addresses=field("address", addresses, None),
        topics=field("topics", topics, ()),
    )


def _matches(f: _Filter, address: bytes, topics: list[bytes]) -> bool:
    if f.addresses is not None and address not in f.addresses:
        return False
    if len(topics) < len(f.topics):
        return False
    return all(wanted is None or topic in wanted for wanted, topic in zip(f.topics, topics, strict=False))


def _may_match(f: _Filter, bloom: BloomFilter) -> bool:
    if f.addresses is not None and not any(a in bloom for a in f.addresses):
        return False
    return all(wanted is None or any(t in bloom for t in wanted) for wanted in f.topics)


@_rpc("eth_getLogs", 1)
def _get_logs(rpc: _ChainRpc, p: _Params) -> list[dict]:
    f = p.take(0, "filter", _filter)
    evm = rpc.chain.evm
    if f.block_hash is not None:
        block = rpc.block_by_hash(f.block_hash)
        if block is None:
            raise RpcError(SERVER_ERROR, f"header not found: no canonical block {_hex(f.block_hash)}")
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
    found: list[dict] = []
    for number in numbers:
        header = evm.get_canonical_block_header_by_number(number)
        if not _may_match(f, BloomFilter(header.bloom)):
            continue
        block = evm.get_canonical_block_by_number(number)
        log_index = 0
        for index, receipt in enumerate(rpc.receipts(block)):
            entries = rpc.logs_json(block, index, receipt, log_index)
            log_index += len(receipt.logs)
            found.extend(
                entry
                for entry, raw in zip(entries, receipt.logs, strict=True)
                if _matches(f, bytes(raw.address), [_topic(t) for t in raw.topics])
            )
    return found


def _resolve_number(rpc: _ChainRpc, ref: _BlockRef, head: int) -> int:
    if ref.number is not None:
        return ref.number  # past the head: the range is simply cut at the head
    return rpc.header(ref).block_number


# -- test methods -----------------------------------------------------------------------------------


def _set_next_timestamp(rpc: _ChainRpc, timestamp: int) -> None:
    chain = rpc.chain
    if timestamp <= chain.latest_timestamp:
        raise _Invalid(f"{timestamp} is not after the latest block's timestamp {chain.latest_timestamp}")
    if timestamp < chain.now:
        raise _Invalid(f"{timestamp} is before the chain's clock {chain.now}; time never moves backwards")
    chain.set_time(timestamp)
    rpc.pinned = timestamp
    if rpc.clock is not None:
        rpc.offset = max(rpc.offset, timestamp - int(rpc.clock()))


def _timestamp_param(rpc: _ChainRpc) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        timestamp = _quantity(value, limit=2**63 - 1)
        _set_next_timestamp(rpc, timestamp)
        return timestamp

    return parse


@_rpc("evm_mine", 1)
def _evm_mine(rpc: _ChainRpc, p: _Params) -> str:
    p.take(0, "timestamp", _timestamp_param(rpc), default=None)
    rpc.mine()
    return "0x0"


@_rpc("evm_increaseTime", 1)
def _increase_time(rpc: _ChainRpc, p: _Params) -> int:
    seconds = p.take(0, "seconds", lambda v: _quantity(v, limit=2**40))
    rpc.chain.advance(seconds)
    rpc.offset += seconds
    return rpc.offset


@_rpc("evm_setNextBlockTimestamp", 1)
def _set_next_block_timestamp(rpc: _ChainRpc, p: _Params) -> None:
    p.take(0, "timestamp", _timestamp_param(rpc))
    return None


@_rpc("x402sim_fund", 3)
def _fund(rpc: _ChainRpc, p: _Params) -> bool:
    address = p.take(0, "address", _address)
    usdc = p.take(1, "usdcAtomic", _quantity, default=0)
    eth = p.take(2, "ethWei", _quantity, default=0)
    try:
        rpc.chain.fund(address, usdc=usdc, eth=eth)
    except ChainError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from None
    rpc.pinned = None  # fund mined a block
    return True


@_rpc("x402sim_accounts", 0)
def _published_accounts(rpc: _ChainRpc, p: _Params) -> list[dict]:
    return rpc.accounts


@_rpc("x402sim_info", 0)
def _info(rpc: _ChainRpc, p: _Params) -> dict:
    chain = rpc.chain
    return {
        "chainId": chain.chain_id,
        "network": chain.network,
        "token": chain.usdc,
        "tokenName": chain.token_name,
        "tokenVersion": chain.token_version,
        "tokenSymbol": chain.token_symbol,
        "tokenDecimals": int(chain.read(chain.usdc, "decimals()", returns="uint8")),
        "multicall": chain.multicall,
        "automine": rpc.automine,
        "blockTime": rpc.block_time,
    }


# -- the app ----------------------------------------------------------------------------------------


def chain_rpc_app(
    chain: LocalChain,
    *,
    automine: bool = True,
    block_time: float | None = None,
    clock: Callable[[], float] | None = None,
    accounts: Sequence[Mapping[str, Any]] = (),
) -> Starlette:
    """Serve ``chain`` as Ethereum JSON-RPC at ``POST /`` (see the module docstring for the rules).

    ``accounts`` are the funded test accounts to publish through ``x402sim_accounts`` (each a JSON
    object, e.g. ``address``, ``private_key``, ``usdc``); they are test keys, never real ones.
    """
    if block_time is not None and not block_time > 0:
        raise ValueError(f"block_time must be a positive number of seconds, got {block_time!r}")
    rpc = _ChainRpc(chain, automine=automine, block_time=block_time, clock=clock)
    rpc.accounts = [dict(a) for a in accounts]
    json.dumps(rpc.accounts)  # fail here, not in a handler, if they cannot be sent

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        rpc.start_producer()
        try:
            yield
        finally:
            await rpc.stop_producer()

    app = Starlette(routes=[Route("/", rpc.endpoint, methods=["POST"])], lifespan=lifespan)
    app.state.rpc = rpc
    return app
