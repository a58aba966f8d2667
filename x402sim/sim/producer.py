"""The block producer: ticks every block (or flashblock) time in virtual time, mining what is pending.

Rules: each tick mines every pending transaction into one block stamped with the virtual time
(``sync_chain`` first), so validity windows, expiry and finality are judged in virtual time; ticks
with nothing pending build no block but still count as blocks for confirmations, and a chain stall
stops the ticks. A transaction is included when its block (its flashblock, with preconfirmations)
is mined and final ``confirmations`` blocks later; ``preconf_event`` and ``final_event`` are SimPy
events for either. Inclusion and finality times are kept only while a reader is still to come
(``is_held``); each mined block is handed to ``on_block`` at once.

Idle ticks cost no event: when nothing is pending, in the flashblocks of the block being built or
awaiting finality, the producer sleeps until a transaction is submitted (``wake``, from the world's submit hook), then counts
the ticks it slept through (at or before the wake, in virtual time, skipping stalls, as the ticks
themselves would have) and takes up its schedule at the very tick times it would have had: each tick
is the previous one plus ``tick``, in the same floating-point sums. ``catch_up`` counts the ticks
slept through at the end of a run.
"""

from __future__ import annotations

import math
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
        self._last = self.env.now  # the time of the last tick taken (slept-through ones included)
        self._sub = 0  # ticks counted, flashblocks included
        self._wake: simpy.Event | None = None  # while asleep: what a submission triggers
        self.env.process(self._run())

    def _stalled(self, t: float) -> bool:
        return any(w.covers(t) for w in self.world.stalls)

    def _idle(self) -> bool:
        return not (self.world.chain.pending_count or self._unsealed or self._awaiting)

    def wake(self) -> None:
        """A transaction is being submitted: take up the ticks again if asleep."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def catch_up(self, until: float) -> None:
        """Count the idle ticks slept through, up to ``until`` included."""
        t = self._last + self.tick
        while t <= until:
            self._last = t
            if not self._stalled(t):
                self._sub += 1
                if not self._sub % self.per_block:
                    self.height += 1
            t = self._last + self.tick

    def _until_next(self) -> float:
        """The delay that lands exactly on the next tick time (``now + delay`` rounds to it)."""
        now, at = self.env.now, self._last + self.tick
        delay = at - now
        while now + delay < at:
            delay = math.nextafter(delay, math.inf)
        while now + delay > at:
            delay = math.nextafter(delay, -math.inf)
        return delay

    def _run(self):
        while True:
            if self._idle():
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                self.catch_up(self.env.now)  # a tick at the same instant as the wake came first
                yield self.env.timeout(self._until_next())
            else:
                yield self.env.timeout(self.tick)
            self._last = self.env.now
            if self._stalled(self.env.now):
                continue
            self._take_tick()

    def _take_tick(self) -> None:
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
        self._sub += 1
        if self._sub % self.per_block:
            return
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
