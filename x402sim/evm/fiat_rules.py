"""The project's EIP-3009 tokens (``contracts/usdc.vy``, ``pyusd.vy``) as Python rules over storage.

One implementation of the contracts' functions, for two callers:

* ``state_verify`` predicts a settlement from the py-evm storage of the latest block (nothing kept);
* the ledger backend (``ledger``) executes transactions with it and keeps what they write.

Rules of this module:

* The contract's checks, in its order, with its revert strings. Each function here follows the
  Vyper function of the same name line by line; ``pyusd.vy`` differs only where a used nonce
  logs ``AuthorizationAlreadyUsed`` and returns instead of reverting.
* Storage goes through a ``Frame``: the writes of one transaction over a ``Store``, with the gas
  the accesses cost (EIP-2929 cold and warm access, EIP-2200 / EIP-3529 ``SSTORE`` pricing and
  refunds, plus the two gas a ``v`` of 28 costs). Gas that does not depend on storage (opcodes,
  memory, the precompile, logs) is a constant per function and exit point, calibrated on py-evm
  (``ledger.EXECUTION_GAS``).
* Signers are recovered with the ``recover`` function the caller gives (libsecp256k1 through
  coincurve in both callers): the signature is really checked, every time a rule needs it.
* Pure: no clock (the block timestamp is an argument), no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from .eip712 import (
    RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    SECP256K1_HALF_N,
    TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
)
from .hashing import keccak
from .token import AUTHORIZATION_ALREADY_USED_TOPIC, AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC

NOT_YET_VALID = "FiatTokenV2: authorization is not yet valid"
EXPIRED = "FiatTokenV2: authorization is expired"
USED_OR_CANCELED = "FiatTokenV2: authorization is used or canceled"
RECEIVE_NOT_PAYEE = "FiatTokenV2: caller must be the payee"
INVALID_S = "ECRecover: invalid signature 's' value"
INVALID_V = "ECRecover: invalid signature 'v' value"
NO_SIGNER = "ECRecover: invalid signature"
WRONG_SIGNER = "FiatTokenV2: invalid signature"
FROM_ZERO = "ERC20: transfer from the zero address"
TO_ZERO = "ERC20: transfer to the zero address"
EXCEEDS_BALANCE = "ERC20: transfer amount exceeds balance"
NOT_MINTER = "FiatToken: caller is not a minter"
MINT_TO_ZERO = "FiatToken: mint to the zero address"
MINT_ZERO = "FiatToken: mint amount not greater than 0"
# Vyper's checked arithmetic reverts with no data, which the chains report like this.
BARE_REVERT = "execution reverted"

UINT256_MAX = 2**256 - 1
ZERO = b"\x00" * 20

AUTHORIZATION_CANCELED_TOPIC = keccak(b"AuthorizationCanceled(address,bytes32)")
CANCEL_AUTHORIZATION_TYPEHASH = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")

# Storage keys: balances[address], authorization state[address][nonce], totalSupply.
SUPPLY = b"s"


def balance_key(address: bytes) -> bytes:
    return b"b" + address


def authorization_key(authorizer: bytes, nonce: bytes) -> bytes:
    return b"a" + authorizer + nonce


# EIP-2929 / EIP-2200 / EIP-3529 storage gas (Berlin and later).
COLD_SLOAD = 2_100
WARM_READ = 100
SSTORE_SET = 20_000
SSTORE_RESET = 2_900  # 5,000 less the cold-access charge
SSTORE_CLEARS_REFUND = 4_800
# The contracts' ``v == 27 or v == 28`` short-circuits: a v of 28 runs the second comparison too.
V_28_EXTRA = 2


class Store(Protocol):
    """What the rules read: a storage word by key (0 when never written)."""

    def get(self, key: bytes) -> int: ...


@dataclass
class Frame:
    """One call's view of storage: reads through to ``store``, keeps its own writes and logs, and
    counts the storage gas and refund those accesses cost."""

    store: Store
    writes: dict[bytes, int] = field(default_factory=dict)
    warm: set[bytes] = field(default_factory=set)
    # (emitter, topics, data); the emitter is None for the token, else the contract's 20 bytes
    logs: list[tuple[bytes | None, tuple[bytes, ...], bytes]] = field(default_factory=list)
    gas: int = 0
    refund: int = 0
    emitter: bytes | None = None  # the contract whose code runs now (None: the token)

    def touch(self, key: bytes) -> None:
        """Charge reading ``key`` (cold the first time, warm after)."""
        if key in self.warm:
            self.gas += WARM_READ
        else:
            self.warm.add(key)
            self.gas += COLD_SLOAD

    def load(self, key: bytes) -> int:
        self.touch(key)
        value = self.writes.get(key)
        return self.store.get(key) if value is None else value

    def save(self, key: bytes, new: int) -> None:
        if key not in self.warm:
            self.warm.add(key)
            self.gas += COLD_SLOAD
        original = self.store.get(key)
        current = self.writes.get(key, original)
        if current == new:
            self.gas += WARM_READ
        elif original == current:
            self.gas += SSTORE_SET if original == 0 else SSTORE_RESET
            if new == 0:
                self.refund += SSTORE_CLEARS_REFUND
        else:
            self.gas += WARM_READ
            if original != 0:
                if current == 0:
                    self.refund -= SSTORE_CLEARS_REFUND
                elif new == 0:
                    self.refund += SSTORE_CLEARS_REFUND
            if original == new:
                self.refund += (SSTORE_SET if original == 0 else SSTORE_RESET) - WARM_READ
        self.writes[key] = new

    def log(self, *topics: bytes, data: bytes = b"") -> None:
        self.logs.append((self.emitter, topics, data))


@dataclass(frozen=True)
class Token:
    """What a token's rules need to know about the deployed contract."""

    variant: str  # "usdc" or "pyusd"
    domain_separator: bytes
    minter: bytes

    @property
    def silent_on_used_nonce(self) -> bool:
        return self.variant == "pyusd"


