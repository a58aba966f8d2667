"""``Recent``: a map that keeps its last entries only, for the bounded memories of the fast paths
(the trusted hops of ``codec``, the exact scheme's parsed payloads and offline judgements, the offers
of ``Offer.of``, a server's 402s)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(OrderedDict[K, V]):
    """At most ``limit`` entries: keeping one more drops the oldest, in O(1) (``del d[next(iter(d))]``
    on a dict would scan the slots deleted before its first key)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:  # copied and pickled with its limit
        return type(self), (self.limit,), None, None, iter(self.items())

    def keep(self, key: K, value: V) -> None:
        if key not in self and len(self) >= self.limit:
            self.popitem(last=False)
        self[key] = value
