"""Permit2, the x402 Permit2 proxies and the tokens' allowance half as Python rules over storage.

The ledger backend (``ledger``) runs these beside ``fiat_rules``: the token's ERC-20 allowance and
EIP-2612 functions (``approve``, ``transferFrom``, ``permit``, read through ``allowance`` and
``nonces``), Permit2's signature transfers (``contracts/permit2.vy``: ``permitWitnessTransferFrom``
as the proxies call it, ``invalidateUnorderedNonces``, the ``nonceBitmap``), and both proxies'
``settle`` and ``settleWithPermit`` (``x402_exact_permit2_proxy.vy``, ``x402_upto_permit2_proxy.vy``).

Rules of this module (those of ``fiat_rules``, which it extends):

* Each function follows the Vyper function of the same name line by line: its checks in its order,
  its revert strings, its custom errors written as ``token.revert_reason`` names them
  (``"InvalidNonce()"``, ``"SignatureExpired(1700000000)"``), its events.
* Storage goes through the caller's ``fiat_rules.Frame``; every contract's words live in one key
  space, told apart by a one-byte prefix. A call that the code catches (the proxies' EIP-2612
  ``permit``, which may fail without failing the settlement) runs on the frame and, when it
  reverts, gives back its writes, logs, refunds and warm keys (EIP-2929 rolls access back with a
  reverted call) but not the gas it burnt.
* Gas that does not depend on storage is a constant per exit point (``ledger.EXECUTION_GAS``,
  measured by ``ledger_gas``). An exit point is a path: ``"permit:expired"``, or for a proxy
  ``"exact.settle|InvalidNonce"`` and ``"upto.settleWithPermit|permit:wrong_signer|ok"`` (the
  EIP-2612 outcome, then the settlement's). ``execution_gas`` reads a path from the table; a
  ``settleWithPermit`` path whose settlement did not succeed costs its successful twin plus what
  that failure saves in ``settle`` (the code of the two halves runs one after the other, so the
  table needs the permit outcomes and the settlement outcomes, not their product), the token
  being warm already in the first. One account access depends on
  who sends the transaction: Permit2's ``owner.is_contract`` is warm when the owner is the
  transaction's origin.
* What the code does for inputs the ledger does not model (a token other than the ledger's, an
  owner with code, a signature that is not 65 bytes) is not written here: ``ledger`` refuses such
  transactions before they reach these rules.
* Pure: no clock (the block timestamp is an argument), no I/O; signers come from ``recover``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from . import fiat_rules as fr
from .contracts import EXACT_PERMIT2_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS
from .eip712 import canonical
from .fiat_rules import Frame, Recover
from .hashing import keccak

PERMIT2 = bytes(canonical(PERMIT2_ADDRESS))
EXACT_PROXY = bytes(canonical(EXACT_PERMIT2_PROXY_ADDRESS))
UPTO_PROXY = bytes(canonical(UPTO_PERMIT2_PROXY_ADDRESS))

EXCEEDS_ALLOWANCE = "ERC20: transfer amount exceeds allowance"
APPROVE_TO_ZERO = "ERC20: approve to the zero address"
PERMIT_EXPIRED = "FiatTokenV2: permit is expired"
PERMIT_WRONG_SIGNER = "EIP2612: invalid signature"
TRANSFER_FROM_FAILED = "TRANSFER_FROM_FAILED"

APPROVAL_TOPIC = keccak(b"Approval(address,address,uint256)")
UNORDERED_NONCE_INVALIDATION_TOPIC = keccak(b"UnorderedNonceInvalidation(address,uint256,uint256)")
SETTLED_TOPIC = keccak(b"Settled()")
SETTLED_WITH_PERMIT_TOPIC = keccak(b"SettledWithPermit()")
PERMIT_FAILED_WITH_REASON_TOPIC = keccak(b"EIP2612PermitFailedWithReason(address,address,string)")

PERMIT_TYPEHASH = keccak(
    b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
TOKEN_PERMISSIONS_TYPEHASH = keccak(b"TokenPermissions(address token,uint256 amount)")
WITNESS_TYPEHASH_STUB = (
    b"PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,"
)
EXACT_WITNESS_TYPE_STRING = (
    b"Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
)
UPTO_WITNESS_TYPE_STRING = (
    b"Witness witness)TokenPermissions(address token,uint256 amount)"
    b"Witness(address to,address facilitator,uint256 validAfter)"
)
EXACT_WITNESS_TYPEHASH = keccak(b"Witness(address to,uint256 validAfter)")
UPTO_WITNESS_TYPEHASH = keccak(b"Witness(address to,address facilitator,uint256 validAfter)")
_PERMIT2_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,uint256 chainId,address verifyingContract)")
UPPER_BIT_MASK = (1 << 255) - 1
# EIP-2929: an account's first access in a transaction, and any later one (or the origin's).
COLD_ACCOUNT, WARM_ACCOUNT = 2_600, 100

# (revert reason or None, exit point)
Outcome = tuple[str | None, str]


def allowance_key(owner: bytes, spender: bytes) -> bytes:
    return b"A" + owner + spender


def permit_nonce_key(owner: bytes) -> bytes:
    return b"n" + owner


def bitmap_key(owner: bytes, word: int) -> bytes:
    return b"p" + owner + word.to_bytes(32, "big")


def permit2_domain_separator(chain_id: int) -> bytes:
    return keccak(_PERMIT2_DOMAIN_TYPEHASH + keccak(b"Permit2") + _n(chain_id) + _word(PERMIT2))


@dataclass(frozen=True)
class Context:
    """What the rules need to know about the deployment: the token's rules and address, and
    Permit2's domain separator."""

    token: fr.Token
    token_address: bytes
    permit2_domain: bytes


