"""The block producer: ticks every block (or flashblock) time in virtual time, mining what is pending.

Rules: each tick mines every pending transaction into one block stamped with the virtual time
(``sync_chain`` first), so validity windows, expiry and finality are judged in virtual time; ticks
with nothing pending build no block but still count as blocks for confirmations, and a chain stall
stops the ticks. A transaction is included when its block (its flashblock, with preconfirmations)
is mined and final ``confirmations`` blocks later; ``preconf_event`` and ``final_event`` are SimPy
events for either. Inclusion and finality times are kept only while a reader is still to come
(``is_held``); each mined block is handed to ``on_block`` at once.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import simpy


class ProducerHost(Protocol):
    """What the producer reads of its world (a ``world.World``)."""

    env: simpy.Environment
    scenario: Any
    chain: Any
    stalls: list

    def sync_chain(self) -> None: ...

    def on_block(self, block) -> None: ...

    def is_held(self, h: bytes) -> bool: ...


class BlockProducer:
    """Ticks every block (or flashblock) time, mining what is pending; tracks inclusion and finality."""

    def __init__(self, world: ProducerHost) -> None:
        self.world = world
        self.env = world.env
        c = world.scenario.chain
        self.tick = c.preconfirmation or c.block_time
        self.per_block = max(1, round(c.block_time / self.tick)) if c.preconfirmation else 1
        self.confirmations = c.confirmations
        self.height = 0  # blocks counted for confirmations, empty ones included
        self.included_at: dict[bytes, float] = {}
        self.final_at: dict[bytes, float] = {}
        self._preconf: dict[bytes, simpy.Event] = {}
        self._final: dict[bytes, simpy.Event] = {}
        self._awaiting: deque[tuple[int, bytes]] = deque()  # (height at which final, tx), in order
        self._unsealed: list[bytes] = []  # in flashblocks of the block being built
        self.blocks = 0
        self.env.process(self._run())

    def _stalled(self, t: float) -> bool:
        return any(w.covers(t) for w in self.world.stalls)

    def _run(self):
        sub = 0
        while True:
            yield self.env.timeout(self.tick)
            if self._stalled(self.env.now):
                continue
            w = self.world
            if w.chain.pending_count:
                w.sync_chain()
                block = w.chain.mine()
                self.blocks += 1
                w.on_block(block)
                for h in block.tx_hashes:
                    self.included_at[h] = self.env.now
                    self._unsealed.append(h)
                    if h in self._preconf:
                        self._preconf.pop(h).succeed()
            sub += 1
            if sub % self.per_block:
                continue
            self.height += 1
            for h in self._unsealed:
                self._awaiting.append((self.height + self.confirmations, h))
            self._unsealed = []
            while self._awaiting and self._awaiting[0][0] <= self.height:
                _, h = self._awaiting.popleft()
                self.final_at[h] = self.env.now
                if h in self._final:
                    self._final.pop(h).succeed()
                if not w.is_held(h):
                    self.forget(h)  # no reader waits for it: keep nothing per transaction

    def _event(self, table: dict, done: dict, h: bytes) -> simpy.Event:
        if h in done:
            event = self.env.event()
            event.succeed()
            return event
        if h not in table:
            table[h] = self.env.event()
        return table[h]

    def forget(self, h: bytes) -> None:
        """Drop what is known of ``h`` once final (``World.release_tx``: no reader is left)."""
        if h in self.final_at:
            del self.final_at[h]
            self.included_at.pop(h, None)

    def preconf_event(self, h: bytes) -> simpy.Event:
        return self._event(self._preconf, self.included_at, h)

    def final_event(self, h: bytes) -> simpy.Event:
        return self._event(self._final, self.final_at, h)


__all__ = ["BlockProducer", "ProducerHost"]
