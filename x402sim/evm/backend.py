"""The one chain interface: what a chain backend provides, the settings they share, and their registry.

The facilitator role, the mechanisms and every world reach a chain only through ``Chain``: reads
(code, calls, token views), the state prediction verification uses, submission, receipts, mining
and time. Three backends provide it: ``LocalChain`` (py-evm), ``LedgerChain`` (the token's rules in
Python, for scale) and ``RpcChain`` (any node behind JSON-RPC).

Rules:

* A world never asks which backend it holds: what differs is said by the interface itself.
  ``remote`` is True when every call is a blocking round trip to a node that keeps its own time
  (run calls off an event loop, ask the node for the time); ``token_state`` is None where the
  backend cannot predict a call from storage (verification then simulates).
* A backend signals every failure of its own (a refused transaction, a node that did not answer)
  with ``ChainError``; a reverted call is a value (``CallResult``), never an error.
* ``BACKENDS`` names the backends a scenario can build from a ``ChainConfig``; the scenario schema
  takes its choices from it. A new backend is one entry here and must pass
  ``tests/evm/test_backends.py``, the conformance test of this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .chain import Block, CallResult, ChainConfig, LocalChain, Receipt
from .ledger import LedgerChain
from .state_verify import TokenStateView


class ChainReads(Protocol):
    """What verification reads: code, calls at a time, the token's views, and its storage view."""

    @property
    def chain_id(self) -> int: ...
    @property
    def network(self) -> str: ...
    def code(self, address: str) -> bytes: ...
    def call(
        self, to: str, data: bytes, *, sender: str = ..., timestamp: int | None = None
    ) -> CallResult: ...
    def eth_balance(self, address: str) -> int: ...
    def pending_nonce(self, address: str) -> int: ...
    def balance_of(self, address: str, token: str | None = None) -> int: ...
    def total_supply(self, token: str | None = None) -> int: ...
    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool: ...
    def name_of(self, token: str | None = None) -> str: ...
    def version_of(self, token: str | None = None) -> str: ...
    def token_state(self, asset: str) -> TokenStateView | None: ...


class Chain(ChainReads, Protocol):
    """A chain a facilitator settles on: ``ChainReads``, plus fees, its own transaction nonce,
    submission, receipts, mining (a no-op on a node that mines by itself) and the chain's time."""

    @property
    def remote(self) -> bool: ...
    @property
    def base_fee(self) -> int: ...
    @property
    def now(self) -> int: ...
    @property
    def block_number(self) -> int: ...
    def send_raw_transaction(self, raw: bytes) -> bytes: ...
    def send_bundle(self, raws: list[bytes]) -> list[bytes]: ...
    def receipt(self, tx_hash: bytes) -> Receipt | None: ...
    def mine(self) -> Block | None: ...


def _evm(config: ChainConfig, **options: Any) -> LocalChain:
    return LocalChain(**config.arguments(), **options)


def _ledger(config: ChainConfig, **options: Any) -> LedgerChain:
    return LedgerChain(**config.arguments(), **options)


# name -> (what it is, how it is built from a ChainConfig and backend-specific options)
BACKENDS: dict[str, tuple[str, Callable[..., Chain]]] = {
    "evm": ("py-evm runs the token", _evm),
    "ledger": ("its rules in Python, for scale", _ledger),
}


def make_chain(backend: str, config: ChainConfig, **options: Any) -> Chain:
    """A new chain of ``backend`` (a key of ``BACKENDS``) built from ``config``."""
    try:
        _, build = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown chain backend {backend!r}: one of {', '.join(BACKENDS)}") from None
    return build(config, **options)


__all__ = ["BACKENDS", "Chain", "ChainConfig", "ChainReads", "make_chain"]
