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
  (served mode passes ``time.time``), before each call the chain's clock is set to
  ``max(chain.now, int(clock()) + offset)``, ``offset`` being the total of ``evm_increaseTime``
  calls, so SDKs that sign with the wall clock see a chain that agrees (``ChainClock``, shared with
  the facilitator of the same chain, which judges time by it; ``x402sim_info`` answers ``now``).
  Time never moves backwards: ``evm_setNextBlockTimestamp`` refuses a time before ``now``, and pins
  the clock until the next block so that block gets exactly that timestamp.
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
  the client sees the answer, not a reset). Params must be positional (an array). A transaction
  whose signature recovers to no address is refused with -32000 ``invalid sender``. Bodies are
  parsed by the protocol's strict parser: nesting deeper than 100, numbers over 4300 digits, NaN and
  lone surrogates are parse errors (-32700) naming the problem.
* **Limits, so that no request stalls the services sharing the loop.** A batch holds at most
  ``MAX_BATCH`` (1,000) calls and the loop serves other requests between its calls; a response
  holds at most ``MAX_RESPONSE_BYTES`` (10 MiB) of answers, later calls of the batch answering
  -32003 ``response too large``; ``eth_getLogs`` scans at most ``MAX_LOG_RANGE`` (1,000) blocks
  and returns at most ``MAX_LOGS`` (10,000) logs, else -32005 saying which limit; ``eth_feeHistory``
  reports at most 1,024 blocks (a larger count is cut, as geth does).
* **Pending and queued.** A transaction whose nonce is ahead of its sender's next nonce is queued
  until the gap fills, as geth does (see ``LocalChain``); ``eth_getTransactionCount(..., "pending")``
  counts only the contiguous ones.

Test methods: ``evm_mine([timestamp])``, ``evm_increaseTime(seconds)`` (answers the total offset in
seconds as a JSON number), ``evm_setNextBlockTimestamp(timestamp)``, ``x402sim_fund(address,
usdcAtomic?, ethWei?)`` (mints and sends ether in one mined block; answers true),
``x402sim_info()`` (chain id, token address, name, version, symbol, decimals, Multicall3 address)
and ``x402sim_accounts()`` (the funded test accounts the app was given, keys included: they are
test keys, and the service binds loopback only unless told otherwise). ``eth_accounts`` stays empty:
this node signs nothing (no ``eth_sendTransaction``); clients sign and use ``eth_sendRawTransaction``.
Our own ``x402sim_*`` answers use plain JSON numbers; Ethereum methods use hex quantities.
"""

from .gas import PRIORITY_FEE
from .methods import MAX_FEE_HISTORY, MAX_LOG_RANGE, MAX_LOGS
from .service import MAX_BATCH, MAX_BODY, MAX_RESPONSE_BYTES, chain_rpc_app

__all__ = [
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_FEE_HISTORY",
    "MAX_LOGS",
    "MAX_LOG_RANGE",
    "MAX_RESPONSE_BYTES",
    "PRIORITY_FEE",
    "chain_rpc_app",
]
