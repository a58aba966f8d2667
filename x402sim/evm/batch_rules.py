"""The batch-settlement contract and its two deposit collectors as Python rules over storage.

The ledger backend (``ledger``) runs these beside ``fiat_rules`` and ``permit2_rules``:
``contracts/batch_settlement.vy`` (deposits through a collector, ``claim``, ``claimWithSignature``,
``settle``, the payer's ``initiateWithdraw`` and ``finalizeWithdraw``, ``refund``,
``refundWithSignature``, ``multicall``, and the views), ``erc3009_deposit_collector.vy`` (the
token's ``receiveWithAuthorization`` to the collector, then a transfer on to the contract) and
``permit2_deposit_collector.vy`` (an optional EIP-2612 permit for Permit2, caught, then Permit2's
witness transfer bound to the channel).

Rules of this module (those of ``fiat_rules`` and ``permit2_rules``, which it extends):

* Each function follows the Vyper function of the same name line by line: its checks in its order,
  its custom errors written as ``token.revert_reason`` names them (``"ZeroDeposit()"``), the
  token's and Permit2's revert texts when a nested call fails (they bubble up unchanged), its
  events with their data.
* Storage goes through the caller's ``fiat_rules.Frame``, in the same key space as the token's and
  Permit2's: the contract's words start with ``b"B"``, then one byte naming the mapping, then the
  mapping's keys. As in the contract, a channel's state, a pending withdrawal and a receiver's
  totals are each one word, two halves packed (first member in the low 128 bits, as Solidity packs
  them), read and written whole. The collectors keep no storage.
* Account access (EIP-2929): each contract or account that the code calls or whose code it asks
  for is charged its cold surcharge the first time in a transaction (``touch_account``); the
  transaction's sender and the contract it calls are warm from the start. The warm part of every
  access is in the constants.
* Gas that does not depend on storage or account warmth is a constant per exit point
  (``ledger.EXECUTION_GAS``, measured by ``ledger_gas``), plus what grows with the input: a
  claim batch adds a constant per row by the row's outcome (and per row left unread after a
  failing one), a multicall a constant per inner call and per 32-byte word of its data, a deposit
  that stops before its collector runs a constant per word of ``collectorData`` (see
  ``execution_gas``). An exit point is a string naming those parts: ``"batch.claim|claim|skip|ok"``,
  ``"batch.deposit.permit2|permit:expired|ok|ok:created"``, ``"batch.multicall[...]ok"``.
* What the code does for inputs the ledger does not model (a token other than the ledger's, a
  collector other than the two, a payer or receiver authorizer with code (EIP-1271), a signature
  that is not 65 bytes, collector data in another encoding or longer than the contracts' bound, a
  multicall inside a multicall) is not written here: ``parse`` raises ``ChainError`` naming it,
  and the ledger refuses the transaction at submission.
* Pure: no clock (the block timestamp is an argument), no I/O; signers come from ``recover``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from eth_abi import decode, encode

from ..errors import ChainError
from . import fiat_rules as fr
from . import permit2_rules as p2
from .channels import (
    CHANNEL_CONFIG_TYPEHASH,
    CLAIM_BATCH_TYPEHASH,
    CLAIM_ENTRY_TYPEHASH,
    CONFIG_ABI,
    DEPOSIT_WITNESS_TYPE_STRING,
    DEPOSIT_WITNESS_TYPEHASH,
    EVENT_TOPICS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    REFUND_TYPEHASH,
    UINT40_MAX,
    UINT128_MAX,
    VOUCHER_CLAIM_ABI,
    VOUCHER_TYPEHASH,
)
from .contracts import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
)
from .eip712 import SECP256K1_HALF_N, canonical
from .fiat_rules import Frame, Recover
from .hashing import keccak
from .token import (
    CUSTOM_ERRORS,
    revert_reason,
    selector,
)

BATCH = bytes(canonical(BATCH_SETTLEMENT_ADDRESS))
ERC3009_COLLECTOR = bytes(canonical(ERC3009_DEPOSIT_COLLECTOR_ADDRESS))
PERMIT2_COLLECTOR = bytes(canonical(PERMIT2_DEPOSIT_COLLECTOR_ADDRESS))
CONTRACTS = (BATCH, ERC3009_COLLECTOR, PERMIT2_COLLECTOR)

# The contracts' bounds on their dynamic arguments (longer input fails their ABI decoding).
MAX_COLLECTOR_DATA = 2048
MAX_CLAIMS = 100
MAX_CALLS, MAX_CALL_BYTES = 8, 4096
COLD_SURCHARGE = p2.COLD_ACCOUNT - p2.WARM_ACCOUNT

# (revert reason or None, exit point)
Outcome = tuple[str | None, str]


def _word(address: bytes) -> bytes:
    return address.rjust(32, b"\x00")


def _n(value: int) -> bytes:
    return value.to_bytes(32, "big")


# -- storage ----------------------------------------------------------------------------------------


def channel_key(channel: bytes) -> bytes:
    """``_channels[channel]``: balance | totalClaimed << 128."""
    return b"Bc" + channel


def refund_nonce_key(channel: bytes) -> bytes:
    return b"Bn" + channel


def withdrawal_key(channel: bytes) -> bytes:
    """``_pending_withdrawals[channel]``: amount | initiatedAt << 128."""
    return b"Bw" + channel


def receiver_key(receiver: bytes, token: bytes) -> bytes:
    """``_receivers[receiver][token]``: totalClaimed | totalSettled << 128."""
    return b"Br" + receiver + token


def _pair(word: int) -> tuple[int, int]:
    """A packed word's two halves (low, high)."""
    return word & UINT128_MAX, word >> 128


