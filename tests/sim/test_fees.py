"""What a facilitator bills: the month a settlement falls in, the free tier of each month and the
fee past it, against the calendar and exact decimal arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from x402sim.sim.fees import Biller, calendar_month
from x402sim.sim.scenario import FacilitatorFees

TIMES = st.integers(0, 2**34)  # from 1970 to the year 2514


@given(TIMES)
def test_a_settlement_falls_in_its_utc_calendar_month(t):
    moment = datetime.fromtimestamp(t, UTC)
    assert calendar_month(t) == (moment.year, moment.month)


@given(
    times=st.lists(TIMES, min_size=1, max_size=40),
    amounts=st.lists(st.integers(0, 10**12), min_size=40, max_size=40),
    bps=st.sampled_from([0, 1, 25, 99.5, 10_000]),
    free=st.integers(0, 5),
    fixed=st.sampled_from(["0", "0.001", "0.25"]),
)
def test_each_month_has_its_free_tier_then_fixed_plus_bps_rounded_down(times, amounts, bps, free, fixed):
    biller = Biller(FacilitatorFees(fixed=fixed, bps=bps, free_per_month=free))
    assert biller.fees.fixed == int(Decimal(fixed) * 10**6)
    seen: dict[tuple[int, int], int] = {}
    for t, amount in zip(sorted(times), amounts, strict=False):
        d = datetime.fromtimestamp(t, UTC)
        month = (d.year, d.month)
        seen[month] = seen.get(month, 0) + 1
        exact = Decimal(amount) * Decimal(str(bps)) / 10_000
        expected = 0 if seen[month] <= free else biller.fees.fixed + int(exact)  # atomic units
        assert biller.bill(amount, t) == expected
