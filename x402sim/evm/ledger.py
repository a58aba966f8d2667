"""A chain backend without an EVM: the token's state and rules in Python, with real signatures.

``LedgerChain`` offers the surface of ``LocalChain`` that the roles and the simulator use (signed
raw transactions in, blocks, receipts with ``Transfer`` logs, balances, ``authorizationState``,
supply, time set from outside) and runs the project's EIP-3009 token (``usdc.vy`` or ``pyusd.vy``)
with the rules of ``fiat_rules`` instead of py-evm. It is about as fast as the signatures allow,
for scenarios of millions of payments. ``tests/evm/test_ledger.py`` applies random operation
sequences to both backends and demands the same balances, authorization states, verdicts, revert
texts, logs and gas: that test is this backend's licence.

Rules of this module:

* Same addresses as ``LocalChain`` built with the same arguments: bank and minter keys come from
  the seed, the token sits where the minter's deployment would put it (or at ``token_address``).
* Transactions are real: every raw transaction is decoded (EIP-1559 only) and its sender recovered
  from its signature; every authorization's signer is recovered by libsecp256k1. Recoveries are
  memoised per (digest, signature), so that verifying and then settling one authorization costs one
  recovery (a pure function: the memo changes no result).
* Gas is charged as py-evm charges it: intrinsic gas and calldata (with the EIP-7623 floor),
  storage by EIP-2929 / EIP-2200 / EIP-3529 (``fiat_rules.Frame``), the rest a constant per function
  and exit point (``EXECUTION_GAS``, calibrated on py-evm), refunds capped at a fifth; the base fee
  moves by EIP-1559 from where py-evm's deployment leaves it. Ether pays for gas at the effective
  price.
* Only what the token and the simulator need is modelled: ether transfers, and the token's
  ``transferWithAuthorization`` (v, r, s), ``cancelAuthorization``, ``transfer`` and ``mint``. Any
  other call, a contract creation, a future nonce or malformed calldata is refused at submission
  with a ``ChainError`` naming it, never mined approximately.
* ``prune_authorizations_after``, when set, forgets a used authorization that long after its
  ``validBefore`` (it can no longer settle), so that state does not grow with payments; reads of a
  forgotten one answer False. Canceled authorizations are never forgotten.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_utils import to_canonical_address, to_checksum_address

from ..errors import ChainError
from . import fiat_rules as fr
from . import rlpcodec
from .chain import (
    ETHER,
    GWEI,
    TOKEN_METADATA,
    Block,
    CallResult,
    ChainBasics,
    ChainConfig,
    Log,
    Receipt,
)
from .contracts import TOKENS, load_artifact
from .eip712 import Authorization, address_of_key, canonical, checksum, domain_separator, recover_signer
from .hashing import keccak
from .state_verify import Prediction, predict
from .token import selector

INITIAL_BASE_FEE = GWEI  # py-evm's London genesis
# Gas of the token's deployment on py-evm with its default name, symbol and version: the ledger
# does not run the deployment, but replays its effect on the base fee (other metadata moves the
# real figure by a few thousand gas, and the base fee after it by a few parts in a million).
DEPLOYMENT_GAS = {"usdc": 1_524_602, "pyusd": 1_512_634}
ELASTICITY = 2
BASE_FEE_CHANGE_DENOMINATOR = 8
TX_GAS = 21_000
CALLDATA_ZERO, CALLDATA_NONZERO = 4, 16
FLOOR_PER_TOKEN = 10  # EIP-7623 (Prague): calldata floor, per token (a non-zero byte is 4 tokens)
REFUND_QUOTIENT = 5

# Gas that does not depend on storage, per exit point of each function: opcodes, memory, the
# ecrecover precompile, logs. Measured on py-evm (Prague, Vyper 0.4.3 code) by
# ``python -m x402sim.evm.ledger_gas``; the differential test holds the ledger to them.
EXECUTION_GAS: dict[str, dict[str, int]] = {
    "usdc": {
        "cancel": 6088,
        "cancel_invalid_s": 1298,
        "cancel_invalid_v": 1354,
        "cancel_no_signer": 4555,
        "cancel_used": 654,
        "cancel_wrong_signer": 4613,
        "expired": 595,
        "invalid_s": 1492,
        "invalid_v": 1548,
        "mint": 2194,
        "mint_not_minter": 390,
        "mint_to_zero": 410,
        "mint_zero": 430,
        "no_signer": 4749,
        "not_yet_valid": 570,
        "transfer": 2437,
        "transfer:exceeds_balance": 569,
        "transfer:to_zero": 464,
        "transfer_with_authorization": 8560,
        "transfer_with_authorization:exceeds_balance": 6710,
        "transfer_with_authorization:to_zero": 6605,
        "used": 784,
        "wrong_signer": 4798,
    },
    "pyusd": {
        "already_used": 2194,
        "cancel": 6122,
        "cancel_already_used": 2041,
        "cancel_invalid_s": 1331,
        "cancel_invalid_v": 1387,
        "cancel_no_signer": 4588,
        "cancel_wrong_signer": 4646,
        "expired": 589,
        "invalid_s": 1539,
        "invalid_v": 1595,
        "mint": 2194,
        "mint_not_minter": 390,
        "mint_to_zero": 410,
        "mint_zero": 430,
        "no_signer": 4796,
        "not_yet_valid": 564,
        "transfer": 2437,
        "transfer:exceeds_balance": 569,
        "transfer:to_zero": 464,
        "transfer_with_authorization": 8607,
        "transfer_with_authorization:exceeds_balance": 6757,
        "transfer_with_authorization:to_zero": 6652,
        "wrong_signer": 4845,
    },
}

SELECTORS = {
    selector(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
    ): (
        "transferWithAuthorization",
        9,
    ),
    selector("cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"): ("cancelAuthorization", 5),
    selector("transfer(address,uint256)"): ("transfer", 2),
    selector("mint(address,uint256)"): ("mint", 2),
}
VIEWS = {
    selector("balanceOf(address)"): "balanceOf",
    selector("authorizationState(address,bytes32)"): "authorizationState",
    selector("totalSupply()"): "totalSupply",
    selector("name()"): "name",
    selector("version()"): "version",
    selector("decimals()"): "decimals",
}


# A token call: (function name, its decoded arguments: 20-byte addresses, ints, 32-byte words, a uint8).
_Call = tuple[str, list[Any]]


@dataclass
class _Tx:
    raw: bytes
    hash: bytes
    sender: str
    nonce: int
    max_priority_fee: int
    max_fee: int
    gas: int
    to: bytes
    value: int
    data: bytes
    call: _Call | None  # (function, args) for a call to the token, None for an ether transfer

    @property
    def cost(self) -> int:
        return self.gas * self.max_fee + self.value


class _Storage:
    """The token's storage words (``fiat_rules`` keys), 0 when absent."""

    def __init__(self) -> None:
        self.words: dict[bytes, int] = {}

    def get(self, key: bytes) -> int:
        return self.words.get(key, 0)


