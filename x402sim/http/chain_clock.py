"""The clock of a served embedded chain: the wall clock, shifted by the test methods that move time.

Served chains follow the wall clock because real SDKs sign with it. ``ChainClock`` is the one place
that says what time it is on such a chain, and every service of one chain shares it: the JSON-RPC
node (which moves it with ``evm_increaseTime`` and ``evm_setNextBlockTimestamp``) and the
facilitator (which must judge validity windows by the time the chain will mine the transfer, not
by its own wall clock; otherwise, after ``evm_increaseTime(3600)``, verify passes at wall-clock time
and the settlement expires on chain).

Rules: the chain's time is ``max(chain.now, wall + offset)`` and never moves backwards; ``offset`` is
the total of ``evm_increaseTime``; a pinned timestamp holds until the next block is mined, by anyone.
Without a wall clock (``wall=None``) the chain's time moves only when told.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class EmbeddedChain(Protocol):
    """What ``ChainClock`` needs of a chain: an embedded one (``LocalChain``, ``LedgerChain``)."""

    @property
    def now(self) -> int: ...
    @property
    def block_number(self) -> int: ...
    def set_time(self, timestamp: int) -> None: ...
    def advance(self, seconds: int) -> int: ...


class ChainClock:
    """What time it is on ``chain``, given the ``wall`` clock (seconds, e.g. ``time.time``)."""

    def __init__(self, chain: EmbeddedChain, wall: Callable[[], float] | None = None) -> None:
        self.chain = chain
        self.wall = wall
        self.offset = 0  # total of evm_increaseTime
        self._pinned_at: int | None = None  # head block number when a timestamp was pinned

    def sync(self) -> int:
        """Bring the chain's clock up to the wall clock plus ``offset``; return the chain's time."""
        if self._pinned_at is not None and self.chain.block_number != self._pinned_at:
            self._pinned_at = None  # the pinned block was mined
        if self.wall is not None and self._pinned_at is None:
            target = int(self.wall()) + self.offset
            if target > self.chain.now:
                self.chain.set_time(target)
        return self.chain.now

    def increase(self, seconds: int) -> int:
        """``evm_increaseTime``: move the chain's time and the offset forward; return the offset."""
        self.chain.advance(seconds)
        self.offset += seconds
        return self.offset

    def pin(self, timestamp: int) -> None:
        """``evm_setNextBlockTimestamp``: the next block gets exactly ``timestamp`` (not before now)."""
        self.chain.set_time(timestamp)
        self._pinned_at = self.chain.block_number
        if self.wall is not None:
            self.offset = max(self.offset, timestamp - int(self.wall()))
