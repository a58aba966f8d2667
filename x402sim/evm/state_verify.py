"""Predict ``transferWithAuthorization`` on the embedded chain from token storage, without running it.

Verification used to simulate the call on py-evm and then call views to diagnose a failure, so each
payment ran on the EVM at verify, again at settle, and once more when mined. For the project's own
tokens on a ``LocalChain`` the outcome is a function of a few storage words, the signature and the
time: ``TokenState`` reads those words from the state of the latest block and replays the checks of
the contract in Python.

Rules of this module:

* Only code we know. ``evm_token_state`` gives a ``TokenState`` for an asset whose deployed code is
  one of the project's token variants (``LocalChain.token_state`` calls it with
  ``LocalChain.token_variant``); for other code it gives None and the caller simulates. Every chain
  backend answers ``token_state(asset)`` (``evm.backend.Chain``): the ledger with its own view,
  ``RpcChain`` with None.
* This module knows no chain class: it reads a py-evm chain through ``EvmStateSource``.
* The contract's checks, its order, its revert strings: ``predict`` runs the rules of
  ``fiat_rules`` (shared with the ledger backend) over the storage read here; the test suite proves
  by differential testing that predictions, and verdicts built on them, equal the simulation's.
* Storage is read directly: slots are constants from Vyper 0.4.3's storage layout (a test compares
  them with the compiler's), never found by executing code.
* Reads only: nothing here writes state or reads a clock; time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from eth_utils import to_canonical_address

from . import fiat_rules as fr
from .contracts import PYUSD, USDC, load_artifact
from .eip712 import Authorization, canonical, domain_separator, recover_signer
from .hashing import keccak

if TYPE_CHECKING:
    from eth.abc import StateAPI
    from eth_typing import Address


@dataclass(frozen=True)
class Layout:
    """Storage slots of a token variant's state variables, as Vyper 0.4.3 lays them out."""

    name: int  # String: length word, then the bytes
    version: int
    balances: int  # HashMap[address, uint256]
    authorization_states: int  # HashMap[address, HashMap[bytes32, bool]]

    total_supply: int


# pyusd.vy keeps usdc.vy's state variables in the same order, so the same slots.
_FIAT_TOKEN = Layout(name=0, version=7, balances=9, authorization_states=11, total_supply=5)
LAYOUTS: dict[str, Layout] = {USDC: _FIAT_TOKEN, PYUSD: _FIAT_TOKEN}


@dataclass(frozen=True)
class Prediction:
    """What the call would do: succeed, or revert with ``revert_reason`` (the two fields of
    ``CallResult`` that verification looks at)."""

    success: bool
    revert_reason: str | None = None


# (asset, code hash) -> (name, version), or None when the code does not fit them. Name and version
# are written by the constructor only and their hashes are inside the code, so they are constant.
_NAMES: dict[tuple[bytes, bytes], tuple[str, str] | None] = {}
_NAMES_LIMIT = 4096


class EvmStateSource(Protocol):
    """What a storage view reads of its py-evm chain (``chain.LocalChain``): the latest block's
    state, the chain id and the latest block's time."""

    @property
    def chain_id(self) -> int: ...
    @property
    def latest_timestamp(self) -> int: ...
    def latest_state(self) -> StateAPI: ...
    def latest_reads(self) -> dict[Any, Any]: ...


class TokenStateView(Protocol):
    """A token's state that predicts ``transferWithAuthorization`` and answers the views a failure is
    diagnosed from: ``TokenState`` here, ``ledger.LedgerTokenState`` for the ledger backend."""

    def balance_of(self, address: str, token: str | None = None) -> int: ...
    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool: ...
    def name_of(self, token: str | None = None) -> str: ...
    def version_of(self, token: str | None = None) -> str: ...
    def predict(self, auth: Authorization, v: int, r: bytes, s: bytes, now: int) -> Prediction: ...


def evm_token_state(chain: EvmStateSource, asset: str, variant: str | None) -> TokenState | None:
    """The storage of ``asset`` in the latest block of a py-evm ``chain`` (``LocalChain``) when its
    code is a known token ``variant``; None means: simulate instead."""
    if not variant or (layout := LAYOUTS.get(variant)) is None:
        return None
    state = chain.latest_state()  # cached by LocalChain until the head moves
    address = to_canonical_address(asset)
    key = (address, state.get_code_hash(address))
    if key not in _NAMES:
        if len(_NAMES) >= _NAMES_LIMIT:
            _NAMES.clear()
        _NAMES[key] = _names(state, address, variant, layout)
    names = _NAMES[key]
    if names is None:
        return None
    return TokenState(chain, state, asset, address, variant, layout, *names, chain.latest_reads())


