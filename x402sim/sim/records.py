"""What a run records while it runs: one row per request, a timeline, latency samples.

Rules:

* A ``Row`` is filled in by the world as the request travels (sent, verified, settled, final,
  done) and written once complete, streamed to ``payments.csv`` when the run has an output
  folder; nothing here reads the chain or any clock but the virtual times it is given.
* The timeline is a fixed number of buckets of virtual time (memory grows with duration / bucket,
  never with payments).
* Latencies are kept as samples per kind for percentiles; requests sent during warm-up are left
  out of them.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, fields
from typing import IO


@dataclass
class Row:
    """One request (an attempt to obtain a resource), with its payment, if any."""

    id: int
    agent: str
    group: str
    behaviour: str
    kind: str  # "request", "retry", "replay", "race"
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
    outcome: str = "unfinished"
    reason: str = ""
    tx_hash: str = ""
    gas: int | None = None
    handled: bool = False  # the server's handler ran for it
    origin: int = 0  # the first attempt's id, for retries (0: this row is the first)

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


class RowWriter:
    """Streams rows to a CSV file (or nowhere), keeping them in memory only when asked."""

    def __init__(self, stream: IO[str] | None, keep: bool) -> None:
        self._csv = csv.writer(stream) if stream is not None else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)
        self.kept: list[Row] | None = [] if keep else None

    def write(self, row: Row) -> None:
        if self._csv is not None:
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


def percentiles(samples: list[float], qs=(50, 90, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles in milliseconds, rounded to the microsecond."""
    if not samples:
        return {f"p{q}": None for q in qs}
    ordered = sorted(samples)
    out = {}
    for q in qs:
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        out[f"p{q}"] = round(ordered[rank - 1] * 1000, 3)
    return out
