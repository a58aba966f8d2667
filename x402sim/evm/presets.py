"""Network presets: the chain id, token address and EIP-712 domain of a real network, for the embedded chain.

SDK clients and servers with their default configuration pay a network's canonical USDC, signed
with the name and version of their default asset table, and refuse other tokens unless told. A
``LocalChain`` built from a preset (``LocalChain.from_preset``) takes the preset's chain id and
places its token at the canonical address with that domain, so such SDKs run against it unmodified.

The values are those of the official x402 SDKs' default asset tables (Python ``x402`` 2.25,
``mechanisms/evm/default_assets.py``; TypeScript ``@x402/evm`` 2.27, ``src/defaultAssets.ts``),
which agree. ``local`` is the embedded chain as it always was: chain 31337, the token wherever its
deployment put it.

Pure data: this module imports nothing else from ``x402sim``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkPreset:
    """One network: ``token_address`` None means "where the token's deployment puts it"."""

    name: str
    chain_id: int
    token_address: str | None
    token_name: str
    token_version: str

    @property
    def network(self) -> str:
        """The CAIP-2 name, ``eip155:<chain id>``."""
        return f"eip155:{self.chain_id}"


PRESETS: dict[str, NetworkPreset] = {
    p.name: p
    for p in (
        NetworkPreset("local", 31337, None, "USD Coin", "2"),
        NetworkPreset("base", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2"),
        NetworkPreset("base-sepolia", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2"),
    )
}
DEFAULT_PRESET = "local"


def preset(name: str) -> NetworkPreset:
    """The preset called ``name``; ValueError naming the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown network preset {name!r}; expected one of {', '.join(PRESETS)}") from None


def preset_for_network(network: str) -> NetworkPreset | None:
    """The preset of a CAIP-2 network (``eip155:84532``), or None when no preset has that chain.

    ``eip155:31337`` gives ``local``, whose token address is not fixed."""
    return next((p for p in PRESETS.values() if p.network == network), None)


__all__ = ["DEFAULT_PRESET", "PRESETS", "NetworkPreset", "preset", "preset_for_network"]