def _pack(low: int, high: int) -> int:
    return low | high << 128


def touch_account(frame: Frame, address: bytes) -> None:
    """EIP-2929 account access: the cold surcharge the first time in the transaction."""
    key = b"@" + address
    if key not in frame.warm:
        frame.warm.add(key)
        frame.gas += COLD_SURCHARGE


# -- calls ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A ``ChannelConfig`` (addresses as 20 bytes)."""

    payer: bytes
    payer_authorizer: bytes
    receiver: bytes
    receiver_authorizer: bytes
    token: bytes
    withdraw_delay: int
    salt: bytes

    def encoded(self) -> bytes:
        """``abi_encode`` of the struct: seven words (also the events' data)."""
        return (
            _word(self.payer)
            + _word(self.payer_authorizer)
            + _word(self.receiver)
            + _word(self.receiver_authorizer)
            + _word(self.token)
            + _n(self.withdraw_delay)
            + self.salt
        )


@dataclass(frozen=True)
class Row:
    """One ``VoucherClaim``."""

    config: Config
    max_claimable: int
    signature: bytes
    total_claimed: int


@dataclass(frozen=True)
class Collect:
    """A collector's decoded ``collectorData``. EIP-3009: ``valid_after``, ``valid_before``, ``salt``
    and ``signature``; Permit2: ``nonce``, ``deadline``, ``signature`` and the optional EIP-2612
    segment (value, deadline, v, r, s)."""

    valid_after: int = 0
    valid_before: int = 0
    salt: int = 0
    nonce: int = 0
    deadline: int = 0
    signature: bytes = b""
    permit2612: tuple[int, int, int, bytes, bytes] | None = None
    size: int = 0  # length of collectorData in bytes


@dataclass(frozen=True)
class Call:
    """One decoded call to the contract or a collector: its function and arguments, and its
    calldata (a multicall's inner calls are ``Call`` objects in ``args``)."""

    function: str
    args: tuple[Any, ...]
    data: bytes


@dataclass(frozen=True)
class Context:
    """The deployment: the token's rules and Permit2's (``permit2_rules.Context``), the contract's
    domain separator, and the addresses that have code (no EIP-1271 signer is modelled)."""

    p2: p2.Context
    domain: bytes
    with_code: frozenset[bytes]


_SIGNATURES: dict[str, tuple[str, ...]] = {
    "deposit": (CONFIG_ABI, "uint128", "address", "bytes"),
    "claim": (f"{VOUCHER_CLAIM_ABI}[]",),
    "claimWithSignature": (f"{VOUCHER_CLAIM_ABI}[]", "bytes"),
    "settle": ("address", "address"),
    "initiateWithdraw": (CONFIG_ABI, "uint128"),
    "finalizeWithdraw": (CONFIG_ABI,),
    "refund": (CONFIG_ABI, "uint128"),
    "refundWithSignature": (CONFIG_ABI, "uint128", "uint256", "bytes"),
    "multicall": ("bytes[]",),
}
FUNCTIONS = {selector(f"{name}({','.join(types)})"): name for name, types in _SIGNATURES.items()}
VIEWS: dict[bytes, tuple[str, tuple[str, ...]]] = {
    selector(f"{name}({','.join(types)})"): (name, types)
    for name, types in {
        "channels": ("bytes32",),
        "pendingWithdrawals": ("bytes32",),
        "refundNonce": ("bytes32",),
        "receivers": ("address", "address"),
        "getChannelId": (CONFIG_ABI,),
        "getVoucherDigest": ("bytes32", "uint128"),
        "getRefundDigest": ("bytes32", "uint256", "uint128"),
        "getClaimBatchDigest": (f"{VOUCHER_CLAIM_ABI}[]",),
    }.items()
}
COLLECT = selector("collect(address,address,uint256,bytes32,bytes)")
COLLECT_TYPES = ("address", "address", "uint256", "bytes32", "bytes")


def decode_args(function: str, types: tuple[str, ...], data: bytes) -> tuple[Any, ...]:
    """ABI-decode ``data`` after its selector, refusing any encoding but the canonical one."""
    try:
        args = decode(list(types), data[4:])
        canonical_form = encode(list(types), list(args))
    except Exception as exc:
        raise ChainError(f"{function}: calldata that does not decode: {exc}") from exc
    if canonical_form != data[4:]:
        raise ChainError(f"{function}: calldata not in the canonical ABI encoding")
    return tuple(args)


def _config(raw: tuple[Any, ...]) -> Config:
    payer, payer_auth, receiver, receiver_auth, token, delay, salt = raw
    return Config(
        bytes(canonical(payer)),
        bytes(canonical(payer_auth)),
        bytes(canonical(receiver)),
        bytes(canonical(receiver_auth)),
        bytes(canonical(token)),
        delay,
        salt,
    )