def _names(state: StateAPI, address: Address, variant: str, layout: Layout) -> tuple[str, str] | None:
    """Name and version in storage, if the domain the code signs with is made of them: the code
    must be the variant's runtime code followed by exactly the two immutables, keccak(name) and
    keccak(version). Code placed some other way (a genesis allocation, say) is simulated."""
    name, version = _read_string(state, address, layout.name), _read_string(state, address, layout.version)
    code = state.get_code(address)
    if code != load_artifact(variant).runtime_bytecode + keccak(name.encode()) + keccak(version.encode()):
        return None
    return name, version


@dataclass(frozen=True)
class TokenState:
    """One known token's storage in one state. Its views are named like ``TokenReads``' so that
    verification diagnoses from it as it would from the chain; their ``token`` argument, kept for
    that, must be this token (or None)."""

    chain: EvmStateSource  # the chain whose state this is
    state: StateAPI  # py-evm state of the latest block
    asset: str
    address: Address
    variant: str
    layout: Layout
    name: str
    version: str
    words: dict[Any, Any] = field(default_factory=dict)  # read so far in this state, by (address, slot)

    def _word(self, slot: int) -> int:
        key = (self.address, slot)
        word = self.words.get(key)
        if word is None:
            word = self.words[key] = self.state.get_storage(self.address, slot)
        return word

    def balance_of(self, address: str, token: str | None = None) -> int:
        return self._word(_map_slot(self.layout.balances, _address_word(address)))

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        outer = _map_slot(self.layout.authorization_states, _address_word(authorizer))
        return self._word(_map_slot(outer, nonce)) != 0

    def name_of(self, token: str | None = None) -> str:
        return self.name

    def version_of(self, token: str | None = None) -> str:
        return self.version

    def get(self, key: bytes) -> int:
        """A storage word by ``fiat_rules`` key: what the rules read through a ``Frame``."""
        if key == fr.SUPPLY:
            return self._word(self.layout.total_supply)
        if key[:1] == b"b":
            return self._word(_map_slot(self.layout.balances, key[1:21].rjust(32, b"\x00")))
        outer = _map_slot(self.layout.authorization_states, key[1:21].rjust(32, b"\x00"))
        return self._word(_map_slot(outer, key[21:]))

    def predict(self, auth: Authorization, v: int, r: bytes, s: bytes, now: int) -> Prediction:
        """``transferWithAuthorization(auth, v, r, s)`` in the next block, stamped as
        ``LocalChain.call`` stamps it: ``max(now, latest block timestamp)``."""
        return predict(
            self,
            self.variant,
            self.name,
            self.version,
            self.chain.chain_id,
            self.asset,
            auth,
            v,
            r,
            s,
            max(now, self.chain.latest_timestamp),
        )


def predict(
    store: fr.Store,
    variant: str,
    name: str,
    version: str,
    chain_id: int,
    asset: str,
    auth: Authorization,
    v: int,
    r: bytes,
    s: bytes,
    timestamp: int,
) -> Prediction:
    """Run ``fiat_rules.transfer_with_authorization`` over ``store`` at ``timestamp``, keeping nothing."""
    rules = fr.Token(variant, domain_separator(name, version, chain_id, asset.lower()), b"")
    reason, _ = fr.transfer_with_authorization(
        fr.Frame(store),
        rules,
        timestamp,
        canonical(auth.from_),
        canonical(auth.to),
        auth.value,
        auth.valid_after,
        auth.valid_before,
        auth.nonce,
        v,
        r,
        s,
        recover_signer,
    )
    return Prediction(reason is None, reason)


def _read_string(state: StateAPI, address: Address, slot: int) -> str:
    """A Vyper ``String`` in storage: its length at ``slot``, its bytes from ``slot + 1`` on."""
    length = state.get_storage(address, slot)
    words = b"".join(
        state.get_storage(address, slot + 1 + i).to_bytes(32, "big") for i in range((length + 31) // 32)
    )
    return words[:length].decode("utf-8")


def _map_slot(slot: int, key: bytes) -> int:
    """Where Vyper keeps ``map[key]`` for a HashMap at ``slot``: keccak256(slot ++ key)."""
    return int.from_bytes(keccak(slot.to_bytes(32, "big") + key), "big")


def _address_word(address: str) -> bytes:
    return canonical(address).rjust(32, b"\x00")
