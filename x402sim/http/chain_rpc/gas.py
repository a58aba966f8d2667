"""Gas and fee arithmetic shared by the service and the methods.

The intrinsic gas of a call (with the EIP-7623 calldata floor), the effective gas price a
transaction pays in a block, and the fixed numbers: a plain transfer's gas, the gas cap of an
``eth_call`` that names none, and the priority fee (0: see "Fees" in the package docstring).
"""

from __future__ import annotations

CALL_GAS_CAP = 50_000_000  # gas of an eth_call that names none (geth's default cap)
PRIORITY_FEE = 0  # wei; see "Fees" in the package docstring
TX_GAS = 21_000


def effective_price(tx, base_fee: int) -> int:
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def intrinsic_gas(data: bytes) -> tuple[int, int]:
    """Intrinsic gas of a call with ``data``, and the EIP-7623 (Prague) calldata floor."""
    zeros = data.count(0)
    nonzeros = len(data) - zeros
    return TX_GAS + 4 * zeros + 16 * nonzeros, TX_GAS + 10 * (zeros + 4 * nonzeros)
