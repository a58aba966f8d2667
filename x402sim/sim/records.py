"""What a run records while it runs: one row per request, and a timeline.

Rules:

* A ``Row`` is filled in by the world as the request travels (sent, verified, settled, final,
  done) and written once complete, streamed to ``payments.csv`` when the run has an output
  folder; nothing here reads the chain or any clock but the virtual times it is given.
* ``payments.csv`` holds ``all`` rows, a ``sample`` or ``none`` (``PAYMENTS_MODES``). The sample is
  the first ``SAMPLE_HEAD`` rows written, then one row in ``SAMPLE_EVERY`` (1 %) drawn from a
  stream seeded by the run's seed: the same run writes the same sample.
* The timeline is a fixed number of buckets of virtual time (memory grows with duration / bucket,
  never with payments); timelines of shards of one run (same buckets) merge by adding.
* Latencies are not kept here: see ``sketch.LatencyStats``.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field, fields
from typing import IO


@dataclass
class Row:
    """One request (an attempt to obtain a resource), with its payment, if any."""

    id: int
    agent: str
    group: str
    behaviour: str
    kind: str  # "request", "retry", "replay", "race", "tool" (a task's call of a Bazaar tool)
    server: str
    endpoint: str
    sent: float
    amount: int = 0
    payer: str = ""
    pay_to: str = ""
    nonce: str = ""
    facilitator: str = ""
    verified: float | None = None
    settled: float | None = None
    final: float | None = None
    done: float | None = None
    status: int | None = None
    outcome: str = "unfinished"  # paid, free, refused (by the client), denied (by the governor), ...
    reason: str = ""
    tx_hash: str = ""
    gas: int | None = None
    handled: bool = False  # the server's handler ran for it
    origin: int = 0  # the first attempt's id, for retries (0: this row is the first)
    attack: bool = False  # attack-bound: sent by a compromised behaviour, or quoted by price bait
    after_freeze: bool = False  # its payment was signed while the agent was frozen (never should be)
    crawl: str = ""  # a crawl policy's verdict on it: block, free or charge ("": none asked)

    @property
    def latency(self) -> float | None:
        return None if self.done is None else self.done - self.sent


COLUMNS = [f.name for f in fields(Row)]


def _cell(value) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


PAYMENTS_MODES = ("all", "sample", "none")
SAMPLE_HEAD = 1_000
SAMPLE_EVERY = 100


class RowWriter:
    """Streams rows to a CSV file (or nowhere), keeping them in memory only when asked.

    ``payments`` says which rows reach the file (``PAYMENTS_MODES``); ``seed`` seeds the sample."""

    def __init__(self, stream: IO[str] | None, keep: bool, payments: str = "all", seed: int = 0) -> None:
        if payments not in PAYMENTS_MODES:
            raise ValueError(f"payments must be one of {PAYMENTS_MODES}, got {payments!r}")
        self._csv = csv.writer(stream) if stream is not None and payments != "none" else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)
        self.kept: list[Row] | None = [] if keep else None
        self.written = 0  # rows seen, written to the file or not
        self._sample = random.Random(f"x402sim-payments-sample:{seed}") if payments == "sample" else None

    def write(self, row: Row) -> None:
        self.written += 1
        if self._csv is not None and (
            self._sample is None or self.written <= SAMPLE_HEAD or self._sample.random() * SAMPLE_EVERY < 1
        ):
            self._csv.writerow([_cell(getattr(row, name)) for name in COLUMNS])
        if self.kept is not None:
            self.kept.append(row)


TIMELINE_COLUMNS = ["start", "end", "requests", "paid", "failures", "pending_txs", "facilitator_queues"]


@dataclass
class Timeline:
    """Counts per bucket of virtual time, and the queues sampled at each bucket's end."""

    bucket: float
    buckets: int
    requests: list[int] = field(init=False)
    paid: list[int] = field(init=False)
    failures: list[int] = field(init=False)
    pending_txs: list[int] = field(init=False)
    queues: list[dict[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.requests = [0] * self.buckets
        self.paid = [0] * self.buckets
        self.failures = [0] * self.buckets
        self.pending_txs = [0] * self.buckets
        self.queues = [{} for _ in range(self.buckets)]

    def index(self, t: float) -> int:
        return min(self.buckets - 1, max(0, int(t // self.bucket)))

    def merge(self, other: Timeline) -> None:
        """Add ``other``'s counts (a shard of the same run: same buckets) to these; pending
        transactions and queue lengths add too (each shard has its own chain and facilitators)."""
        if (self.bucket, self.buckets) != (other.bucket, other.buckets):
            raise ValueError("timelines of different buckets do not merge")
        for name in ("requests", "paid", "failures", "pending_txs"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for i, n in enumerate(theirs):
                mine[i] += n
        for mine, theirs in zip(self.queues, other.queues, strict=True):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n

    def rows(self) -> list[list]:
        out = []
        for i in range(self.buckets):
            queues = ";".join(f"{name}={n}" for name, n in sorted(self.queues[i].items()))
            start = i * self.bucket
            out.append(
                [
                    f"{start:g}",
                    f"{start + self.bucket:g}",
                    self.requests[i],
                    self.paid[i],
                    self.failures[i],
                    self.pending_txs[i],
                    queues,
                ]
            )
        return out