def _row(raw: tuple[Any, ...]) -> Row:
    (config, max_claimable), signature, total = raw
    return Row(_config(config), max_claimable, signature, total)


def parse(to: bytes, data: bytes, ctx: Context) -> Call:
    """The modelled call ``data`` makes to the contract or a collector at ``to``, decoded, or
    ``ChainError`` naming what is not modelled."""
    if to != BATCH:
        if data[:4] != COLLECT:
            raise ChainError(f"the ledger backend does not model collector call 0x{data[:4].hex()}")
        collector_data = decode_args("collect", COLLECT_TYPES, data)[4]
        if len(collector_data) > MAX_COLLECTOR_DATA:
            raise ChainError(
                f"collect: the ledger backend models collector data of {MAX_COLLECTOR_DATA} bytes at most"
            )
        return Call("collect", (to, _words(collector_data)), data)
    return _parse_batch(data, ctx, nested=False)


def _parse_batch(data: bytes, ctx: Context, nested: bool) -> Call:
    function = FUNCTIONS.get(data[:4])
    if function is None:
        raise ChainError(f"the ledger backend does not model batch-settlement call 0x{data[:4].hex()}")
    raw = decode_args(function, _SIGNATURES[function], data)
    token = ctx.p2.token_address
    args: tuple[Any, ...]
    if function == "multicall":
        if nested:
            raise ChainError("multicall: the ledger backend models no multicall inside a multicall")
        if len(raw[0]) > MAX_CALLS or any(len(inner) > MAX_CALL_BYTES for inner in raw[0]):
            raise ChainError(
                f"multicall: the contract takes {MAX_CALLS} calls of {MAX_CALL_BYTES} bytes at most"
            )
        args = tuple(_parse_batch(bytes(inner), ctx, nested=True) for inner in raw[0])
    elif function in ("claim", "claimWithSignature"):
        rows = tuple(_row(r) for r in raw[0])
        if len(rows) > MAX_CLAIMS:
            raise ChainError(f"{function}: the contract takes {MAX_CLAIMS} rows at most")
        for row in rows:
            _check_config(function, row.config, token, ctx)
            _check_signature(function, row.signature)
        args = (rows,) if function == "claim" else (rows, raw[1])
        if function == "claimWithSignature":
            _check_signature(function, raw[1])
            if rows and rows[0].config.receiver_authorizer in ctx.with_code:
                raise ChainError(
                    f"{function}: the ledger backend models no receiver authorizer with code (EIP-1271)"
                )
    elif function == "settle":
        # any token: one the ledger does not model has no deposits, so nothing to settle
        args = tuple(bytes(canonical(a)) for a in raw)
    else:
        config = _config(raw[0])
        _check_config(function, config, token, ctx)
        args = (config, *raw[1:])
        if function == "deposit":
            collector = bytes(canonical(raw[2]))
            if collector == PERMIT2_COLLECTOR and config.payer in ctx.with_code:
                raise ChainError(
                    "deposit: the ledger backend models no payer with code (EIP-1271) for Permit2"
                )
            args = (config, raw[1], collector, _collect(collector, raw[3]))
        elif function == "refundWithSignature":
            _check_signature(function, raw[3])
            if config.receiver_authorizer in ctx.with_code:
                raise ChainError(
                    f"{function}: the ledger backend models no receiver authorizer with code (EIP-1271)"
                )
    return Call(function, args, data)


def _check_config(function: str, config: Config, token: bytes, ctx: Context) -> None:
    if config.token not in (token, fr.ZERO):
        raise ChainError(f"{function}: the ledger backend models no token but 0x{token.hex()}")
    if config.payer_authorizer == fr.ZERO and config.payer in ctx.with_code:
        raise ChainError(f"{function}: the ledger backend models no payer with code (EIP-1271)")


def _check_signature(function: str, signature: bytes) -> None:
    if len(signature) != 65:
        raise ChainError(f"{function}: the ledger backend models 65-byte signatures only")


def _collect(collector: bytes, data: bytes) -> Collect:
    if len(data) > MAX_COLLECTOR_DATA:
        raise ChainError(
            f"deposit: the ledger backend models collector data of {MAX_COLLECTOR_DATA} bytes at most"
        )
    if collector == fr.ZERO:
        return Collect(size=len(data))
    if collector == ERC3009_COLLECTOR:
        valid_after, valid_before, salt, signature = decode_args(
            "deposit", ("uint256", "uint256", "uint256", "bytes"), b"\x00" * 4 + data
        )
        _check_signature("deposit", signature)
        return Collect(valid_after, valid_before, salt, signature=signature, size=len(data))
    if collector == PERMIT2_COLLECTOR:
        nonce, deadline, signature, segment = decode_args(
            "deposit", ("uint256", "uint256", "bytes", "bytes"), b"\x00" * 4 + data
        )
        _check_signature("deposit", signature)
        permit2612 = None
        if segment:
            value, permit_deadline, v, r, s = decode_args(
                "deposit", ("uint256", "uint256", "uint8", "bytes32", "bytes32"), b"\x00" * 4 + segment
            )
            permit2612 = (value, permit_deadline, v, r, s)
        return Collect(
            nonce=nonce, deadline=deadline, signature=signature, permit2612=permit2612, size=len(data)
        )
    raise ChainError("deposit: the ledger backend models no collector but the two at genesis")


