"""Permit2 for x402: what a payer signs, and the calls a facilitator sends, for the Permit2 proxies.

The x402 ``exact`` and ``upto`` schemes can move tokens through Uniswap's Permit2 instead of
EIP-3009: the payer approves Permit2 on the token once (``approve_call``, or an EIP-2612 permit
signed off chain) and signs a ``PermitWitnessTransferFrom`` whose spender is an x402 proxy and whose
witness binds the destination (``{to, validAfter}`` for exact; ``{to, facilitator, validAfter}`` for
upto, so only that facilitator may settle, for any amount up to the permitted one). The facilitator
then calls the proxy's ``settle`` or, with the EIP-2612 permit, ``settleWithPermit``.

Here: the EIP-712 digests (Permit2's domain has a name and no version) computed directly, the same
messages in eth-account's typed-data form (the reference path the tests compare against), the
proxies' calldata, and three reads (token allowance, Permit2 nonce bit, EIP-2612 nonce) through any
chain with ``call(to, data, timestamp=None)``. Rules: pure functions, except that the reads call
the chain they are given; addresses go in as hex strings of any case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi import decode, encode
from eth_utils import to_checksum_address

from ..errors import ChainError
from .contracts import EXACT_PERMIT2_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS
from .eip712 import DOMAIN_TYPE, Domain, address_word, canonical, domain_typed_data, uint_word
from .hashing import keccak
from .token import encode_call, selector

__all__ = [
    "EXACT_PERMIT2_PROXY_ADDRESS",
    "EXACT_WITNESS_TYPE_STRING",
    "PERMIT2_ADDRESS",
    "UINT256_MAX",
    "UPTO_PERMIT2_PROXY_ADDRESS",
    "UPTO_WITNESS_TYPE_STRING",
    "Eip2612Permit",
    "PermitTransfer",
    "allowance",
    "approve_call",
    "eip2612_digest",
    "eip2612_nonce",
    "eip2612_typed_data",
    "exact_settle_call",
    "exact_settle_with_permit_call",
    "invalidate_nonces_call",
    "nonce_used",
    "permit2_domain_separator",
    "permit_witness_digest",
    "permit_witness_typed_data",
    "proxy_for",
    "upto_settle_call",
    "upto_settle_with_permit_call",
    "witness_hash",
]

UINT256_MAX = 2**256 - 1

# The witness type strings the proxies pass to Permit2 (the tail of the signed type).
EXACT_WITNESS_TYPE_STRING = (
    "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
)
UPTO_WITNESS_TYPE_STRING = (
    "Witness witness)TokenPermissions(address token,uint256 amount)"
    "Witness(address to,address facilitator,uint256 validAfter)"
)
_PERMIT2_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,uint256 chainId,address verifyingContract)")
_PERMIT2_NAME_HASH = keccak(b"Permit2")
_TOKEN_PERMISSIONS_TYPEHASH = keccak(b"TokenPermissions(address token,uint256 amount)")
_WITNESS_STUB = (
    "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,"
)
_EXACT_TYPEHASH = keccak((_WITNESS_STUB + EXACT_WITNESS_TYPE_STRING).encode())
_UPTO_TYPEHASH = keccak((_WITNESS_STUB + UPTO_WITNESS_TYPE_STRING).encode())
_EXACT_WITNESS_TYPEHASH = keccak(b"Witness(address to,uint256 validAfter)")
_UPTO_WITNESS_TYPEHASH = keccak(b"Witness(address to,address facilitator,uint256 validAfter)")
_EIP2612_PERMIT_TYPEHASH = keccak(
    b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)

# The proxies' ABI types (eth-abi spelling): PermitTransferFrom, the EIP2612Permit struct
# (value, deadline, r, s, v), and the two witnesses.
_PERMIT = "((address,uint256),uint256,uint256)"
_PERMIT_2612 = "(uint256,uint256,bytes32,bytes32,uint8)"
_EXACT_WITNESS = "(address,uint256)"
_UPTO_WITNESS = "(address,address,uint256)"
_EXACT_SETTLE = (_PERMIT, "address", _EXACT_WITNESS, "bytes")
_EXACT_SETTLE_WITH_PERMIT = (_PERMIT_2612, *_EXACT_SETTLE)
_UPTO_SETTLE = (_PERMIT, "uint256", "address", _UPTO_WITNESS, "bytes")
_UPTO_SETTLE_WITH_PERMIT = (_PERMIT_2612, *_UPTO_SETTLE)

_EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def _uint(name: str, value: int, bits: int = 256) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be a uint{bits}, got {value!r}")


@dataclass(frozen=True)
class PermitTransfer:
    """One Permit2 ``PermitWitnessTransferFrom`` as the payer signs it: the permitted token and
    amount, the spender (the proxy), the unordered nonce, the deadline, and the witness. With
    ``facilitator`` None the witness is the exact scheme's ``{to, validAfter}``; with an address it
    is the upto scheme's ``{to, facilitator, validAfter}``."""

    token: str
    amount: int
    spender: str
    nonce: int
    deadline: int
    to: str
    valid_after: int
    facilitator: str | None = None

    def __post_init__(self) -> None:
        for name in ("amount", "nonce", "deadline", "valid_after"):
            _uint(name, getattr(self, name))
        for name in ("token", "spender", "to", "facilitator"):
            value = getattr(self, name)
            if value is not None:
                canonical(value)  # raises on anything that is not a 20-byte address

    @property
    def upto(self) -> bool:
        return self.facilitator is not None


