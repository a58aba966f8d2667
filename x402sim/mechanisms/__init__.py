"""Payment mechanisms as plug-ins: one module per (scheme, network family, asset transfer method).

``base`` says what a mechanism provides and holds the ``Mechanisms`` registry the roles look
mechanisms up in; ``verdict`` holds what every mechanism's verification makes and is given;
``exact_eip3009`` is ``exact`` by EIP-3009; ``permit2`` is ``exact`` with Permit2 and ``upto``;
``sponsoring`` holds the two gas-sponsoring extensions of Permit2 payments; ``batch_settlement`` is
the facilitator's part of ``batch-settlement`` (payment channels; its wire objects are in
``batch_wire``); ``offer`` is the view of a requirement that EVM mechanisms share.
``default_mechanisms()`` is what a role speaks when not told otherwise: all of them.
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
from .batch_settlement import BATCH_EIP3009, BATCH_PERMIT2, BatchSettlement
from .exact_eip3009 import EXACT_EIP3009, ExactEip3009
from .offer import Offer, evm_address
from .permit2 import EXACT_PERMIT2, UPTO_PERMIT2, Permit2Mechanism
from .sponsoring import EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, SPONSORING_EXTENSIONS
from .verdict import Judging, Step, Verdict

DEFAULT_MECHANISMS: tuple[Mechanism[Verdict], ...] = (
    EXACT_EIP3009,
    EXACT_PERMIT2,
    UPTO_PERMIT2,
    BATCH_EIP3009,
    BATCH_PERMIT2,
)


def default_mechanisms() -> Mechanisms[Verdict]:
    """A new registry of the mechanisms x402sim ships."""
    return Mechanisms(DEFAULT_MECHANISMS)


__all__ = [
    "BATCH_EIP3009",
    "BATCH_PERMIT2",
    "DEFAULT_MECHANISMS",
    "DEFAULT_PAYMENT_FLOW",
    "DEFAULT_TRANSFER_METHOD",
    "EIP2612_GAS_SPONSORING",
    "ERC20_APPROVAL_GAS_SPONSORING",
    "EXACT_EIP3009",
    "EXACT_PERMIT2",
    "PAYMENT_FLOWS",
    "SPONSORING_EXTENSIONS",
    "UPTO_PERMIT2",
    "BatchSettlement",
    "ExactEip3009",
    "Judging",
    "Mechanism",
    "Mechanisms",
    "Offer",
    "Permit2Mechanism",
    "Step",
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
