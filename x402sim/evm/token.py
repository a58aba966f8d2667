"""Calldata and event encoding for the EIP-3009 token and Multicall3, by function signature.

Everything the rest of the package says to a token goes through here, so the ABI of USDC
(FiatToken v2) is written down once: selectors from signatures, argument encoding with eth-abi,
``Error(string)`` and custom-error revert decoding (the custom errors of Permit2, the x402 Permit2
proxies and the batch-settlement contract, by name) and ``Transfer`` log decoding. Pure functions,
no chain access.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from eth_abi import decode, encode

from .eip712 import canonical, checksum
from .hashing import keccak

TRANSFER_TOPIC = keccak(b"Transfer(address,address,uint256)")
AUTHORIZATION_USED_TOPIC = keccak(b"AuthorizationUsed(address,bytes32)")
# Logged by the PYUSD-like token, instead of reverting, for a used or canceled nonce.
AUTHORIZATION_ALREADY_USED_TOPIC = keccak(b"AuthorizationAlreadyUsed(address,bytes32)")
ERROR_STRING_SELECTOR = keccak(b"Error(string)")[:4]

TRANSFER_WITH_AUTHORIZATION = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
)


@cache
def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


_TRANSFER_WITH_AUTHORIZATION_SELECTOR = keccak(TRANSFER_WITH_AUTHORIZATION.encode())[:4]


def encode_call(signature: str, *args: object) -> bytes:
    """Calldata for ``signature`` (e.g. ``"balanceOf(address)"``) with ``args``."""
    types = signature[signature.index("(") + 1 : -1]
    arg_types = [t for t in types.split(",") if t] if types else []
    return selector(signature) + (encode(arg_types, list(args)) if arg_types else b"")


def decode_single(type_: str, data: bytes) -> object:
    return decode([type_], data)[0]


def transfer_with_authorization_call(
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    v: int,
    r: bytes,
    s: bytes,
) -> bytes:
    """``transferWithAuthorization`` (v, r, s) calldata. Every argument is a static ABI word, so the
    words are laid out here directly (the test suite proves them equal to eth-abi's encoding)."""
    words = [_address_word(from_), _address_word(to)]
    for name, number, bits in (
        ("value", value, 256),
        ("validAfter", valid_after, 256),
        ("validBefore", valid_before, 256),
        ("v", v, 8),
    ):
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 1 << bits:
            raise ValueError(f"{name} must be a uint{bits}, got {number!r}")
    for name, word in (("nonce", nonce), ("r", r), ("s", s)):
        if not isinstance(word, bytes) or len(word) > 32:
            raise ValueError(f"{name} must be at most 32 bytes, got {word!r}")
    return (
        _TRANSFER_WITH_AUTHORIZATION_SELECTOR
        + words[0]
        + words[1]
        + value.to_bytes(32, "big")
        + valid_after.to_bytes(32, "big")
        + valid_before.to_bytes(32, "big")
        + nonce.ljust(32, b"\x00")
        + v.to_bytes(32, "big")
        + r.ljust(32, b"\x00")
        + s.ljust(32, b"\x00")
    )


def _address_word(address: str) -> bytes:
    return canonical(address).rjust(32, b"\x00")


# The batch-settlement contract's custom errors and its collectors', by signature (``channels``
# re-exports them), with the OpenZeppelin errors its signature checks, token transfers and
# multicall raise.
CHANNEL_ERRORS = (
    "InvalidChannel()",
    "ZeroDeposit()",
    "DepositOverflow()",
    "InvalidSignature()",
    "NotReceiverAuthorizer()",
    "NotAuthorizedToClaim()",
    "NotAuthorizedToRefund()",
    "ClaimExceedsCeiling()",
    "ClaimExceedsBalance()",
    "WithdrawalAlreadyPending()",
    "WithdrawalNotPending()",
    "NotAuthorizedToFinalizeWithdraw()",
    "WithdrawDelayNotElapsed()",
    "NothingToWithdraw()",
    "WithdrawAmountExceedsAvailable()",
    "WithdrawDelayOutOfRange()",
    "EmptyBatch()",
    "DepositCollectionFailed()",
    "InvalidCollector()",
    "InvalidRefundNonce()",
    "ZeroRefund()",
    "OnlyX402BatchSettlement()",
    "ECDSAInvalidSignature()",
    "ECDSAInvalidSignatureLength(uint256)",
    "ECDSAInvalidSignatureS(bytes32)",
    "SafeERC20FailedOperation(address)",
    "FailedCall()",
)

# Custom errors the simulator's contracts raise, by signature: Permit2's signature transfers, then
# the x402 Permit2 proxies (with OpenZeppelin's reentrancy guard), then the batch-settlement
# contract's. Two are both named InvalidAmount: Permit2's carries the permitted amount, the
# proxies' carries nothing.
CUSTOM_ERRORS = (
    "InvalidNonce()",
    "SignatureExpired(uint256)",
    "InvalidAmount(uint256)",
    "InvalidSignatureLength()",
    "InvalidSignature()",
    "InvalidSigner()",
    "InvalidContractSignature()",
    "LengthMismatch()",
    "InvalidPermit2Address()",
    "InvalidDestination()",
    "PaymentTooEarly()",
    "InvalidOwner()",
    "InvalidAmount()",
    "Permit2612AmountMismatch()",
    "UnauthorizedFacilitator()",
    "AmountExceedsPermitted()",
    "ReentrancyGuardReentrantCall()",
    *(error for error in CHANNEL_ERRORS if error != "InvalidSignature()"),
)
_CUSTOM_ERRORS_BY_SELECTOR = {keccak(sig.encode())[:4]: sig for sig in CUSTOM_ERRORS}


def revert_reason(output: bytes) -> str | None:
    """The message of an ``Error(string)`` revert, or a known custom error written as a call
    (``"InvalidNonce()"``, ``"SignatureExpired(1700000000)"``); None for any other revert data."""
    if output[:4] == ERROR_STRING_SELECTOR:
        try:
            return str(decode(["string"], output[4:])[0])
        except Exception:  # malformed revert data from a foreign contract is just "no reason"
            return None
    return custom_error(output)


def custom_error(output: bytes) -> str | None:
    """A known custom error (``CUSTOM_ERRORS``) in revert data, with its arguments; None otherwise."""
    signature = _CUSTOM_ERRORS_BY_SELECTOR.get(output[:4])
    if signature is None:
        return None
    name, _, types = signature[:-1].partition("(")
    arg_types = [t for t in types.split(",") if t]
    if len(output) != 4 + 32 * len(arg_types):
        return None
    try:
        args = decode(arg_types, output[4:]) if arg_types else ()
    except Exception:
        return None
    return f"{name}({', '.join(str(a) for a in args)})"


@dataclass(frozen=True)
class Transfer:
    """One ERC-20 ``Transfer`` event."""

    token: str
    from_: str
    to: str
    value: int
    block_number: int
    tx_hash: bytes


def decode_transfer(
    address: bytes, topics: list[bytes], data: bytes, block_number: int, tx_hash: bytes
) -> Transfer | None:
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
        return None
    return Transfer(
        token=checksum(address),
        from_=checksum(topics[1][-20:]),
        to=checksum(topics[2][-20:]),
        value=int.from_bytes(data, "big"),
        block_number=block_number,
        tx_hash=tx_hash,
    )