# -- views ----------------------------------------------------------------------------------------


def view(store: fr.Store, ctx: Context, data: bytes) -> bytes:
    """The answer of one of the contract's views (``VIEWS``) to ``data``."""
    name, types = VIEWS[data[:4]]
    args = decode_args(name, types, data)
    if name == "channels":
        return b"".join(_n(half) for half in _pair(store.get(channel_key(args[0]))))
    if name == "pendingWithdrawals":
        return b"".join(_n(half) for half in _pair(store.get(withdrawal_key(args[0]))))
    if name == "refundNonce":
        return _n(store.get(refund_nonce_key(args[0])))
    if name == "receivers":
        receiver, token = (bytes(canonical(a)) for a in args)
        return b"".join(_n(half) for half in _pair(store.get(receiver_key(receiver, token))))
    if name == "getChannelId":
        return channel_id(ctx, _config(args[0]))
    if name == "getVoucherDigest":
        return voucher_digest(ctx, *args)
    if name == "getRefundDigest":
        return refund_digest(ctx, *args)
    return claim_batch_digest(ctx, tuple(_row(r) for r in args[0]))


def call_output(path: str) -> bytes:
    """What a successful call returns: a multicall its (empty) results, the rest nothing."""
    if not path.startswith("batch.multicall["):
        return b""
    body = path[len("batch.multicall[") :].rpartition("]")[0]
    return encode(["bytes[]"], [[b""] * (body.count(";") + 1 if body else 0)])


# -- digests ----------------------------------------------------------------------------------------


def _typed(ctx: Context, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + ctx.domain + struct_hash)


def channel_id(ctx: Context, config: Config) -> bytes:
    return _typed(ctx, keccak(CHANNEL_CONFIG_TYPEHASH + config.encoded()))


def voucher_digest(ctx: Context, channel: bytes, max_claimable: int) -> bytes:
    return _typed(ctx, keccak(VOUCHER_TYPEHASH + channel + _n(max_claimable)))


def refund_digest(ctx: Context, channel: bytes, nonce: int, amount: int) -> bytes:
    return _typed(ctx, keccak(REFUND_TYPEHASH + channel + _n(nonce) + _n(amount)))


def claim_batch_digest(ctx: Context, rows: tuple[Row, ...]) -> bytes:
    entries = b"".join(
        keccak(CLAIM_ENTRY_TYPEHASH + channel_id(ctx, r.config) + _n(r.max_claimable) + _n(r.total_claimed))
        for r in rows
    )
    return _typed(ctx, keccak(CLAIM_BATCH_TYPEHASH + keccak(entries)))


def _try_recover(digest: bytes, signature: bytes, recover: Recover) -> tuple[bytes | None, str]:
    """OpenZeppelin's ``ECDSA.tryRecover`` as the contract writes it, for 65 bytes: (signer, "") or
    (None, the failure: ``"high_s"`` or ``"no_signer"``)."""
    r, s, v = signature[:32], signature[32:64], signature[64]
    if int.from_bytes(s, "big") > SECP256K1_HALF_N:
        return None, "high_s"
    signer = recover(digest, v, r, s) if v in (27, 28) else None  # the precompile's range
    if signer is None:
        return None, "no_signer"
    return signer, ""


def _custom(signature: str, *words: bytes) -> str:
    """The revert text of a custom error with arguments, as the chains decode it."""
    return revert_reason(selector(signature) + b"".join(words)) or fr.BARE_REVERT


# -- the contract -----------------------------------------------------------------------------------


def run(frame: Frame, ctx: Context, timestamp: int, sender: bytes, call: Call, recover: Recover) -> Outcome:
    """Execute ``call`` sent by ``sender`` (also the transaction's origin)."""
    to = call.args[0] if call.function == "collect" else BATCH
    frame.warm.update((b"@" + sender, b"@" + to))
    if call.function == "collect":
        kind = "erc3009" if to == ERC3009_COLLECTOR else "permit2"
        frame.emitter = to
        return "OnlyX402BatchSettlement()", f"collect.{kind}|OnlyX402BatchSettlement~{call.args[1]}"
    contract = _Batch(frame, ctx, timestamp, sender, recover)
    if call.function != "multicall":
        return contract.dispatch(call)
    inner_paths = []
    for index, inner in enumerate(call.args):
        reason, path = contract.dispatch(inner)
        inner_paths.append(f"{path}~{_words(inner.data)}")
        if reason is not None:
            size = _revert_size(reason)
            if size == 0:
                reason = "FailedCall()"
            # the calls after the failing one were still read in (a cost per call and per word)
            later = ",".join(str(_words(later.data)) for later in call.args[index + 1 :])
            return reason, f"batch.multicall[{';'.join(inner_paths)}]fail~{-(-size // 32)}~{later}"
    frame.emitter = BATCH
    return None, f"batch.multicall[{';'.join(inner_paths)}]ok"


