"""The EVM side: EIP-712/EIP-3009 signing, the contracts, the embedded chain and its backends, ERC-8004."""

from .chain import DEFAULT_CHAIN_ID, Block, CallResult, LocalChain, Receipt, Snapshot
from .contracts import MULTICALL3_ADDRESS, Artifact, load_artifact
from .eip712 import Authorization, Domain, address_of_key, recover_digest, sign_digest
from .erc8004 import (
    IDENTITY_REGISTRY_ADDRESS,
    REPUTATION_REGISTRY_ADDRESS,
    Feedback,
    Summary,
    agent_uri,
    agent_wallet,
    append_response,
    get_metadata,
    get_summary,
    give_feedback,
    owner_of,
    read_all_feedback,
    register,
    revoke_feedback,
    set_agent_uri,
    set_agent_wallet,
    set_metadata,
    sign_agent_wallet,
)
from .ledger import LedgerChain
from .presets import PRESETS, NetworkPreset, preset, preset_for_network
from .token import Transfer

__all__ = [
    "DEFAULT_CHAIN_ID",
    "IDENTITY_REGISTRY_ADDRESS",
    "MULTICALL3_ADDRESS",
    "PRESETS",
    "REPUTATION_REGISTRY_ADDRESS",
    "Artifact",
    "Authorization",
    "Block",
    "CallResult",
    "Domain",
    "Feedback",
    "LedgerChain",
    "LocalChain",
    "NetworkPreset",
    "Receipt",
    "Snapshot",
    "Summary",
    "Transfer",
    "address_of_key",
    "agent_uri",
    "agent_wallet",
    "append_response",
    "get_metadata",
    "get_summary",
    "give_feedback",
    "load_artifact",
    "owner_of",
    "preset",
    "preset_for_network",
    "read_all_feedback",
    "recover_digest",
    "register",
    "revoke_feedback",
    "set_agent_uri",
    "set_agent_wallet",
    "set_metadata",
    "sign_agent_wallet",
    "sign_digest",
]