@dataclass(frozen=True)
class PermitTransferFrom:
    token: bytes
    amount: int
    nonce: int
    deadline: int


@dataclass(frozen=True)
class Settlement:
    """One call of a proxy's ``settle`` or ``settleWithPermit``, decoded. ``amount`` is the upto
    proxy's argument (the exact proxy settles ``permit.amount``); ``facilitator`` is the upto
    witness's (None for exact); ``permit2612`` is the EIP2612Permit (value, deadline, r, s, v)."""

    upto: bool
    permit: PermitTransferFrom
    amount: int
    owner: bytes
    to: bytes
    facilitator: bytes | None
    valid_after: int
    signature: bytes
    permit2612: tuple[int, int, bytes, bytes, int] | None = None

    @property
    def proxy(self) -> bytes:
        return UPTO_PROXY if self.upto else EXACT_PROXY

    @property
    def name(self) -> str:
        return ("upto" if self.upto else "exact") + (
            ".settle" if self.permit2612 is None else ".settleWithPermit"
        )


def _word(address: bytes) -> bytes:
    return address.rjust(32, b"\x00")


def _n(value: int) -> bytes:
    return value.to_bytes(32, "big")


def execution_gas(table: Mapping[str, int], path: str) -> int:
    """The storage-independent gas of exit point ``path`` (see the module docstring)."""
    parts = path.split("|")
    if len(parts) == 3 and parts[2] != "ok":
        name, permit, settled = parts
        plain = name.replace("settleWithPermit", "settle")
        gas = table[f"{name}|{permit}|ok"] + table[f"{plain}|{settled}"] - table[f"{plain}|ok"]
        if not settled.startswith("transfer_from"):
            # A plain settle that stops before Permit2 calls the token saves the token's cold
            # access; settleWithPermit touched the token first (for its permit), so saves a warm one.
            gas += COLD_ACCOUNT - WARM_ACCOUNT
        return gas
    return table[path]


# -- the token: allowances and EIP-2612 ------------------------------------------------------------


def approve(frame: Frame, sender: bytes, spender: bytes, value: int) -> Outcome:
    """``approve``."""
    return _approve(frame, sender, spender, value, "approve")


def _approve(frame: Frame, owner: bytes, spender: bytes, value: int, path: str) -> Outcome:
    if spender == fr.ZERO:
        return APPROVE_TO_ZERO, path + ":to_zero"
    frame.save(allowance_key(owner, spender), value)
    frame.log(APPROVAL_TOPIC, _word(owner), _word(spender), data=_n(value))
    return None, path


