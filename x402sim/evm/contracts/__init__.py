"""Compiled artifacts of the simulator's Vyper contracts.

The `.vy` sources and their compiled `.json` artifacts are committed side by side,
so running the simulator needs no compiler: `load_artifact` only reads JSON.
Vyper is a dev-only dependency, used by `compile_artifact` to rebuild and check
the artifacts; `python -m x402sim.evm.contracts` rewrites the JSON files.

This package imports nothing else from `x402sim`: it sits at the bottom of
`x402sim.evm`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "BATCH_SETTLEMENT",
    "BATCH_SETTLEMENT_ADDRESS",
    "COMPILER",
    "ERC3009_DEPOSIT_COLLECTOR",
    "ERC3009_DEPOSIT_COLLECTOR_ADDRESS",
    "EVM_VERSION",
    "EXACT_PERMIT2_PROXY",
    "EXACT_PERMIT2_PROXY_ADDRESS",
    "IDENTITY_REGISTRY",
    "IDENTITY_REGISTRY_ADDRESS",
    "MULTICALL3",
    "MULTICALL3_ADDRESS",
    "NAMES",
    "PERMIT2",
    "PERMIT2_ADDRESS",
    "PERMIT2_DEPOSIT_COLLECTOR",
    "PERMIT2_DEPOSIT_COLLECTOR_ADDRESS",
    "PYUSD",
    "REPUTATION_REGISTRY",
    "REPUTATION_REGISTRY_ADDRESS",
    "TOKENS",
    "UPTO_PERMIT2_PROXY",
    "UPTO_PERMIT2_PROXY_ADDRESS",
    "USDC",
    "Artifact",
    "artifact_json",
    "compile_artifact",
    "load_artifact",
    "source_sha256",
    "write_artifacts",
]

USDC = "usdc"
PYUSD = "pyusd"  # usdc.vy, except that a used or canceled nonce is a logged no-op (as PayPal USD)
MULTICALL3 = "multicall3"
IDENTITY_REGISTRY = "identity_registry"  # ERC-8004 Identity Registry (an ERC-721 of agents)
REPUTATION_REGISTRY = "reputation_registry"  # ERC-8004 Reputation Registry
PERMIT2 = "permit2"  # Uniswap Permit2's signature transfers
EXACT_PERMIT2_PROXY = "x402_exact_permit2_proxy"  # x402ExactPermit2Proxy
UPTO_PERMIT2_PROXY = "x402_upto_permit2_proxy"  # x402UptoPermit2Proxy
BATCH_SETTLEMENT = "batch_settlement"  # x402BatchSettlement (payment channels)
ERC3009_DEPOSIT_COLLECTOR = "erc3009_deposit_collector"  # its EIP-3009 deposit collector
PERMIT2_DEPOSIT_COLLECTOR = "permit2_deposit_collector"  # its Permit2 deposit collector
NAMES = (
    USDC,
    PYUSD,
    MULTICALL3,
    IDENTITY_REGISTRY,
    REPUTATION_REGISTRY,
    PERMIT2,
    EXACT_PERMIT2_PROXY,
    UPTO_PERMIT2_PROXY,
    BATCH_SETTLEMENT,
    ERC3009_DEPOSIT_COLLECTOR,
    PERMIT2_DEPOSIT_COLLECTOR,
)
TOKENS = (USDC, PYUSD)  # the EIP-3009 token variants a chain can deploy
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
# Where the ERC-8004 team's deployments of the two registries sit on every mainnet they list
# (erc-8004/erc-8004-contracts README; their testnets use another pair).
IDENTITY_REGISTRY_ADDRESS = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
REPUTATION_REGISTRY_ADDRESS = "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63"
# Permit2's CREATE2 address on every EVM chain, and the x402 proxies' (coinbase/x402 deploys
# both with CREATE2 at vanity addresses starting 0x4020; the SDKs name these).
PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PERMIT2_PROXY_ADDRESS = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PERMIT2_PROXY_ADDRESS = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
# The batch-settlement contract and its two deposit collectors (CREATE2, the same on every chain).
BATCH_SETTLEMENT_ADDRESS = "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
ERC3009_DEPOSIT_COLLECTOR_ADDRESS = "0x4020806089470a89826cB9fB1f4059150b550004"
PERMIT2_DEPOSIT_COLLECTOR_ADDRESS = "0x4020425FAf3B746C082C2f942b4E5159887B0005"

COMPILER = "vyper 0.4.3"
# The embedded py-evm chain runs Prague; pinning the target keeps the bytecode
# independent of the compiler's default.
EVM_VERSION = "prague"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI, deployment (init) code and runtime code."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    runtime_bytecode: bytes


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown contract {name!r}; expected one of {', '.join(NAMES)}")


def _source_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.vy").read_text(encoding="utf-8")


def source_sha256(name: str) -> str:
    """SHA-256 (hex) of the contract's `.vy` source, as recorded in its artifact."""
    _check_name(name)
    return hashlib.sha256(_source_text(name).encode("utf-8")).hexdigest()


