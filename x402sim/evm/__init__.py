"""The EVM side: EIP-712/EIP-3009 signing, the contracts, the embedded chain, the exact scheme."""

from .chain import DEFAULT_CHAIN_ID, Block, CallResult, ChainError, LocalChain, Receipt, Snapshot
from .contracts import MULTICALL3_ADDRESS, Artifact, load_artifact
from .eip712 import Authorization, Domain, address_of_key, recover_digest, sign_digest
from .exact import (
    CHECKS,
    Offer,
    Verdict,
    check_offline,
    reason_for_revert,
    sign_authorization,
    verify_on_chain,
)
from .ledger import LedgerChain
from .presets import PRESETS, NetworkPreset, preset, preset_for_network
from .token import Transfer

__all__ = [
    "CHECKS",
    "DEFAULT_CHAIN_ID",
    "MULTICALL3_ADDRESS",
    "PRESETS",
    "Artifact",
    "Authorization",
    "Block",
    "CallResult",
    "ChainError",
    "Domain",
    "LedgerChain",
    "LocalChain",
    "NetworkPreset",
    "Offer",
    "Receipt",
    "Snapshot",
    "Transfer",
    "Verdict",
    "address_of_key",
    "check_offline",
    "load_artifact",
    "preset",
    "preset_for_network",
    "reason_for_revert",
    "recover_digest",
    "sign_authorization",
    "sign_digest",
    "verify_on_chain",
]
