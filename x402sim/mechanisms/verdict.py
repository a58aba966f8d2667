"""What every mechanism's verification produces, and what it is given to judge with.

``Verdict`` is the outcome of a mechanism's checks: a reason (None when the payment passed), a
message, the payer, and, for a payment that passed, the mechanism's parsed payload, the ``Offer``
it pays, the ``charge`` its settlement moves and the ``extra`` a verify answer carries.
``Judging`` is what the checks know of the facilitator judging: the time, its chain id, its own
address, whether this is a settlement, the gas-sponsoring extensions it offers, and how it signs a
digest with its key (batch-settlement: the receiver authorizations delegated to it). ``Step`` is
one transaction of a settlement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import Reason
from .offer import Offer

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class Verdict:
    """The outcome of verification: a reason (None when valid), a message and the payer; for a
    payment that passed, the mechanism's parsed ``payload``, the ``offer`` it pays and the
    ``charge`` (atomic units) its settlement moves (None: the offer's amount)."""

    reason: Reason | None
    message: str = ""
    payer: str | None = None
    payload: Any = None
    offer: Offer | None = None
    charge: int | None = None
    extra: dict[str, Any] | None = None  # what a verify answer carries (batch-settlement: the channel)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def amount(self) -> int:
        """The atomic amount a settlement of this verdict moves."""
        if self.charge is not None:
            return self.charge
        return self.offer.amount if self.offer is not None else 0


@dataclass(frozen=True)
class Judging:
    """What a mechanism's checks know of the facilitator judging a payment."""

    now: int
    chain_id: int
    facilitator: str = ZERO_ADDRESS  # the facilitator's own address (upto: the only settler)
    settling: bool = False  # a /settle: upto reads requirements.amount as the charge, not the maximum
    sponsoring: frozenset[str] = frozenset()  # the gas-sponsoring extensions it offers
    sign: Callable[[bytes], bytes] | None = field(default=None, compare=False)  # a digest, by its key


@dataclass(frozen=True)
class Step:
    """One transaction of a settlement, in order: a call the facilitator signs and pays for (``to``,
    ``data``, ``value`` in wei), or a transaction the payer signed (``raw``), relayed as it is.
    ``sponsored`` marks what the facilitator spends on the payer's behalf (gas sponsoring). The
    last step of a settlement is the one whose receipt judges it."""

    to: str = ""
    data: bytes = b""
    value: int = 0
    raw: bytes = b""
    sponsored: bool = False
    gas: int | None = None  # the gas limit of a call (None: the facilitator's settle_gas)