# A recover function: (digest, v, r, s) -> the signer's 20 bytes, or None when none is recovered.
Recover = Callable[[bytes, int, bytes, bytes], "bytes | None"]


def _word(address: bytes) -> bytes:
    return address.rjust(32, b"\x00")


def transfer_with_authorization(
    frame: Frame,
    token: Token,
    timestamp: int,
    from_: bytes,
    to: bytes,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    v: int,
    r: bytes,
    s: bytes,
    recover: Recover,
) -> tuple[str | None, str]:
    """``transferWithAuthorization``: (revert reason or None, exit point)."""
    return _authorized_move(
        frame, token, TRANSFER_WITH_AUTHORIZATION_TYPEHASH, "", "transfer_with_authorization",
        timestamp, from_, to, value, valid_after, valid_before, nonce, v, r, s, recover,
    )  # fmt: skip


def receive_with_authorization(
    frame: Frame,
    token: Token,
    timestamp: int,
    caller: bytes,
    from_: bytes,
    to: bytes,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    v: int,
    r: bytes,
    s: bytes,
    recover: Recover,
) -> tuple[str | None, str]:
    """``receiveWithAuthorization`` called by ``caller``, who must be the payee: exit points as
    ``transferWithAuthorization``'s, prefixed ``receive:``."""
    if to != caller:
        return RECEIVE_NOT_PAYEE, "receive:not_payee"
    return _authorized_move(
        frame, token, RECEIVE_WITH_AUTHORIZATION_TYPEHASH, "receive:", "receive",
        timestamp, from_, to, value, valid_after, valid_before, nonce, v, r, s, recover,
    )  # fmt: skip


def _authorized_move(
    frame: Frame,
    token: Token,
    typehash: bytes,
    prefix: str,
    moved: str,
    timestamp: int,
    from_: bytes,
    to: bytes,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    v: int,
    r: bytes,
    s: bytes,
    recover: Recover,
) -> tuple[str | None, str]:
    """An EIP-3009 authorization of ``typehash`` checked and spent, then ``value`` moved (exit
    point ``moved``); the other exit points are named with ``prefix``."""
    if not timestamp > valid_after:
        return NOT_YET_VALID, f"{prefix}not_yet_valid"
    if not timestamp < valid_before:
        return EXPIRED, f"{prefix}expired"
    used_key = authorization_key(from_, nonce)
    if frame.load(used_key):
        if token.silent_on_used_nonce:
            frame.log(AUTHORIZATION_ALREADY_USED_TOPIC, _word(from_), nonce)
            return None, f"{prefix}already_used"
        return USED_OR_CANCELED, f"{prefix}used"
    struct = (
        typehash
        + _word(from_)
        + _word(to)
        + value.to_bytes(32, "big")
        + valid_after.to_bytes(32, "big")
        + valid_before.to_bytes(32, "big")
        + nonce
    )
    reason = check_signer(frame, token, struct, v, r, s, from_, recover, prefix=prefix)
    if reason is not None:
        return reason
    frame.save(used_key, 1)
    frame.log(AUTHORIZATION_USED_TOPIC, _word(from_), nonce)
    return move(frame, from_, to, value, moved)