def transfer_from(frame: Frame, sender: bytes, from_: bytes, to: bytes, value: int) -> Outcome:
    """``transferFrom`` by ``sender`` (the spender)."""
    key = allowance_key(from_, sender)
    allowed = frame.load(key)
    if value > allowed:
        return EXCEEDS_ALLOWANCE, "transfer_from:exceeds_allowance"
    reason, path = fr.move(frame, from_, to, value, "transfer_from")
    if reason is not None:
        return reason, path
    frame.save(key, allowed - value)
    return None, path


def permit(
    frame: Frame,
    token: fr.Token,
    timestamp: int,
    owner: bytes,
    spender: bytes,
    value: int,
    deadline: int,
    v: int,
    r: bytes,
    s: bytes,
    recover: Recover,
) -> Outcome:
    """EIP-2612 ``permit``."""
    if not deadline >= timestamp:
        return PERMIT_EXPIRED, "permit:expired"
    nonce_key = permit_nonce_key(owner)
    nonce = frame.load(nonce_key)
    struct = PERMIT_TYPEHASH + _word(owner) + _word(spender) + _n(value) + _n(nonce) + _n(deadline)
    failed = fr.check_signer(frame, token, struct, v, r, s, owner, recover, prefix="permit:")
    if failed is not None:
        return (PERMIT_WRONG_SIGNER, failed[1]) if failed[1] == "permit:wrong_signer" else failed
    frame.save(nonce_key, nonce + 1)
    return _approve(frame, owner, spender, value, "permit")


# -- Permit2 ----------------------------------------------------------------------------------------


def invalidate_unordered_nonces(frame: Frame, sender: bytes, word: int, mask: int) -> Outcome:
    """``invalidateUnorderedNonces``: the sender burns the nonces of ``mask`` in ``word``."""
    frame.emitter = PERMIT2
    key = bitmap_key(sender, word)
    frame.save(key, frame.load(key) | mask)
    frame.log(UNORDERED_NONCE_INVALIDATION_TOPIC, _word(sender), data=_n(word) + _n(mask))
    return None, "invalidate_unordered_nonces"


@lru_cache(maxsize=8)
def _witness_type_hash(witness_type_string: bytes) -> bytes:
    return keccak(WITNESS_TYPEHASH_STUB + witness_type_string)


def permit_witness_transfer_from(
    frame: Frame,
    ctx: Context,
    timestamp: int,
    origin: bytes,
    spender: bytes,
    permit: PermitTransferFrom,
    to: bytes,
    requested: int,
    owner: bytes,
    witness: bytes,
    witness_type_string: bytes,
    signature: bytes,
    recover: Recover,
) -> Outcome:
    """``permitWitnessTransferFrom`` called by ``spender``, for an ``owner`` without code; the exit
    point is the custom error's name, the token's exit point, or ``"ok"``."""
    frame.emitter = PERMIT2
    permissions = keccak(TOKEN_PERMISSIONS_TYPEHASH + _word(permit.token) + _n(permit.amount))
    data_hash = keccak(
        _witness_type_hash(witness_type_string)
        + permissions
        + _word(spender)
        + _n(permit.nonce)
        + _n(permit.deadline)
        + witness
    )
    # _permit_transfer_from
    if timestamp > permit.deadline:
        return f"SignatureExpired({permit.deadline})", "SignatureExpired"
    if requested > permit.amount:
        return f"InvalidAmount({permit.amount})", "InvalidAmount(uint256)"
    # _use_unordered_nonce
    key, bit = bitmap_key(owner, permit.nonce >> 8), 1 << (permit.nonce & 255)
    flipped = frame.load(key) ^ bit
    frame.save(key, flipped)
    if flipped & bit == 0:
        return "InvalidNonce()", "InvalidNonce"
    digest = keccak(b"\x19\x01" + ctx.permit2_domain + data_hash)
    # _verify, for an owner without code
    if owner == origin:
        frame.gas -= COLD_ACCOUNT - WARM_ACCOUNT
    if len(signature) == 65:
        r, s, v = signature[:32], signature[32:64], signature[64]
    elif len(signature) == 64:
        r, vs = signature[:32], int.from_bytes(signature[32:], "big")
        s, v = _n(vs & UPPER_BIT_MASK), (vs >> 255) + 27
    else:
        return "InvalidSignatureLength()", "InvalidSignatureLength"
    signer = recover(digest, v, r, s) if v in (27, 28) else None  # the precompile's range
    if signer is None:
        return "InvalidSignature()", "InvalidSignature"
    if signer != owner:
        return "InvalidSigner()", "InvalidSigner"
    # _safe_transfer_from: the ledger's token, which answers True or reverts
    frame.emitter = None
    reason, path = transfer_from(frame, PERMIT2, owner, to, requested)
    frame.emitter = PERMIT2
    if reason is not None:
        return TRANSFER_FROM_FAILED, path
    return None, "ok"


