"""The state of one served chain, apart from its HTTP endpoint.

``ServedChain`` holds the chain, its clock offset and pinned timestamp, the block producer, the
caches of what mined blocks hold, and the lookups and call simulation the handlers in ``methods``
share. ``service`` adds the JSON-RPC endpoint on top and dispatches to ``methods``, which therefore
sees only this module, never ``service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict

from eth.exceptions import HeaderNotFound, TransactionNotFound
from eth_utils import ValidationError, to_canonical_address

from x402sim.evm.chain import CallResult, LocalChain

from ...version import NAME, VERSION
from ..chain_clock import ChainClock
from .errors import INVALID_PARAMS, SERVER_ERROR, RpcError
from .gas import intrinsic_gas
from .params import BlockRef, CallObject
from .shapes import hex_data

log = logging.getLogger(__package__)  # "x402sim.http.chain_rpc", as before the split

BLOCKS_KEPT = 4096  # blocks whose fee facts and logs are kept


class ServedChain:
    """The state of one served chain: its clock (shared with the services of the same chain), the
    block producer, and the lookups and call simulation the method handlers share."""

    def __init__(
        self,
        chain: LocalChain,
        *,
        automine: bool,
        block_time: float | None,
        clock: ChainClock,
    ) -> None:
        self.chain = chain
        self.automine = automine and block_time is None
        self.block_time = block_time
        self.clock = clock
        self.accounts: list[dict] = []  # published by x402sim_accounts
        # What mined blocks hold never changes: eth_feeHistory's and eth_getLogs' reads, by block hash.
        self.fee_facts = Lru(BLOCKS_KEPT)
        self.block_logs = Lru(BLOCKS_KEPT)
        self._producer: asyncio.Task | None = None
        self.client_version = f"{NAME}/v{VERSION}/py-evm"

    @functools.cached_property
    def token_decimals(self) -> int:
        """Read once: ``x402sim_info`` is asked on every verify and settle of a remote facilitator
        (for the chain's time), and the decimals never change."""
        return int(self.chain.read(self.chain.usdc, "decimals()", returns="uint8"))

    # -- time and blocks ----------------------------------------------------------------------------

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
                self.clock.sync()
                if self.chain.pending_count:
                    self.chain.mine()
            except Exception:
                log.exception("block producer: mining failed")

    # -- lookups ------------------------------------------------------------------------------------

    def header(self, ref: BlockRef):
        """The canonical header ``ref`` names; raises -32000 ``header not found``."""
        evm = self.chain.evm
        head = evm.get_canonical_head()
        if ref.hash is not None:
            block = self.block_by_hash(ref.hash)
            if block is None:
                raise RpcError(SERVER_ERROR, f"header not found: no canonical block {hex_data(ref.hash)}")
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

    def state_at(self, ref: BlockRef):
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

    # -- simulation ---------------------------------------------------------------------------------

    def simulate(self, call: CallObject, gas: int, ref: BlockRef) -> CallResult:
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
        needed = max(intrinsic_gas(call.data))
        if gas < needed:
            raise RpcError(SERVER_ERROR, f"intrinsic gas too low: have {gas}, want {needed}")
        try:
            return chain.call(
                call.to, call.data, sender=call.sender, gas=gas, after_block=parent.block_number
            )
        except ValidationError as exc:  # py-evm refusing the call itself, not the code it runs
            raise RpcError(SERVER_ERROR, f"invalid call: {exc}") from None


class Lru:
    """A dict that keeps its ``size`` most recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)
