"""The bookkeeping of a run's rows and transactions in flight.

Rules:

* A row is opened when an agent sends a request (``open_row``), closed when its exchange is over
  (``close_row``: counted in the timeline, the latencies and the ``PaymentBook``), and written once
  its transaction is final (or at once without one): to the ``RowWriter``, the tally, the books.
  Rows still open at the end are written as they are (``engine.run_world``).
* A transaction's receipt, inclusion and finality times are kept only while a reader is still to
  come (``hold_tx``: the settle call, the row until it is written, a facilitator that may share
  the settlement until it expires); the last ``release_tx`` forgets them, so nothing kept grows
  with the number of payments.
* ``InFlight`` is built with the run's environment, metrics, payment book, writer and warm-up; the
  world gives it its chain, block producer and trust parts once they exist. It draws no random
  number and reads no clock but virtual time.
"""

from __future__ import annotations

import heapq
from typing import Any

import simpy

from .metrics import PaymentBook, RunMetrics
from .records import Row, RowWriter


class InFlight:
    """The open rows of a run and the transactions whose receipts a reader still needs."""

    def __init__(
        self,
        env: simpy.Environment,
        metrics: RunMetrics,
        payments: PaymentBook,
        writer: RowWriter,
        warmup: float,
    ) -> None:
        self.env = env
        self.metrics = metrics
        self.tally = metrics.tally
        self.timeline = metrics.timeline
        self.latency = metrics.latency
        self.payments = payments
        self.writer = writer
        self.warmup = warmup
        self.chain: Any = None  # set by the world once built
        self.producer: Any = None  # the world's ``BlockProducer``
        self.trust: Any = None  # the world's ``TrustWorld`` (None: no trust features)
        self.trust_book: Any = None
        self.rows_open: dict[int, Row] = {}
        self.next_row = 0
        self.in_flight = 0
        self._holds: dict[bytes, int] = {}  # tx hash -> readers still to come (see hold_tx)
        self._row_holds: dict[int, bytes] = {}  # open row id -> the tx hash it holds
        self._folded_held: set[bytes] = set()  # folded receipts kept for their readers
        self._held_until: list[tuple[int, bytes]] = []  # heap of (unix time, tx hash) holds

    def open_row(self, agent, kind: str, server: str, endpoint: str) -> Row:
        """A new row for ``agent``'s request of ``endpoint`` at ``server``, sent now."""
        self.next_row += 1
        row = Row(
            id=self.next_row,
            agent=agent.name,
            group=agent.group.name,
            behaviour=agent.group.behaviour.kind,
            kind=kind,
            server=server,
            endpoint=endpoint,
            sent=self.env.now,
        )
        self.rows_open[row.id] = row
        self.in_flight += 1
        self.timeline.requests[self.timeline.index(row.sent)] += 1
        return row

    def close_row(self, row: Row) -> None:
        """``row``'s exchange is over: counted now, written when its transaction is final."""
        row.done = self.env.now
        self.in_flight -= 1
        if row.attack:
            self.metrics.governance.attack["requests"] += 1
        index = self.timeline.index(row.done)
        if row.outcome == "paid":
            self.timeline.paid[index] += 1
        elif row.outcome != "free":
            self.timeline.failures[index] += 1
        if row.sent >= self.warmup:
            self.latency["end_to_end"].add(row.done - row.sent)
        self.payments.closed(row)
        if row.tx_hash and row.final is None:
            self.env.process(self._write_when_final(row))
        else:
            self.write(row)

    def _write_when_final(self, row: Row):
        h = bytes.fromhex(row.tx_hash[2:])
        yield self.producer.final_event(h)
        row.final = self.producer.final_at[h]
        self.write(row)

    def write(self, row: Row) -> None:
        """Write ``row`` (to the writer and the books) and release what it held."""
        if row.final is not None and row.sent >= self.warmup:
            self.latency["finality"].add(row.final - row.sent)
        self.rows_open.pop(row.id, None)
        self.tally.add(row)
        self.payments.written(row)
        if self.trust_book is not None:
            self.trust_book.written(row)
        held = self._row_holds.pop(row.id, None)
        if held is not None:
            self.release_tx(held)
        self.writer.write(row)

    def record_payment(self, row: Row, payment) -> None:
        """Note a payment the agent sent (signed honestly or forged) for the invariants: an
        EIP-3009 authorization, or a Permit2 permit (its nonce in decimal, its deadline as the
        end of its validity; an upto permit's amount is a ceiling)."""
        auth = payment.payload.get("authorization", {})
        permit = payment.payload.get("permit2Authorization")
        ceiling = False
        if not auth and isinstance(permit, dict):
            witness, permitted = permit.get("witness"), permit.get("permitted")
            witness = witness if isinstance(witness, dict) else {}
            permitted = permitted if isinstance(permitted, dict) else {}
            auth = {
                "from": permit.get("from", ""),
                "nonce": str(permit.get("nonce", "")),
                "to": witness.get("to", ""),
                "value": permitted.get("amount", 0),
                "validBefore": permit.get("deadline", 0),
            }
            accepted = getattr(payment, "accepted", None)
            ceiling = getattr(accepted, "scheme", "") == "upto"
        row.payer, row.nonce, row.pay_to = auth.get("from", ""), auth.get("nonce", ""), auth.get("to", "")
        try:
            row.amount = int(auth.get("value", 0))
        except (TypeError, ValueError):
            row.amount = 0
        if row.nonce:
            try:
                valid_before = int(auth.get("validBefore", 0))
            except (TypeError, ValueError):
                valid_before = 0  # unreadable: no chain would settle it
            key = (row.payer.lower(), row.nonce.lower())
            bound = self.trust.mandate_bound(row, payment) if self.trust is not None else None
            self.payments.recorded(
                key,
                row.amount,
                row.pay_to,
                valid_before,
                row.attack,
                row.after_freeze,
                bound,
                ceiling,
                tool=f"{row.server}{row.endpoint.split(' ', 1)[1]}" if row.kind == "tool" else "",
            )

    # -- what the chain did, folded as blocks are mined -------------------------------------------------

    def hold_tx(self, h: bytes, row: Row | None = None, until: int | None = None) -> None:
        """Keep ``h``'s receipt and finality readable for one more reader (a settle call, until it
        releases it), for ``row`` if given and still open (until it is written) and, with
        ``until``, until a block at or after that unix time is mined."""
        readers = 1
        if row is not None and row.id in self.rows_open and row.id not in self._row_holds:
            self._row_holds[row.id] = h
            readers += 1
        if until is not None:
            heapq.heappush(self._held_until, (until, h))
            readers += 1
        self._holds[h] = self._holds.get(h, 0) + readers

    def is_held(self, h: bytes) -> bool:
        """Whether a reader is still to come for ``h`` (``hold_tx``)."""
        return h in self._holds

    def release_tx(self, h: bytes) -> None:
        """One reader of ``h`` is done; with none left, its receipt and finality are forgotten."""
        left = self._holds.get(h, 0) - 1
        if left > 0:
            self._holds[h] = left
            return
        self._holds.pop(h, None)
        self.producer.forget(h)
        if h in self._folded_held:
            self._folded_held.discard(h)
            self.forget_receipts([h])

    def forget_receipts(self, hashes: list[bytes]) -> None:
        if hashes:
            self.chain.forget_receipts(hashes)

    def folded(self, hashes, timestamp: int) -> None:
        """The transactions ``hashes`` of a block stamped ``timestamp`` were folded into the metrics:
        their receipts no one will read are forgotten, and holds until that time end."""
        unheld = []
        for h in hashes:
            if h in self._holds:
                self._folded_held.add(h)
            else:
                unheld.append(h)
        self.forget_receipts(unheld)
        while self._held_until and self._held_until[0][0] <= timestamp:
            self.release_tx(heapq.heappop(self._held_until)[1])

    def held(self) -> int:
        """How many holds are kept (transactions, rows, folded receipts, timed holds)."""
        return len(self._holds) + len(self._row_holds) + len(self._folded_held) + len(self._held_until)


__all__ = ["InFlight"]