def cancel_authorization(
    frame: Frame, token: Token, authorizer: bytes, nonce: bytes, v: int, r: bytes, s: bytes, recover: Recover
) -> tuple[str | None, str]:
    """``cancelAuthorization``: (revert reason or None, exit point)."""
    used_key = authorization_key(authorizer, nonce)
    if frame.load(used_key):
        if token.silent_on_used_nonce:
            frame.log(AUTHORIZATION_ALREADY_USED_TOPIC, _word(authorizer), nonce)
            return None, "cancel_already_used"
        return USED_OR_CANCELED, "cancel_used"
    struct = CANCEL_AUTHORIZATION_TYPEHASH + _word(authorizer) + nonce
    reason = check_signer(frame, token, struct, v, r, s, authorizer, recover, prefix="cancel_")
    if reason is not None:
        return reason
    frame.save(used_key, 1)
    frame.log(AUTHORIZATION_CANCELED_TOPIC, _word(authorizer), nonce)
    return None, "cancel"


def transfer(frame: Frame, sender: bytes, to: bytes, value: int) -> tuple[str | None, str]:
    """ERC-20 ``transfer`` from ``sender``."""
    return move(frame, sender, to, value, "transfer")


def mint(frame: Frame, token: Token, sender: bytes, to: bytes, amount: int) -> tuple[str | None, str]:
    """``mint``, by the minter only."""
    frame.touch(b"m")  # the minter's storage word
    if sender != token.minter:
        return NOT_MINTER, "mint_not_minter"
    if to == ZERO:
        return MINT_TO_ZERO, "mint_to_zero"
    if amount <= 0:
        return MINT_ZERO, "mint_zero"
    supply = frame.load(SUPPLY) + amount
    if supply > UINT256_MAX:
        return BARE_REVERT, "mint_overflow"
    frame.save(SUPPLY, supply)
    key = balance_key(to)
    balance = frame.load(key) + amount
    if balance > UINT256_MAX:
        return BARE_REVERT, "mint_overflow"
    frame.save(key, balance)
    frame.log(TRANSFER_TOPIC, _word(ZERO), _word(to), data=amount.to_bytes(32, "big"))
    return None, "mint"


def check_signer(
    frame: Frame,
    token: Token,
    struct: bytes,
    v: int,
    r: bytes,
    s: bytes,
    expected: bytes,
    recover: Recover,
    prefix: str = "",
) -> tuple[str, str] | None:
    """The token's ``_recover`` compared with ``expected``: None, or (revert reason, exit point)."""
    digest = _digest(token.domain_separator, struct)
    if int.from_bytes(s, "big") > SECP256K1_HALF_N:
        return INVALID_S, prefix + "invalid_s"
    if v not in (27, 28):
        return INVALID_V, prefix + "invalid_v"
    if v == 28:
        frame.gas += V_28_EXTRA
    signer = recover(digest, v, r, s)
    if signer is None:
        return NO_SIGNER, prefix + "no_signer"
    if signer != expected:
        return WRONG_SIGNER, prefix + "wrong_signer"
    return None


@lru_cache(maxsize=1 << 14)
def _digest(domain_separator: bytes, struct: bytes) -> bytes:
    """EIP-712 digest of an encoded struct (memoised: one authorization is checked at verify, again
    before settling, and when mined)."""
    return keccak(b"\x19\x01" + domain_separator + keccak(struct))


def move(frame: Frame, from_: bytes, to: bytes, value: int, path: str) -> tuple[str | None, str]:
    """The token's ``_transfer``: (revert reason or None, ``path`` or its failing exit point)."""
    if from_ == ZERO:
        return FROM_ZERO, path + ":from_zero"
    if to == ZERO:
        return TO_ZERO, path + ":to_zero"
    from_key = balance_key(from_)
    balance = frame.load(from_key)
    if value > balance:
        return EXCEEDS_BALANCE, path + ":exceeds_balance"
    frame.save(from_key, balance - value)
    to_key = balance_key(to)
    received = frame.load(to_key) + value
    if received > UINT256_MAX:
        return BARE_REVERT, path + ":overflow"
    frame.save(to_key, received)
    frame.log(TRANSFER_TOPIC, _word(from_), _word(to), data=value.to_bytes(32, "big"))
    return None, path