def _words(data: bytes) -> int:
    return -(-len(data) // 32)


def _revert_size(reason: str) -> int:
    """The length of the revert data behind a reason text (what a multicall copies and passes on):
    a custom error's selector and argument words, or an ``Error(string)``."""
    if reason == fr.BARE_REVERT:
        return 0
    name, paren, args = reason.partition("(")
    if paren and reason.endswith(")") and name.isidentifier():
        if args == ")":
            return 4
        for signature in CUSTOM_ERRORS:
            known, _, types = signature[:-1].partition("(")
            if known == name and types:
                return 4 + 32 * len(types.split(","))
    return 4 + 64 + 32 * _words(reason.encode())


@dataclass
class _Batch:
    frame: Frame
    ctx: Context
    timestamp: int
    sender: bytes
    recover: Recover

    def dispatch(self, call: Call) -> Outcome:
        self.frame.emitter = BATCH
        function = cast(Callable[..., Outcome], getattr(self, "_" + call.function))
        return function(*call.args)

    def _log(self, name: str, *topics: bytes, data: bytes = b"") -> None:
        self.frame.emitter = BATCH
        self.frame.log(EVENT_TOPICS[name], *topics, data=data)

    def _is_valid_signature_now(self, signer: bytes, digest: bytes, signature: bytes) -> str:
        """``SignatureChecker.isValidSignatureNow`` for a signer without code: "" when valid, else
        the failure (``"high_s"``, ``"no_signer"``, or ``"wrong"``)."""
        touch_account(self.frame, signer)  # signer.is_contract
        recovered, failure = _try_recover(digest, signature, self.recover)
        if failure:
            return failure
        return "" if recovered == signer else "wrong"

    # deposit --------------------------------------------------------------------------------------

    def _deposit(self, config: Config, amount: int, collector: bytes, collect: Collect) -> Outcome:
        f = self.frame
        words = f"~{-(-collect.size // 32)}"  # the contract takes collectorData in at a cost per word
        for field, address in (
            ("payer", config.payer),
            ("receiver", config.receiver),
            ("receiverAuthorizer", config.receiver_authorizer),
            ("token", config.token),
        ):
            if address == fr.ZERO:
                return "InvalidChannel()", f"batch.deposit|InvalidChannel:{field}{words}"
        if config.withdraw_delay < MIN_WITHDRAW_DELAY:
            return "WithdrawDelayOutOfRange()", "batch.deposit|WithdrawDelayOutOfRange:low" + words
        if config.withdraw_delay > MAX_WITHDRAW_DELAY:
            return "WithdrawDelayOutOfRange()", "batch.deposit|WithdrawDelayOutOfRange:high" + words
        if amount == 0:
            return "ZeroDeposit()", "batch.deposit|ZeroDeposit" + words
        if collector == fr.ZERO:
            return "InvalidCollector()", "batch.deposit|InvalidCollector" + words
        channel = channel_id(self.ctx, config)
        balance, claimed = _pair(f.load(channel_key(channel)))
        if amount > UINT128_MAX - balance:
            return "DepositOverflow()", "batch.deposit|DepositOverflow" + words
        balance += amount
        f.save(channel_key(channel), _pack(balance, claimed))
        touch_account(f, config.token)
        before = f.load(fr.balance_key(BATCH))
        touch_account(f, collector)
        if collector == ERC3009_COLLECTOR:
            prefix = "batch.deposit.erc3009|"
            reason, inner = self._collect_erc3009(config, amount, channel, collect)
        else:
            prefix = "batch.deposit.permit2|"
            reason, inner = self._collect_permit2(config, amount, channel, collect)
        if reason is not None:
            return reason, prefix + inner
        after = f.load(fr.balance_key(BATCH))
        if after != before + amount:
            return "DepositCollectionFailed()", prefix + inner + "|DepositCollectionFailed"
        created = ""
        if balance == amount and claimed == 0:
            self._log("ChannelCreated", channel, data=config.encoded())
            created = ":created"
        self._log("Deposited", channel, _word(self.sender), data=_n(amount) + _n(balance))
        return None, f"{prefix}{inner}|ok{created}"

    def _collect_erc3009(self, config: Config, amount: int, channel: bytes, c: Collect) -> Outcome:
        """``erc3009_deposit_collector.collect``: its exit point is the token's, then the
        forwarding transfer's."""
        f = self.frame
        nonce = keccak(channel + _n(c.salt))
        r, s, v = c.signature[:32], c.signature[32:64], c.signature[64]
        f.emitter = None
        reason, received = fr.receive_with_authorization(
            f, self.ctx.p2.token, self.timestamp, ERC3009_COLLECTOR, config.payer, ERC3009_COLLECTOR, amount,
            c.valid_after, c.valid_before, nonce, v, r, s, self.recover,
        )  # fmt: skip
        if reason is not None:
            return reason, received
        # _safe_transfer: the ledger's token answers True or reverts
        reason, moved = fr.move(f, ERC3009_COLLECTOR, BATCH, amount, "transfer")
        return reason, f"{received}|{moved}"

    def _collect_permit2(self, config: Config, amount: int, channel: bytes, c: Collect) -> Outcome:
        """``permit2_deposit_collector.collect``: its exit point is the EIP-2612 permit's (when
        the data carries one), then Permit2's."""
        f = self.frame
        permit_path = ""
        if c.permit2612 is not None:
            value, deadline, v, r, s = c.permit2612
            if value != amount:
                return "Permit2612AmountMismatch()", "Permit2612AmountMismatch"
            permit_path = self._try_permit(config.payer, value, deadline, v, r, s) + "|"
        touch_account(f, p2.PERMIT2)
        witness = keccak(DEPOSIT_WITNESS_TYPEHASH + channel)
        permit = p2.PermitTransferFrom(config.token, amount, c.nonce, c.deadline)
        owner_key = b"@" + config.payer
        warm_before = owner_key in f.warm
        reason, path = p2.permit_witness_transfer_from(
            f, self.ctx.p2, self.timestamp, self.sender, PERMIT2_COLLECTOR, permit, BATCH, amount,
            config.payer, witness, DEPOSIT_WITNESS_TYPE_STRING.encode(), c.signature, self.recover,
        )  # fmt: skip
        if path not in _BEFORE_OWNER_CHECK:
            # Permit2 asked for the owner's code: permit2_rules charges it cold unless the owner
            # is the origin; it may be warm already from earlier in this transaction.
            if warm_before and config.payer != self.sender:
                f.gas -= COLD_SURCHARGE
            f.warm.add(owner_key)
        f.emitter = BATCH
        return reason, permit_path + path

    def _try_permit(self, owner: bytes, value: int, deadline: int, v: int, r: bytes, s: bytes) -> str:
        """The collector's best-effort EIP-2612 ``permit`` of Permit2; its exit point. A failure
        rolls the token's writes and storage access back and logs the reason."""
        f = self.frame
        saved = (dict(f.writes), set(f.warm), list(f.logs), f.refund)
        f.emitter = None
        token = self.ctx.p2.token
        reason, path = p2.permit(
            f, token, self.timestamp, owner, p2.PERMIT2, value, deadline, v, r, s, self.recover
        )
        if reason is None:
            return path
        f.writes, f.warm, f.logs, f.refund = saved
        text = reason.encode()
        f.emitter = PERMIT2_COLLECTOR
        f.log(
            p2.PERMIT_FAILED_WITH_REASON_TOPIC,
            _word(self.ctx.p2.token_address),
            _word(owner),
            data=_n(32) + _n(len(text)) + text.ljust(32 * _words(text), b"\x00"),
        )
        return path

    # claims ---------------------------------------------------------------------------------------

    def _claim(self, rows: tuple[Row, ...]) -> Outcome:
        if not rows:
            return "EmptyBatch()", "batch.claim|EmptyBatch"
        done: list[str] = []
        for index, row in enumerate(rows):
            unrun = f"~{len(rows) - index - 1}"  # rows after a failing one are read in all the same
            # _is_receiver_side: the receiver is compared only when the authorizer is not the sender
            mark = "" if self.sender == row.config.receiver_authorizer else "r."
            if not mark or self.sender == row.config.receiver:
                reason, path = self._process(row)
            else:
                reason, path = "NotAuthorizedToClaim()", "NotAuthorizedToClaim"
            if reason is not None:
                return reason, "|".join(["batch.claim", *done, mark + path + unrun])
            done.append(mark + path)
        return None, "|".join(["batch.claim", *done, "ok"])

    def _claimWithSignature(self, rows: tuple[Row, ...], signature: bytes) -> Outcome:
        if not rows:
            return "EmptyBatch()", "batch.claimWithSignature|EmptyBatch"
        authorizer = rows[0].config.receiver_authorizer
        digest = claim_batch_digest(self.ctx, rows)
        head = ["batch.claimWithSignature", f"hash*{len(rows)}"]
        failure = self._is_valid_signature_now(authorizer, digest, signature)
        if failure:
            return "InvalidSignature()", "|".join([*head, f"InvalidSignature:{failure}"])
        done: list[str] = []
        for index, row in enumerate(rows):
            unrun = f"~{len(rows) - index - 1}"
            if row.config.receiver_authorizer != authorizer:
                return "NotReceiverAuthorizer()", "|".join([*head, *done, "NotReceiverAuthorizer" + unrun])
            reason, path = self._process(row)
            if reason is not None:
                return reason, "|".join([*head, *done, path + unrun])
            done.append(path)
        return None, "|".join([*head, *done, "ok"])

    def _process(self, row: Row) -> Outcome:
        """``_process_voucher_claim``: a row's exit point (``skip``, ``claim``, ``claim:payer``) or
        its failure's."""
        f, c = self.frame, row.config
        channel = channel_id(self.ctx, c)
        balance, claimed = _pair(f.load(channel_key(channel)))
        if row.total_claimed <= claimed:
            return None, "skip"
        if row.total_claimed > row.max_claimable:
            return "ClaimExceedsCeiling()", "ClaimExceedsCeiling"
        if row.total_claimed > balance:
            return "ClaimExceedsBalance()", "ClaimExceedsBalance"
        digest = voucher_digest(self.ctx, channel, row.max_claimable)
        kind = "claim"
        if c.payer_authorizer != fr.ZERO:
            signer, failure = _try_recover(digest, row.signature, self.recover)
            if failure == "high_s":
                return _custom(
                    "ECDSAInvalidSignatureS(bytes32)", row.signature[32:64]
                ), "ECDSAInvalidSignatureS"
            if failure:
                return "ECDSAInvalidSignature()", "ECDSAInvalidSignature"
            if signer != c.payer_authorizer:
                return "InvalidSignature()", "InvalidSignature"
        else:
            kind = "claim:payer"
            failure = self._is_valid_signature_now(c.payer, digest, row.signature)
            if failure:
                return "InvalidSignature()", f"InvalidSignature:payer:{failure}"
        delta = row.total_claimed - claimed
        f.save(channel_key(channel), _pack(balance, row.total_claimed))
        key = receiver_key(c.receiver, c.token)
        total, settled = _pair(f.load(key))
        total += delta
        if total > UINT128_MAX:
            return fr.BARE_REVERT, "overflow"
        f.save(key, _pack(total, settled))
        self._log("Claimed", channel, _word(self.sender), data=_n(delta) + _n(row.total_claimed))
        return None, kind

    # settle ---------------------------------------------------------------------------------------

    def _settle(self, receiver: bytes, token: bytes) -> Outcome:
        f = self.frame
        claimed, settled = _pair(f.load(receiver_key(receiver, token)))
        amount = claimed - settled  # never negative: settled only ever catches up with claimed
        if amount == 0:
            return None, "batch.settle|nothing"
        f.save(receiver_key(receiver, token), _pack(claimed, claimed))
        touch_account(f, token)
        f.emitter = None
        reason, path = fr.move(f, BATCH, receiver, amount, "transfer")
        if reason is not None:
            return reason, "batch.settle|" + path
        self._log("Settled", _word(receiver), _word(token), _word(self.sender), data=_n(amount))
        return None, "batch.settle|ok"

    # withdrawal -----------------------------------------------------------------------------------

    def _payer_side(self, config: Config) -> tuple[bool, str]:
        """(sender is the payer or its authorizer, the exit-point mark of the second comparison)."""
        if self.sender == config.payer:
            return True, ""
        return self.sender == config.payer_authorizer, "a."

    def _initiateWithdraw(self, config: Config, amount: int) -> Outcome:
        f = self.frame
        allowed, mark = self._payer_side(config)
        name = "batch.initiateWithdraw|" + mark
        if not allowed:
            return "InvalidChannel()", name + "InvalidChannel"
        if amount == 0:
            return "NothingToWithdraw()", name + "NothingToWithdraw"
        channel = channel_id(self.ctx, config)
        if _pair(f.load(withdrawal_key(channel)))[1] != 0:
            return "WithdrawalAlreadyPending()", name + "WithdrawalAlreadyPending"
        balance, claimed = _pair(f.load(channel_key(channel)))
        if amount > balance - claimed:
            return "WithdrawAmountExceedsAvailable()", name + "WithdrawAmountExceedsAvailable"
        if self.timestamp > UINT40_MAX:
            return fr.BARE_REVERT, name + "overflow"
        f.save(withdrawal_key(channel), _pack(amount, self.timestamp))
        finalize_after = self.timestamp + config.withdraw_delay
        if finalize_after > UINT40_MAX:
            return fr.BARE_REVERT, name + "overflow"
        self._log("WithdrawInitiated", channel, data=_n(amount) + _n(finalize_after))
        return None, name + "ok"

    def _finalizeWithdraw(self, config: Config) -> Outcome:
        f = self.frame
        allowed, mark = self._payer_side(config)
        name = "batch.finalizeWithdraw|" + mark
        if not allowed:
            return "NotAuthorizedToFinalizeWithdraw()", name + "NotAuthorizedToFinalizeWithdraw"
        channel = channel_id(self.ctx, config)
        requested, initiated = _pair(f.load(withdrawal_key(channel)))
        if initiated == 0:
            return "WithdrawalNotPending()", name + "WithdrawalNotPending"
        if self.timestamp < initiated + config.withdraw_delay:
            return "WithdrawDelayNotElapsed()", name + "WithdrawDelayNotElapsed"
        balance, claimed = _pair(f.load(channel_key(channel)))
        amount = min(requested, balance - claimed)
        f.save(withdrawal_key(channel), 0)
        balance -= amount
        f.save(channel_key(channel), _pack(balance, claimed))
        self._log("WithdrawFinalized", channel, _word(self.sender), data=_n(amount))
        closed = ""
        if balance == 0 and claimed == 0:
            self._log("ChannelClosed", channel, data=config.encoded())
            closed = ":closed"
        if amount == 0:
            return None, f"{name}empty{closed}"
        touch_account(f, config.token)
        f.emitter = None
        reason, path = fr.move(f, BATCH, config.payer, amount, "transfer")
        if reason is not None:
            return reason, name + path
        return None, f"{name}ok{closed}"

    # refunds --------------------------------------------------------------------------------------

    def _refund(self, config: Config, amount: int) -> Outcome:
        mark = "" if self.sender == config.receiver_authorizer else "r."
        name = "batch.refund|" + mark
        if mark and self.sender != config.receiver:
            return "NotAuthorizedToRefund()", name + "NotAuthorizedToRefund"
        return self._execute_refund(name, config, amount)

    def _refundWithSignature(self, config: Config, amount: int, nonce: int, signature: bytes) -> Outcome:
        f = self.frame
        name = "batch.refundWithSignature|"
        channel = channel_id(self.ctx, config)
        if nonce != f.load(refund_nonce_key(channel)):
            return "InvalidRefundNonce()", name + "InvalidRefundNonce"
        digest = refund_digest(self.ctx, channel, nonce, amount)
        failure = self._is_valid_signature_now(config.receiver_authorizer, digest, signature)
        if failure:
            return "InvalidSignature()", f"{name}InvalidSignature:{failure}"
        return self._execute_refund(name, config, amount)

    def _execute_refund(self, name: str, config: Config, amount: int) -> Outcome:
        f = self.frame
        if amount == 0:
            return "ZeroRefund()", name + "ZeroRefund"
        channel = channel_id(self.ctx, config)
        key = refund_nonce_key(channel)
        f.save(key, (f.load(key) + 1) % 2**256)
        balance, claimed = _pair(f.load(channel_key(channel)))
        refunded = min(amount, balance - claimed)
        if refunded == 0:
            return None, name + "nothing"
        balance -= refunded
        f.save(channel_key(channel), _pack(balance, claimed))
        pending = ""
        requested, initiated = _pair(f.load(withdrawal_key(channel)))
        if initiated != 0:
            if refunded >= requested:
                f.save(withdrawal_key(channel), 0)
                pending = ":cleared"
            else:
                f.save(withdrawal_key(channel), _pack(requested - refunded, initiated))
                pending = ":reduced"
        self._log("Refunded", channel, _word(self.sender), data=_n(refunded))
        closed = ""
        if balance == 0 and claimed == 0:
            self._log("ChannelClosed", channel, data=config.encoded())
            closed = ":closed"
        touch_account(f, config.token)
        f.emitter = None
        reason, path = fr.move(f, BATCH, config.payer, refunded, "transfer")
        if reason is not None:
            return reason, name + path
        return None, f"{name}ok{pending}{closed}"


# The Permit2 exit points reached before Permit2 asks for the owner's code.
_BEFORE_OWNER_CHECK = frozenset({"SignatureExpired", "InvalidAmount(uint256)", "InvalidNonce"})


def execution_gas(table: Mapping[str, int], path: str) -> int:
    """The storage-independent gas of exit point ``path`` (see the module docstring): most paths
    are keys of ``table``; a claim adds a constant per row by its outcome (and, signed, one per row
    hashed); a second comparison (a path token marked ``a.`` or ``r.``) adds its function's
    ``.second``; a Permit2 deposit with an EIP-2612 permit adds the permit outcome's constant; a
    multicall adds each inner call's gas, a constant per call (more for the first) and one per word
    of its data (and, failing, per word of the revert data it passes on, and per call left unrun and
    per word of its data, which the contract reads in before it runs the first)."""
    if path.startswith("batch.multicall["):
        body, _, end = path[len("batch.multicall[") :].rpartition("]")
        calls = body.split(";") if body else []
        # the first call touches the memory the loop uses: it costs more than the others
        gas = table["batch.multicall.first"] if calls else 0
        for item in calls:
            inner, _, words = item.rpartition("~")
            gas += execution_gas(table, inner) + table["batch.multicall.word"] * int(words)
        if end == "ok":
            each = table["batch.multicall.call"] + table["batch.multicall.result"]  # results returned
            return gas + table["batch.multicall|ok"] + each * len(calls)
        _, returned, later = end.split("~")
        for words in later.split(",") if later else ():
            gas += table["batch.multicall.unrun"] + table["batch.multicall.unrun_word"] * int(words)
        return (
            gas
            + table["batch.multicall|fail"]
            + table["batch.multicall.call"] * (len(calls) - 1)
            + table["batch.multicall.revert_word"] * int(returned)
        )
    name, *tokens = path.split("|")
    gas = 0
    if name in ("batch.deposit", "collect.erc3009", "collect.permit2"):
        # an exit before any collector runs: a constant and one per word of collectorData
        end, _, words = tokens[0].partition("~")
        word = "batch.deposit.word" if name == "batch.deposit" else "collect.word"
        return table[f"{name}|{end}"] + table[word] * int(words)
    if name in ("batch.claim", "batch.claimWithSignature"):
        *rows, end = tokens
        if rows and rows[0].startswith("hash*"):
            gas += table[f"{name}.hash"] * int(rows[0][5:])
            rows = rows[1:]
        for row in rows:
            gas += _marked(table, name, f"{name}.row|", row)
        end, _, unrun = end.partition("~")
        return gas + _marked(table, name, f"{name}|", end) + table[f"{name}.unrun"] * int(unrun or 0)
    if name == "batch.deposit.permit2" and len(tokens) > 1 and tokens[0].startswith("permit"):
        gas += table[f"{name}.permit|{tokens[0]}"]
        tokens = tokens[1:]
    return gas + _marked(table, name, f"{name}|", "|".join(tokens))


def _marked(table: Mapping[str, int], name: str, prefix: str, token: str) -> int:
    if token[:2] in ("a.", "r."):
        return table[f"{name}.second"] + table[prefix + token[2:]]
    return table[prefix + token]
