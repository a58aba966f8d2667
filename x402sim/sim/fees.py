"""What a settlement costs its sender in gas, and what a facilitator bills for it.

Rules:

* Pure functions of their arguments; amounts in wei (gas) and atomic USDC units (bills).
* The chain's fee model is the scenario's, not the embedded chain's own EIP-1559 base fee (which
  falls to almost nothing on a quiet test chain): py-evm says how much gas a settlement used, the
  model says what that gas costs on the chain being studied.
* ``l1``: gas x (max(base fee, floor) + priority fee).
* ``op-stack`` (Ecotone fee formula, as OP-stack rollups such as Base charge it): the L2 execution
  fee as above, plus the L1 data fee of the signed transaction's bytes::

      calldata_gas = 4 x zero bytes + 16 x non-zero bytes
      l1_data_fee  = calldata_gas / 16 x (16 x base_fee_scalar x l1_base_fee
                                          + blob_base_fee_scalar x blob_base_fee) / 1e6

* Facilitator bills follow ``[facilitators.fee]``: the first ``free_per_month`` settlements of each
  UTC calendar month are free, later ones cost ``fixed`` plus ``bps`` of the amount (rounded down
  to an atomic unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from .scenario import FacilitatorFees, FeeModel, L1Fees

GWEI = 10**9


def _wei(gwei: float) -> int:
    return round(gwei * GWEI)


def calldata_gas(raw: bytes) -> int:
    zeros = raw.count(0)
    return 4 * zeros + 16 * (len(raw) - zeros)


@dataclass(frozen=True)
class GasCost:
    """The fee of one transaction, split into its L2 execution and L1 data parts (wei)."""

    execution: int
    l1_data: int = 0

    @property
    def total(self) -> int:
        return self.execution + self.l1_data


def gas_cost(model: FeeModel, gas_used: int, raw_tx: bytes) -> GasCost:
    """What ``gas_used`` gas of a transaction whose signed bytes are ``raw_tx`` costs under ``model``."""
    if isinstance(model, L1Fees):
        base, floor = model.base_fee_gwei, model.base_fee_floor_gwei
    else:
        base, floor = model.l2_base_fee_gwei, model.l2_base_fee_floor_gwei
    price = max(_wei(base), _wei(floor)) + _wei(model.priority_fee_gwei)
    if isinstance(model, L1Fees):
        return GasCost(gas_used * price)
    weighted = 16 * model.base_fee_scalar * _wei(model.l1_base_fee_gwei) + model.blob_base_fee_scalar * _wei(
        model.blob_base_fee_gwei
    )
    l1_data = calldata_gas(raw_tx) * weighted // (16 * 10**6)
    return GasCost(gas_used * price, l1_data)


def calendar_month(unix_time: int) -> tuple[int, int]:
    """The UTC (year, month) of ``unix_time``."""
    return _month_of_day(unix_time // 86_400)


@lru_cache(maxsize=1024)
def _month_of_day(day: int) -> tuple[int, int]:  # settlements come by the thousand a day
    moment = datetime.fromtimestamp(day * 86_400, UTC)
    return moment.year, moment.month


@dataclass
class Biller:
    """Counts one facilitator's settlements per calendar month and prices each."""

    fees: FacilitatorFees
    _months: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._bps = Decimal(str(self.fees.bps))

    def bill(self, amount: int, unix_time: int) -> int:
        """The fee (atomic USDC) for settling ``amount`` at ``unix_time``; counts the settlement."""
        month = calendar_month(unix_time)
        count = self._months.get(month, 0) + 1
        self._months[month] = count
        if count <= self.fees.free_per_month:
            return 0
        return self.fees.fixed + int(Decimal(amount) * self._bps / 10_000)