@dataclass(frozen=True)
class Eip2612Permit:
    """An EIP-2612 ``Permit`` (the token's nonce for ``owner`` is part of what is signed)."""

    owner: str
    spender: str
    value: int
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        for name in ("value", "nonce", "deadline"):
            _uint(name, getattr(self, name))


def permit2_domain_separator(chain_id: int) -> bytes:
    """Permit2's EIP-712 domain separator on ``chain_id`` (name "Permit2", no version)."""
    fields = _PERMIT2_NAME_HASH + uint_word(chain_id) + address_word(PERMIT2_ADDRESS)
    return keccak(_PERMIT2_DOMAIN_TYPEHASH + fields)


def witness_hash(permit: PermitTransfer) -> bytes:
    """The EIP-712 hash of the permit's witness, as the proxy passes it to Permit2."""
    if permit.facilitator is None:
        return keccak(_EXACT_WITNESS_TYPEHASH + address_word(permit.to) + uint_word(permit.valid_after))
    to, facilitator = address_word(permit.to), address_word(permit.facilitator)
    return keccak(_UPTO_WITNESS_TYPEHASH + to + facilitator + uint_word(permit.valid_after))


def permit_witness_digest(chain_id: int, permit: PermitTransfer) -> bytes:
    """The digest the payer signs: Permit2's domain and the ``PermitWitnessTransferFrom`` struct."""
    permitted = keccak(_TOKEN_PERMISSIONS_TYPEHASH + address_word(permit.token) + uint_word(permit.amount))
    struct_hash = keccak(
        (_UPTO_TYPEHASH if permit.upto else _EXACT_TYPEHASH)
        + permitted
        + address_word(permit.spender)
        + uint_word(permit.nonce)
        + uint_word(permit.deadline)
        + witness_hash(permit)
    )
    return keccak(b"\x19\x01" + permit2_domain_separator(chain_id) + struct_hash)