# -- the x402 proxies -------------------------------------------------------------------------------


def settle(
    frame: Frame,
    ctx: Context,
    timestamp: int,
    sender: bytes,
    origin: bytes,
    call: Settlement,
    recover: Recover,
) -> Outcome:
    """Either proxy's ``settle`` or ``settleWithPermit`` (told by ``call``), sent by ``sender``."""
    frame.emitter = call.proxy
    permit = call.permit
    amount = call.amount if call.upto else permit.amount
    permit_path = ""
    if call.upto:
        # _check_caller
        if amount > permit.amount:
            return "AmountExceedsPermitted()", f"{call.name}|AmountExceedsPermitted"
        if sender != call.facilitator:
            return "UnauthorizedFacilitator()", f"{call.name}|UnauthorizedFacilitator"
    if call.permit2612 is not None:
        if call.permit2612[0] != permit.amount:
            return "Permit2612AmountMismatch()", f"{call.name}|Permit2612AmountMismatch"
        permit_path = _execute_permit(frame, ctx, timestamp, call, recover) + "|"
    if call.upto:
        witness = keccak(
            UPTO_WITNESS_TYPEHASH + _word(call.to) + _word(call.facilitator or fr.ZERO) + _n(call.valid_after)
        )
    else:
        witness = keccak(EXACT_WITNESS_TYPEHASH + _word(call.to) + _n(call.valid_after))
    prefix = f"{call.name}|{permit_path}"
    # _settle
    if amount == 0:
        return "InvalidAmount()", prefix + "InvalidAmount"
    if call.owner == fr.ZERO:
        return "InvalidOwner()", prefix + "InvalidOwner"
    if call.to == fr.ZERO:
        return "InvalidDestination()", prefix + "InvalidDestination"
    if timestamp < call.valid_after:
        return "PaymentTooEarly()", prefix + "PaymentTooEarly"
    type_string = UPTO_WITNESS_TYPE_STRING if call.upto else EXACT_WITNESS_TYPE_STRING
    reason, path = permit_witness_transfer_from(
        frame, ctx, timestamp, origin, call.proxy, permit, call.to, amount, call.owner, witness, type_string,
        call.signature, recover,
    )  # fmt: skip
    frame.emitter = call.proxy
    if reason is not None:
        return reason, prefix + path
    frame.log(SETTLED_TOPIC if call.permit2612 is None else SETTLED_WITH_PERMIT_TOPIC)
    return None, prefix + "ok"


def _execute_permit(frame: Frame, ctx: Context, timestamp: int, call: Settlement, recover: Recover) -> str:
    """The proxy's ``_execute_permit`` after its amount check: the token's ``permit`` for Permit2,
    caught. Returns the permit's exit point (``"permit"`` when it succeeded)."""
    assert call.permit2612 is not None, "only settleWithPermit executes a permit"
    value, deadline, r, s, v = call.permit2612
    saved = (dict(frame.writes), set(frame.warm), list(frame.logs), frame.refund)
    frame.emitter = None
    reason, path = permit(frame, ctx.token, timestamp, call.owner, PERMIT2, value, deadline, v, r, s, recover)
    frame.emitter = call.proxy
    if reason is None:
        return path
    frame.writes, frame.warm, frame.logs, frame.refund = saved
    text = reason.encode()
    padded = text.ljust(-(-len(text) // 32) * 32, b"\x00")
    frame.log(
        PERMIT_FAILED_WITH_REASON_TOPIC,
        _word(ctx.token_address),
        _word(call.owner),
        data=_n(32) + _n(len(text)) + padded,
    )
    return path
