"""Payment mechanisms as plug-ins: one module per (scheme, network family, asset transfer method).

``base`` says what a mechanism provides and holds the ``Mechanisms`` registry the roles look
mechanisms up in; ``exact_eip3009`` is the first mechanism; ``offer`` is the view of a requirement
that EVM mechanisms share. ``default_mechanisms()`` is what a role speaks when not told otherwise.
"""

from .base import (
    DEFAULT_PAYMENT_FLOW,
    DEFAULT_TRANSFER_METHOD,
    PAYMENT_FLOWS,
    Mechanism,
    Mechanisms,
    VerdictLike,
    VerdictT,
    family_of,
    ledger_refusal,
    payment_flow_problem,
    prefers_authorization,
    transfer_method_of,
)
from .exact_eip3009 import EXACT_EIP3009, ExactEip3009, Verdict
from .offer import Offer, evm_address

DEFAULT_MECHANISMS: tuple[Mechanism[Verdict], ...] = (EXACT_EIP3009,)


def default_mechanisms() -> Mechanisms[Verdict]:
    """A new registry of the mechanisms x402sim ships."""
    return Mechanisms(DEFAULT_MECHANISMS)


__all__ = [
    "DEFAULT_MECHANISMS",
    "DEFAULT_PAYMENT_FLOW",
    "DEFAULT_TRANSFER_METHOD",
    "EXACT_EIP3009",
    "PAYMENT_FLOWS",
    "ExactEip3009",
    "Mechanism",
    "Mechanisms",
    "Offer",
    "Verdict",
    "VerdictLike",
    "VerdictT",
    "default_mechanisms",
    "evm_address",
    "family_of",
    "ledger_refusal",
    "payment_flow_problem",
    "prefers_authorization",
    "transfer_method_of",
]