def permit_witness_typed_data(chain_id: int, permit: PermitTransfer) -> dict[str, Any]:
    """The same message in eth-account's full typed-data form (``types``, ``primaryType``,
    ``domain``, ``message``), as a wallet would be asked to sign it."""
    witness_fields = [{"name": "to", "type": "address"}]
    witness: dict[str, Any] = {"to": to_checksum_address(permit.to)}
    if permit.facilitator is not None:
        witness_fields.append({"name": "facilitator", "type": "address"})
        witness["facilitator"] = to_checksum_address(permit.facilitator)
    witness_fields.append({"name": "validAfter", "type": "uint256"})
    witness["validAfter"] = permit.valid_after
    return {
        "types": {
            "EIP712Domain": _EIP712_DOMAIN_TYPE,
            "PermitWitnessTransferFrom": [
                {"name": "permitted", "type": "TokenPermissions"},
                {"name": "spender", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
                {"name": "witness", "type": "Witness"},
            ],
            "TokenPermissions": [
                {"name": "token", "type": "address"},
                {"name": "amount", "type": "uint256"},
            ],
            "Witness": witness_fields,
        },
        "primaryType": "PermitWitnessTransferFrom",
        "domain": {"name": "Permit2", "chainId": chain_id, "verifyingContract": PERMIT2_ADDRESS},
        "message": {
            "permitted": {"token": to_checksum_address(permit.token), "amount": permit.amount},
            "spender": to_checksum_address(permit.spender),
            "nonce": permit.nonce,
            "deadline": permit.deadline,
            "witness": witness,
        },
    }


def eip2612_digest(domain: Domain, permit: Eip2612Permit) -> bytes:
    """The digest an owner signs for the token's ``permit`` (the token's own EIP-712 domain)."""
    struct_hash = keccak(
        _EIP2612_PERMIT_TYPEHASH
        + address_word(permit.owner)
        + address_word(permit.spender)
        + uint_word(permit.value)
        + uint_word(permit.nonce)
        + uint_word(permit.deadline)
    )
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


def eip2612_typed_data(domain: Domain, permit: Eip2612Permit) -> dict[str, Any]:
    """The EIP-2612 ``Permit`` in eth-account's full typed-data form."""
    return {
        "types": {
            "EIP712Domain": DOMAIN_TYPE,
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": domain_typed_data(domain),
        "message": {
            "owner": to_checksum_address(permit.owner),
            "spender": to_checksum_address(permit.spender),
            "value": permit.value,
            "nonce": permit.nonce,
            "deadline": permit.deadline,
        },
    }


# -- calldata ---------------------------------------------------------------------------------------


def _call(name: str, types: tuple[str, ...], args: list[Any]) -> bytes:
    return selector(f"{name}({','.join(types)})") + encode(list(types), args)


def _permit_arg(permit: PermitTransfer) -> tuple[Any, ...]:
    return ((to_checksum_address(permit.token), permit.amount), permit.nonce, permit.deadline)


def _witness_arg(permit: PermitTransfer) -> tuple[Any, ...]:
    if permit.facilitator is None:
        return (to_checksum_address(permit.to), permit.valid_after)
    return (to_checksum_address(permit.to), to_checksum_address(permit.facilitator), permit.valid_after)


def _permit2612_arg(permit2612: tuple[int, int, int, bytes, bytes]) -> tuple[Any, ...]:
    value, deadline, v, r, s = permit2612
    _uint("permit2612 value", value)
    _uint("permit2612 deadline", deadline)
    _uint("permit2612 v", v, 8)
    for name, word in (("r", r), ("s", s)):
        if not isinstance(word, bytes) or len(word) != 32:
            raise ValueError(f"permit2612 {name} must be 32 bytes, got {word!r}")
    return (value, deadline, r, s, v)  # the proxies' EIP2612Permit field order


def _check_scheme(permit: PermitTransfer, upto: bool) -> None:
    if permit.upto != upto:
        want, got = ("upto", "exact") if upto else ("exact", "upto")
        raise ValueError(
            f"a {got} permit (facilitator={permit.facilitator!r}) cannot settle on the {want} proxy"
        )


def exact_settle_call(permit: PermitTransfer, owner: str, signature: bytes) -> bytes:
    """``x402ExactPermit2Proxy.settle(permit, owner, witness, signature)``."""
    _check_scheme(permit, upto=False)
    args = [_permit_arg(permit), to_checksum_address(owner), _witness_arg(permit), signature]
    return _call("settle", _EXACT_SETTLE, args)


def exact_settle_with_permit_call(
    permit2612: tuple[int, int, int, bytes, bytes], permit: PermitTransfer, owner: str, signature: bytes
) -> bytes:
    """``x402ExactPermit2Proxy.settleWithPermit``; ``permit2612`` is (value, deadline, v, r, s)."""
    _check_scheme(permit, upto=False)
    args = [
        _permit2612_arg(permit2612),
        _permit_arg(permit),
        to_checksum_address(owner),
        _witness_arg(permit),
        signature,
    ]
    return _call("settleWithPermit", _EXACT_SETTLE_WITH_PERMIT, args)


def upto_settle_call(permit: PermitTransfer, amount: int, owner: str, signature: bytes) -> bytes:
    """``x402UptoPermit2Proxy.settle(permit, amount, owner, witness, signature)``."""
    _check_scheme(permit, upto=True)
    _uint("amount", amount)
    args = [_permit_arg(permit), amount, to_checksum_address(owner), _witness_arg(permit), signature]
    return _call("settle", _UPTO_SETTLE, args)


def upto_settle_with_permit_call(
    permit2612: tuple[int, int, int, bytes, bytes],
    permit: PermitTransfer,
    amount: int,
    owner: str,
    signature: bytes,
) -> bytes:
    """``x402UptoPermit2Proxy.settleWithPermit``; ``permit2612`` is (value, deadline, v, r, s)."""
    _check_scheme(permit, upto=True)
    _uint("amount", amount)
    args = [
        _permit2612_arg(permit2612),
        _permit_arg(permit),
        amount,
        to_checksum_address(owner),
        _witness_arg(permit),
        signature,
    ]
    return _call("settleWithPermit", _UPTO_SETTLE_WITH_PERMIT, args)


def approve_call(spender: str, amount: int) -> bytes:
    """The token's ``approve(spender, amount)`` (the payer's one-time approval of Permit2)."""
    _uint("amount", amount)
    return encode_call("approve(address,uint256)", to_checksum_address(spender), amount)


def invalidate_nonces_call(word: int, mask: int) -> bytes:
    """Permit2's ``invalidateUnorderedNonces(word, mask)``: burns the nonces ``word << 8 | bit``
    for every bit set in ``mask`` (sent by the owner)."""
    _uint("word", word)
    _uint("mask", mask)
    return encode_call("invalidateUnorderedNonces(uint256,uint256)", word, mask)


def proxy_for(permit: PermitTransfer) -> str:
    """The proxy that settles ``permit``: upto when its witness names a facilitator, else exact."""
    return UPTO_PERMIT2_PROXY_ADDRESS if permit.upto else EXACT_PERMIT2_PROXY_ADDRESS


# -- reads ------------------------------------------------------------------------------------------


class _CallResult(Protocol):
    @property
    def success(self) -> bool: ...
    @property
    def output(self) -> bytes: ...
    @property
    def revert_reason(self) -> str | None: ...


class _Calls(Protocol):
    def call(self, to: str, data: bytes, *, timestamp: int | None = None) -> _CallResult: ...


def _read_uint(chain: _Calls, to: str, data: bytes, what: str) -> int:
    result = chain.call(to, data)
    if not result.success or len(result.output) < 32:
        raise ChainError(f"reading {what} from {to} failed: {result.revert_reason or 'no result'}")
    return int(decode(["uint256"], result.output[:32])[0])


def allowance(chain: _Calls, token: str, owner: str, spender: str) -> int:
    """The token's ``allowance(owner, spender)`` (e.g. what the owner lets Permit2 move)."""
    data = encode_call("allowance(address,address)", to_checksum_address(owner), to_checksum_address(spender))
    return _read_uint(chain, token, data, "allowance")


def nonce_used(chain: _Calls, owner: str, nonce: int) -> bool:
    """Whether Permit2 has spent (or the owner invalidated) ``nonce``: its bit in ``nonceBitmap``."""
    _uint("nonce", nonce)
    data = encode_call("nonceBitmap(address,uint256)", to_checksum_address(owner), nonce >> 8)
    return bool(_read_uint(chain, PERMIT2_ADDRESS, data, "nonceBitmap") >> (nonce & 0xFF) & 1)


def eip2612_nonce(chain: _Calls, token: str, owner: str) -> int:
    """The token's EIP-2612 ``nonces(owner)``: the nonce the owner's next permit must sign."""
    return _read_uint(chain, token, encode_call("nonces(address)", to_checksum_address(owner)), "nonces")
