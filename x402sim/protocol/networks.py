"""Network names: CAIP-2 identifiers (v2) and the named networks of x402 v1.

Job: parse and build CAIP-2 strings (``namespace:reference``), extract EVM chain ids from ``eip155:<id>``, and
translate between v1 names (``base``, ``base-sepolia``, ...) and CAIP-2.

Rules:
- Pure functions and constant tables; bad input raises :class:`ProtocolError`.
- An ``eip155`` reference is a decimal chain id > 0 without leading zeros, so each chain has one spelling.
- v1 can only name the networks in :data:`V1_NETWORKS`; a local chain has no v1 name.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from .errors import ProtocolError

__all__ = [
    "SOLANA_DEVNET",
    "SOLANA_MAINNET",
    "V1_EVM_CHAIN_IDS",
    "V1_NETWORKS",
    "caip2_for_chain",
    "caip2_problem",
    "caip2_to_v1",
    "evm_chain_id",
    "parse_caip2",
    "v1_to_caip2",
]

_CAIP2 = re.compile(r"([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32})")
_CHAIN_ID = re.compile(r"[1-9][0-9]*")

# Solana CAIP-2 references are the first 32 characters of the genesis hash.
SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOLANA_DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"

V1_EVM_CHAIN_IDS: MappingProxyType[str, int] = MappingProxyType(
    {
        "base": 8453,
        "base-sepolia": 84532,
        "avalanche": 43114,
        "avalanche-fuji": 43113,
        "polygon": 137,
        "polygon-amoy": 80002,
        "sei": 1329,
        "sei-testnet": 1328,
        "iotex": 4689,
        "peaq": 3338,
        "abstract": 2741,
        "abstract-testnet": 11124,
    }
)

#: Every v1 network name and its CAIP-2 equivalent.
V1_NETWORKS: MappingProxyType[str, str] = MappingProxyType(
    {
        **{name: f"eip155:{chain_id}" for name, chain_id in V1_EVM_CHAIN_IDS.items()},
        "solana": SOLANA_MAINNET,
        "solana-devnet": SOLANA_DEVNET,
    }
)
_V1_BY_CAIP2 = {caip2: name for name, caip2 in V1_NETWORKS.items()}


def caip2_problem(network: object) -> str | None:
    """Why ``network`` is not an acceptable CAIP-2 identifier, or None when it is."""
    if not isinstance(network, str):
        return "expected a CAIP-2 string such as eip155:8453"
    match = _CAIP2.fullmatch(network)
    if match is None:
        return "not a CAIP-2 network identifier (namespace:reference)"
    if match.group(1) == "eip155" and not _CHAIN_ID.fullmatch(match.group(2)):
        return "eip155 reference must be a decimal chain id without leading zeros"
    return None


def parse_caip2(network: str, where: str = "network") -> tuple[str, str]:
    """Split a CAIP-2 identifier into ``(namespace, reference)``."""
    problem = caip2_problem(network)
    if problem is not None:
        raise ProtocolError(where, problem)
    namespace, reference = network.split(":", 1)
    return namespace, reference


def evm_chain_id(network: str, where: str = "network") -> int:
    """The chain id of an ``eip155:<id>`` network."""
    namespace, reference = parse_caip2(network, where)
    if namespace != "eip155":
        raise ProtocolError(where, f"not an EVM network (namespace {namespace!r}, expected 'eip155')")
    return int(reference)


def caip2_for_chain(chain_id: int) -> str:
    """The CAIP-2 identifier ``eip155:<chain_id>`` of an EVM chain."""
    if type(chain_id) is not int or chain_id <= 0 or len(str(chain_id)) > 32:
        raise ProtocolError("chainId", "expected a positive integer chain id")
    return f"eip155:{chain_id}"


def v1_to_caip2(name: str) -> str:
    """The CAIP-2 identifier of a v1 network name."""
    try:
        return V1_NETWORKS[name]
    except (KeyError, TypeError):
        raise ProtocolError("network", f"unknown v1 network {name!r}") from None


def caip2_to_v1(network: str) -> str | None:
    """The v1 name of a CAIP-2 network, or None when v1 cannot name it."""
    return _V1_BY_CAIP2.get(network) if isinstance(network, str) else None
