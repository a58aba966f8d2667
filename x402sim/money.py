"""Money: the atomic unit of a 6-decimal USD stablecoin (USDC), and amounts read and written in dollars.

Job: the one place that knows a dollar is ``UNIT`` atomic units, how a decimal string such as ``"0.01"``
becomes atomic units, and how atomic units are written for people.

Rules:
- This is a leaf module: it imports nothing of x402sim, so any module may import it.
- Amounts are ``int`` atomic units everywhere in x402sim; dollars appear only at the edges (files a
  person writes, text a person reads), through the functions here.
- Parsing is exact (``Decimal``, never ``float``) and refuses what it cannot represent; the formatters
  named ``..._exact`` use integer arithmetic only.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "DECIMALS",
    "UNIT",
    "format_usd",
    "format_usdc",
    "format_usdc_exact",
    "format_usdc_fixed",
    "parse_usdc",
    "to_usdc",
]

DECIMALS = 6
UNIT = 10**DECIMALS  # atomic units in one USDC (one dollar)


def parse_usdc(value: Any) -> int:
    """A decimal USDC amount (``"0.001"``) in atomic units; at most 6 decimals, never negative.

    Raises ``ValueError`` saying what is wrong (the caller names where)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('write USDC amounts as decimal strings, e.g. "0.001"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} is not a non-negative amount")
    atomic = amount * UNIT
    if atomic != atomic.to_integral_value():
        raise ValueError(f"{value!r} has more than {DECIMALS} decimals")
    if atomic >= 2**256:
        raise ValueError(f"{value!r} is more than a token amount can hold (2**256 atomic units)")
    return int(atomic)


def to_usdc(atomic: int) -> float:
    """Atomic units as a number of USDC (for JSON summaries and arithmetic on dollars)."""
    return round(atomic / UNIT, DECIMALS)


def format_usdc(atomic: int) -> str:
    """The shortest exact text of an amount in USDC: ``1000`` -> ``"0.001"``, ``0`` -> ``"0"``.

    (``Decimal`` text: whole amounts ending in zeros come out in exponent form, ``10 USDC`` as ``"1E+1"``.)
    """
    return str((Decimal(atomic) / UNIT).normalize()) if atomic else "0"


def format_usd(atomic: int) -> str:
    """An amount as ``USD 0.001`` (plain digits, no trailing zeros), as a crawl price is written."""
    return "USD " + format(Decimal(atomic).scaleb(-DECIMALS).normalize(), "f")


def format_usdc_exact(atomic: int) -> str:
    """An amount in USDC with all 6 decimals and thousands separators, exactly: ``-1234500`` ->
    ``"-1.234500"``."""
    sign = "-" if atomic < 0 else ""
    whole, frac = divmod(abs(int(atomic)), UNIT)
    return f"{sign}{whole:,}.{frac:06d}"


def format_usdc_fixed(atomic: int, *, plus: bool = False) -> str:
    """An amount in USDC with 6 decimals and thousands separators, through a float (exact below about
    a billion USDC); ``plus`` writes a ``+`` before amounts that are not negative (a change)."""
    return f"{atomic / UNIT:+,.6f}" if plus else f"{atomic / UNIT:,.6f}"
