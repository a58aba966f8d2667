"""What a facilitator asks of the chain, counted, so the simulator can charge each round trip.

The facilitator role reaches the chain only through the ``Chain`` interface (``evm.backend``). A
``CountingChain`` stands in front of the world's chain for one facilitator and counts the calls that
would each be a JSON-RPC round trip to a node: reads (code, calls, token views, the storage view),
fee and nonce look-ups, receipts and submissions. The simulator then charges the facilitator's
chain latency once per counted call (``[network] facilitator_chain_reads = "counted"``), instead of
the fixed two reads per verify and settle it charges by default.

Rules: counting changes no answer (every call goes to the chain unchanged); ``take()`` returns the
count since the last ``take()`` and starts again. Mining and time are the world's, not the
facilitator's, and are not counted.
"""

from __future__ import annotations

from typing import Any

# The Chain interface's calls that a facilitator would make over JSON-RPC.
ROUND_TRIPS = frozenset(
    {
        "code",
        "call",
        "balance_of",
        "total_supply",
        "authorization_state",
        "name_of",
        "version_of",
        "token_state",
        "pending_nonce",
        "send_raw_transaction",
        "receipt",
    }
)
ROUND_TRIP_PROPERTIES = frozenset({"base_fee"})


class CountingChain:
    """``chain``, with the facilitator's round trips to it counted (see the module docstring)."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain
        self.calls = 0

    def take(self) -> int:
        """The round trips counted since the last ``take``."""
        calls, self.calls = self.calls, 0
        return calls

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._chain, name)
        if name in ROUND_TRIP_PROPERTIES:
            self.calls += 1
        elif name in ROUND_TRIPS:
            return self._counted(value)
        return value

    def _counted(self, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call