@dataclass
class LedgerChain(ChainConfig, ChainBasics):
    """The ledger backend: ``LocalChain``'s arguments and surface, the token in Python."""

    prune_authorizations_after: int | None = None
    now: int = field(init=False)

    def __post_init__(self) -> None:
        if self.token not in TOKENS:
            raise ValueError(f"unknown token {self.token!r}; expected one of {', '.join(TOKENS)}")
        name, symbol, version = TOKEN_METADATA[self.token]
        self.token_name = name if self.token_name is None else self.token_name
        self.token_symbol = symbol if self.token_symbol is None else self.token_symbol
        self.token_version = version if self.token_version is None else self.token_version
        self._rng = random.Random(f"x402sim-ledger:{self.seed}")
        self._key_counter = 0
        self.bank_key = self._derive_key("bank")
        self.bank = address_of_key(self.bank_key)
        self.minter_key = self._derive_key("minter")
        self.minter = address_of_key(self.minter_key)
        self.now = self.start_time
        self.submit_hook: Callable[[bytes], None] | None = None
        self._eth: dict[str, int] = {self.bank: 10**9 * ETHER, self.minter: 1_000 * ETHER}
        self._nonces: dict[str, int] = {self.minter: 1}  # the token's deployment used nonce 0
        deployed = checksum(keccak(rlpcodec.encode([canonical(self.minter), 0]))[-20:])  # CREATE at nonce 0
        self.usdc = to_checksum_address(self.token_address) if self.token_address else deployed
        self._token_bytes = to_canonical_address(self.usdc)
        self._rules = fr.Token(
            self.token,
            domain_separator(self.token_name, self.token_version, self.chain_id, self.usdc.lower()),
            to_canonical_address(self.minter),
        )
        self._code = (
            load_artifact(self.token).runtime_bytecode
            + keccak(self.token_name.encode())
            + keccak(self.token_version.encode())
        )
        self._storage = _Storage()
        self._expiry: list[tuple[int, bytes]] = []  # heap of (validBefore, authorization key)
        self._pending: list[_Tx] = []
        self._pending_by_sender: dict[str, tuple[int, int]] = {}  # sender -> (count, reserved wei)
        self._receipts: dict[bytes, Receipt] = {}
        self._number = 2 if self.token_address else 1  # genesis, the deployment, the move
        self._head_hash = keccak(f"x402sim-ledger:{self.seed}:{self._number}".encode())
        self._timestamp = self.start_time
        # The base fee as py-evm leaves it: genesis, the deployment block, the move block.
        target = self.block_gas_limit // ELASTICITY
        deployment = _next_base_fee(INITIAL_BASE_FEE, 0, target)
        self._next_base_fee = _next_base_fee(deployment, DEPLOYMENT_GAS[self.token], target)
        if self.token_address:
            self._next_base_fee = _next_base_fee(self._next_base_fee, 0, target)
        self.multicall = None

    # -- transactions -----------------------------------------------------------------------------

    def send_raw_transaction(self, raw: bytes) -> bytes:
        if self.submit_hook is not None:
            self.submit_hook(raw)
        tx = self._decode(raw)
        expected = self.pending_nonce(tx.sender)
        if tx.nonce < self.nonce(tx.sender):
            raise ChainError(
                f"nonce too low: {tx.nonce} of {tx.sender}, its next nonce is {self.nonce(tx.sender)}"
            )
        if tx.nonce < expected:
            raise ChainError(
                f"nonce {tx.nonce} of {tx.sender} is already pending (replacement is not supported)"
            )
        if tx.nonce > expected:
            raise ChainError(
                f"nonce {tx.nonce} of {tx.sender} is ahead of {expected}: the ledger backend queues none"
            )
        if tx.gas > self.block_gas_limit:
            raise ChainError(f"gas {tx.gas} exceeds the block gas limit {self.block_gas_limit}")
        if tx.max_fee < self.base_fee:
            raise ChainError(f"max fee per gas {tx.max_fee} is below the base fee {self.base_fee}")
        count, reserved = self._pending_by_sender.get(tx.sender, (0, 0))
        if self.eth_balance(tx.sender) < reserved + tx.cost:
            raise ChainError(f"{tx.sender} has too little ether for gas and value")
        if tx.gas < self._intrinsic(tx.data)[1]:
            raise ChainError(f"intrinsic gas too low: {tx.gas}")
        self._pending.append(tx)
        self._pending_by_sender[tx.sender] = (count + 1, reserved + tx.cost)
        return tx.hash

    def send_bundle(self, raws: list[bytes]) -> list[bytes]:
        """Take the transactions in order for the next block (the ledger models no ether moved to a
        bundle's later sender: a transaction that needs it is refused, as any call it does not model)."""
        return [self.send_raw_transaction(raw) for raw in raws]

    def _decode(self, raw: bytes) -> _Tx:
        if not raw or raw[0] != 2:
            raise ChainError(
                "invalid transaction: the ledger backend takes EIP-1559 (type 2) transactions only"
            )
        body = raw[1:]
        try:
            items = rlpcodec.split(body)
            if len(items) != 12 or items[8][2] is not True:
                raise ValueError("an EIP-1559 transaction has 12 fields, the ninth a list")
            # the ninth field, the access list, is None here and is read from ``items`` only
            fields = cast(
                "list[bytes]", [None if is_list else rlpcodec.payload(body, a, b) for a, b, is_list in items]
            )
        except ValueError as exc:
            raise ChainError(f"invalid transaction: {exc}") from exc
        chain_id, nonce, tip, cap, gas = (_int(f) for f in fields[:5])
        to, value, data, y, r, s = (
            fields[5],
            _int(fields[6]),
            fields[7],
            _int(fields[9]),
            fields[10],
            fields[11],
        )
        if chain_id != self.chain_id:
            raise ChainError(f"transaction chain id {chain_id} is not {self.chain_id}")
        if items[8][1] - items[8][0] != 1:
            raise ChainError("invalid transaction: the ledger backend models no access lists")
        if y not in (0, 1) or len(r) > 32 or len(s) > 32:
            raise ChainError("invalid sender: the signature does not recover to an address")
        # The signed hash covers the first nine fields, re-listed: their bytes are taken as received.
        start, end = items[0][0], items[8][1]
        digest = keccak(b"\x02" + rlpcodec.list_header(end - start) + body[start:end])
        signer = recover_signer(digest, 27 + y, r.rjust(32, b"\x00"), s.rjust(32, b"\x00"))
        if signer is None:
            raise ChainError("invalid sender: the signature does not recover to an address")
        if len(to) != 20:
            raise ChainError("invalid transaction: the ledger backend creates no contracts")
        call = None
        if to == self._token_bytes:
            call = self._parse_call(data)
        elif data:
            raise ChainError(f"the ledger backend models no contract at {checksum(to)}")
        return _Tx(raw, keccak(raw), checksum(signer), nonce, tip, cap, gas, to, value, data, call)

    def _parse_call(self, data: bytes) -> _Call:
        entry = SELECTORS.get(data[:4])
        if entry is None:
            raise ChainError(f"the ledger backend does not model token call 0x{data[:4].hex()}")
        function, n = entry
        words = data[4:]
        if len(words) != 32 * n:
            raise ChainError(f"{function}: calldata of {len(words)} bytes, expected {32 * n}")
        args = [words[32 * i : 32 * i + 32] for i in range(n)]
        types = {
            "transferWithAuthorization": "aauuubvbb",
            "cancelAuthorization": "abvbb",
            "transfer": "au",
            "mint": "au",
        }[function]
        decoded: list[Any] = []
        for kind, word in zip(types, args, strict=True):
            if kind == "a":
                if any(word[:12]):
                    raise ChainError(f"{function}: an address argument with high bits set")
                decoded.append(word[12:])
            elif kind == "v":
                if any(word[:31]):
                    raise ChainError(f"{function}: a uint8 argument out of range")
                decoded.append(word[31])
            elif kind == "u":
                decoded.append(int.from_bytes(word, "big"))
            else:
                decoded.append(word)
        return function, decoded

    def pending_nonce(self, address: str) -> int:
        sender = checksum(address)
        return self.nonce(sender) + self._pending_by_sender.get(sender, (0, 0))[0]

    def nonce(self, address: str) -> int:
        return self._nonces.get(checksum(address), 0)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def queued_count(self) -> int:
        return 0

    # -- blocks -------------------------------------------------------------------------------------

    def mine(self) -> Block:
        """Mine one block at ``now`` holding every pending transaction that fits."""
        timestamp = max(self.now, self._timestamp)
        base_fee = self._next_base_fee
        number = self._number + 1
        block_hash = keccak(self._head_hash + number.to_bytes(8, "big") + timestamp.to_bytes(8, "big"))
        included, kept, declared, blocked = [], [], 0, set()
        for tx in self._pending:
            fits = declared + tx.gas <= self.block_gas_limit and tx.max_fee >= base_fee
            if fits and tx.sender not in blocked:
                included.append(tx)
                declared += tx.gas
            else:
                blocked.add(tx.sender)
                kept.append(tx)
        self._pending = kept
        self._pending_by_sender = {}
        for tx in kept:
            count, reserved = self._pending_by_sender.get(tx.sender, (0, 0))
            self._pending_by_sender[tx.sender] = (count + 1, reserved + tx.cost)
        gas_used = 0
        for index, tx in enumerate(included):
            receipt = self._execute(tx, index, number, timestamp, base_fee)
            self._receipts[tx.hash] = receipt
            gas_used += receipt.gas_used
        self._number, self._head_hash, self._timestamp = number, block_hash, timestamp
        self._next_base_fee = _next_base_fee(base_fee, gas_used, self.block_gas_limit // ELASTICITY)
        self.now = max(self.now, timestamp)
        if self.prune_authorizations_after is not None:
            self._prune(timestamp - self.prune_authorizations_after)
        return Block(number, timestamp, block_hash, tuple(tx.hash for tx in included), gas_used, base_fee)

    def _execute(self, tx: _Tx, index: int, number: int, timestamp: int, base_fee: int) -> Receipt:
        price = min(tx.max_fee, base_fee + tx.max_priority_fee)
        self._nonces[tx.sender] = tx.nonce + 1
        frame, reason, path = None, None, "ether"
        intrinsic, floor = self._intrinsic(tx.data)
        if tx.call is not None:
            frame = fr.Frame(self._storage)
            reason, path = self._run(frame, tx.call, canonical(tx.sender), timestamp)
        execution = 0 if frame is None else EXECUTION_GAS[self.token][path] + frame.gas
        used = intrinsic + execution
        out_of_gas = used > tx.gas
        if out_of_gas:
            used, reason = tx.gas, "OutOfGas"
        elif reason is None and frame is not None:
            used -= min(frame.refund, used // REFUND_QUOTIENT)
        used = max(used, floor) if not out_of_gas else used
        ok = reason is None
        fee = used * price
        self._eth[tx.sender] = self.eth_balance(tx.sender) - fee - (tx.value if ok else 0)
        logs: tuple[Log, ...] = ()
        if ok:
            if tx.value:
                target = checksum(tx.to)
                self._eth[target] = self.eth_balance(target) + tx.value
            if frame is not None:
                self._commit(frame, cast(_Call, tx.call))  # a frame is made for a token call only
                logs = tuple(Log(self.usdc, topics, data) for topics, data in frame.logs)
        return Receipt(
            tx_hash=tx.hash,
            sender=tx.sender,
            to=checksum(tx.to),
            success=ok,
            gas_used=used,
            effective_gas_price=price,
            block_number=number,
            block_timestamp=timestamp,
            index=index,
            logs=logs,
            revert_reason=reason,
        )

    def _run(self, frame: fr.Frame, call: _Call, sender: bytes, timestamp: int) -> tuple[str | None, str]:
        function, a = call
        # recover_signer goes in the spread: mypy cannot count ``*a``, and refuses arguments after it
        if function == "transferWithAuthorization":
            return fr.transfer_with_authorization(frame, self._rules, timestamp, *(*a, recover_signer))
        if function == "cancelAuthorization":
            return fr.cancel_authorization(frame, self._rules, *(*a, recover_signer))
        if function == "transfer":
            return fr.transfer(frame, sender, *a)
        return fr.mint(frame, self._rules, sender, *a)

    def _commit(self, frame: fr.Frame, call: _Call) -> None:
        self._storage.words.update(frame.writes)
        if self.prune_authorizations_after is not None and call[0] == "transferWithAuthorization":
            from_, valid_before, nonce = call[1][0], call[1][4], call[1][5]
            heapq.heappush(self._expiry, (valid_before, fr.authorization_key(from_, nonce)))

    def _prune(self, before: int) -> None:
        expiry, words = self._expiry, self._storage.words
        while expiry and expiry[0][0] < before:
            words.pop(heapq.heappop(expiry)[1], None)

    @staticmethod
    def _intrinsic(data: bytes) -> tuple[int, int]:
        """(intrinsic gas, EIP-7623 floor) of a call with ``data``."""
        zeros = data.count(0)
        nonzero = len(data) - zeros
        intrinsic = TX_GAS + CALLDATA_ZERO * zeros + CALLDATA_NONZERO * nonzero
        return intrinsic, TX_GAS + FLOOR_PER_TOKEN * (zeros + 4 * nonzero)

    # -- reads ------------------------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        return self._number

    @property
    def latest_timestamp(self) -> int:
        return self._timestamp

    @property
    def base_fee(self) -> int:
        """Base fee of the next block."""
        return self._next_base_fee

    def eth_balance(self, address: str) -> int:
        return self._eth.get(checksum(address), 0)

    def code(self, address: str) -> bytes:
        return self._code if canonical(address) == self._token_bytes else b""

    def token_variant(self, address: str) -> str | None:
        return self.token if canonical(address) == self._token_bytes else None

    def _token(self, token: str | None) -> None:
        if token is not None and canonical(token) != self._token_bytes:
            raise ChainError(f"no token at {token} on the ledger backend")

    def balance_of(self, address: str, token: str | None = None) -> int:
        self._token(token)
        return self._storage.get(fr.balance_key(canonical(address)))

    def total_supply(self, token: str | None = None) -> int:
        self._token(token)
        return self._storage.get(fr.SUPPLY)

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        self._token(token)
        return bool(self._storage.get(fr.authorization_key(canonical(authorizer), nonce)))

    def name_of(self, token: str | None = None) -> str:
        self._token(token)
        return cast(str, self.token_name)  # set by __post_init__

    def version_of(self, token: str | None = None) -> str:
        self._token(token)
        return cast(str, self.token_version)  # set by __post_init__

    def token_state(self, asset: str) -> LedgerTokenState | None:
        """The token's state for ``state_verify`` (None for any other address)."""
        if canonical(asset) != self._token_bytes:
            return None
        return LedgerTokenState(self)

    def call(
        self,
        to: str,
        data: bytes,
        *,
        sender: str = "0x" + "00" * 20,
        timestamp: int | None = None,
        **_: object,
    ) -> CallResult:
        """Simulate a call to the token in the next block (nothing is kept); views answer too."""
        if canonical(to) != self._token_bytes:
            return CallResult(True, b"", None, 0)  # no code: a call to an account succeeds, empty
        stamp = max(timestamp if timestamp is not None else self.now, self._timestamp)
        view = VIEWS.get(data[:4])
        if view is not None:
            return CallResult(True, self._view(view, data[4:]), None, 0)
        try:
            call = self._parse_call(data)
        except ChainError:
            return CallResult(False, b"", fr.BARE_REVERT, 0, reverted=True)
        frame = fr.Frame(self._storage)
        reason, path = self._run(frame, call, canonical(sender), stamp)
        gas = EXECUTION_GAS[self.token].get(path, 0) + frame.gas
        if reason is None:
            return CallResult(True, b"", None, gas)
        return CallResult(False, b"", reason, gas, reverted=True)

    def _view(self, view: str, args: bytes) -> bytes:
        if view == "balanceOf":
            return self._storage.get(fr.balance_key(args[12:32])).to_bytes(32, "big")
        if view == "authorizationState":
            return self._storage.get(fr.authorization_key(args[12:32], args[32:64])).to_bytes(32, "big")
        if view == "totalSupply":
            return self._storage.get(fr.SUPPLY).to_bytes(32, "big")
        if view == "decimals":
            return (6).to_bytes(32, "big")
        text = cast(str, self.token_name if view == "name" else self.token_version).encode()
        padded = text.ljust(-(-len(text) // 32) * 32, b"\x00")
        return (32).to_bytes(32, "big") + len(text).to_bytes(32, "big") + padded


@dataclass(frozen=True)
class LedgerTokenState:
    """The ledger's token, seen by ``state_verify``: views plus ``predict``, as ``TokenState``."""

    chain: LedgerChain

    def balance_of(self, address: str, token: str | None = None) -> int:
        return self.chain.balance_of(address)

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        return self.chain.authorization_state(authorizer, nonce)

    def name_of(self, token: str | None = None) -> str:
        return cast(str, self.chain.token_name)  # set by the chain's __post_init__

    def version_of(self, token: str | None = None) -> str:
        return cast(str, self.chain.token_version)

    def predict(self, auth: Authorization, v: int, r: bytes, s: bytes, now: int) -> Prediction:
        c = self.chain
        stamp = max(now, c.latest_timestamp)
        name, version = cast(str, c.token_name), cast(str, c.token_version)  # set by __post_init__
        return predict(c._storage, c.token, name, version, c.chain_id, c.usdc, auth, v, r, s, stamp)


def _next_base_fee(parent: int, used: int, target: int) -> int:
    """EIP-1559: the base fee after a block of ``used`` gas."""
    if used == target:
        return parent
    if used > target:
        return parent + max(parent * (used - target) // target // BASE_FEE_CHANGE_DENOMINATOR, 1)
    return parent - parent * (target - used) // target // BASE_FEE_CHANGE_DENOMINATOR


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")