def _hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Read the committed artifact `<name>.json` (cached; needs no compiler)."""
    _check_name(name)
    data = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    if data.get("compiler") != COMPILER:
        raise ValueError(f"{name}.json was built by {data.get('compiler')!r}, expected {COMPILER!r}")
    return Artifact(
        name=name,
        abi=tuple(data["abi"]),
        bytecode=_hex_to_bytes(data["bytecode"]),
        runtime_bytecode=_hex_to_bytes(data["runtime_bytecode"]),
    )


def _restore_reserved_names(node: Any) -> Any:
    # Vyper rejects `from` and `value` as parameter names, so the sources say
    # `from_` and `value_`; USDC's ABI says `from` and `value`. Parameter names
    # are not part of the encoding, only of name-based decoding by tools.
    if isinstance(node, list):
        return [_restore_reserved_names(item) for item in node]
    if isinstance(node, dict):
        out = {key: _restore_reserved_names(value) for key, value in node.items()}
        if isinstance(out.get("name"), str) and "type" in out and out["name"].endswith("_"):
            out["name"] = out["name"][:-1]
        return out
    return node


def compile_artifact(name: str) -> Artifact:
    """Compile `<name>.vy` with the pinned settings (deterministic; needs vyper)."""
    _check_name(name)
    import vyper  # dev-only dependency, imported only when rebuilding
    from vyper.compiler.settings import OptimizationLevel, Settings

    if f"vyper {vyper.__version__}" != COMPILER:
        raise RuntimeError(f"artifacts are built with {COMPILER}, found vyper {vyper.__version__}")
    out = vyper.compile_code(
        _source_text(name),
        contract_path=f"{name}.vy",
        output_formats=["abi", "bytecode", "bytecode_runtime"],
        settings=Settings(evm_version=EVM_VERSION, optimize=OptimizationLevel.GAS),
    )
    return Artifact(
        name=name,
        abi=tuple(_restore_reserved_names(out["abi"])),
        bytecode=_hex_to_bytes(out["bytecode"]),
        runtime_bytecode=_hex_to_bytes(out["bytecode_runtime"]),
    )


def artifact_json(name: str) -> dict[str, Any]:
    """The JSON document `write_artifacts` stores for `name`, freshly compiled."""
    artifact = compile_artifact(name)
    return {
        "compiler": COMPILER,
        "abi": list(artifact.abi),
        "bytecode": "0x" + artifact.bytecode.hex(),
        "runtime_bytecode": "0x" + artifact.runtime_bytecode.hex(),
        "source_sha256": source_sha256(name),
    }


def write_artifacts(directory: Path | None = None) -> list[Path]:
    """Recompile every contract and write `<name>.json` (next to the sources by default)."""
    target = directory or Path(__file__).parent
    written = []
    for name in NAMES:
        path = target / f"{name}.json"
        path.write_text(json.dumps(artifact_json(name), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    load_artifact.cache_clear()
    return written
