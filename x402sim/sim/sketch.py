"""Latency statistics that merge: an exact count, mean, minimum and maximum beside a DDSketch.

Rules:

* Percentiles come from a ``ddsketch`` sketch of relative accuracy ``RELATIVE_ACCURACY`` (0.5 %).
  ``percentile(q)`` estimates the nearest-rank percentile, the sample of rank ceil(q/100 x n): the
  estimate lies within 0.5 % of that sample (it is the representative value of the sample's
  bin), clamped into [min, max]; the lowest and the highest rank are the exact min and max.
* Memory is bounded by the range of the values, never by their count: bins are logarithmic (about
  460 per factor of ten at 0.5 %) and at most ``BIN_LIMIT`` of them are kept (the lowest collapse
  beyond that, which no latency between a nanosecond and a year reaches).
* ``merge`` gives the statistics of both sample sets: counts and bins add, min and max take the
  extremes, sums add (as floats, so a sum may differ in its last bits with the order of merges).
* Instances pickle as plain Python objects, to cross process boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

from ddsketch import LogCollapsingLowestDenseDDSketch

RELATIVE_ACCURACY = 0.005
BIN_LIMIT = 4096


class LatencyStats:
    """Samples (seconds) folded into count, sum, min, max and a sketch of their distribution."""

    __slots__ = ("count", "max", "min", "sketch", "total")

    def __init__(self, samples: Iterable[float] = ()) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
        for value in samples:
            self.add(value)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.sketch.add(value)

    def merge(self, other: LatencyStats) -> None:
        """Fold ``other``'s samples into these statistics."""
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketch.merge(other.sketch)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        """The estimated nearest-rank ``q``-th percentile (0 < q <= 100), or None without samples."""
        n = self.count
        if not n:
            return None
        rank = max(1, math.ceil(q / 100 * n)) - 1  # 0-based
        if rank == 0:
            return self.min
        if rank == n - 1:
            return self.max
        # ddsketch reads rank ``quantile x (n - 1)``: aim at the middle of the wanted rank so that
        # float rounding cannot land on its neighbour.
        # ddsketch answers None for an empty sketch or a quantile outside [0, 1]: this one holds the
        # n > 2 samples counted here, and 0 < (rank + 0.5) / (n - 1) < 1
        value = cast(float, self.sketch.get_quantile_value((rank + 0.5) / (n - 1)))
        return min(self.max, max(self.min, float(value)))

    def percentiles_ms(self, qs: Iterable[int] = (50, 90, 99)) -> dict[str, float | None]:
        """``{"p50": ..., ...}`` in milliseconds rounded to the microsecond (None without samples)."""
        out = {}
        for q in qs:
            value = self.percentile(q)
            out[f"p{q}"] = None if value is None else round(value * 1000, 3)
        return out

    def bins(self) -> dict[int, float]:
        """Non-empty bins, key -> count (key ``None`` holds the zeros): the sketch's content."""
        store = self.sketch._store
        out: dict = {i + store.offset: c for i, c in enumerate(store.bins) if c}
        if self.sketch._zero_count:
            out[None] = self.sketch._zero_count
        return out

    @property
    def bin_count(self) -> int:
        """Bins held in memory (empty ones inside the range included)."""
        return len(self.sketch._store.bins) + len(self.sketch._negative_store.bins)

    def cdf(self) -> tuple[list[float], list[float]]:
        """The sketch's distribution as steps: values (seconds, ascending, clamped into [min, max])
        and the fraction of samples at or below each."""
        if not self.count:
            return [], []
        mapping = self.sketch._mapping
        values, fractions, seen = [], [], 0.0
        for key, n in sorted(self.bins().items(), key=lambda kv: -math.inf if kv[0] is None else kv[0]):
            seen += n
            value = 0.0 if key is None else mapping.value(key)
            values.append(min(self.max, max(self.min, value)))
            fractions.append(seen / self.count)
        return values, fractions

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyStats):
            return NotImplemented
        same = (self.count, self.min, self.max) == (other.count, other.min, other.max)
        return same and math.isclose(self.total, other.total, rel_tol=1e-12) and self.bins() == other.bins()

    # mutable: defining __eq__ without __hash__ makes Python set __hash__ to None (unhashable)

    def __repr__(self) -> str:
        mean = "-" if self.mean is None else f"{self.mean:.6g}"
        return f"LatencyStats(count={self.count}, mean={mean}, min={self.min:g}, max={self.max:g})"

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state) -> None:
        for name, value in state.items():
            setattr(self, name, value)


def as_stats(samples) -> LatencyStats:
    """``samples`` as ``LatencyStats`` (a ``LatencyStats`` is returned as it is)."""
    return samples if isinstance(samples, LatencyStats) else LatencyStats(samples or ())
