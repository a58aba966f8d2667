"""An embedded Ethereum chain (eth-tester + py-evm) whose clock and blocks we drive.

``LocalChain`` holds a real EVM with an EIP-3009 token deployed by a real transaction (USDC-like by
default, or PYUSD-like: ``token="pyusd"``), a Multicall3-compatible contract at its canonical
address, the ERC-8004 identity and reputation registries at the addresses of the ERC-8004
team's mainnet deployments, and Permit2 with the x402 exact and upto Permit2 proxies at their
canonical addresses (genesis code, so they cost no transaction). It differs from
eth-tester's own auto-mining backend in the three ways a payment laboratory needs:

* **Time is ours.** Block timestamps come from ``now``, which only moves when we say so
  (``set_time`` / ``advance``); the wall clock is never read. A block is stamped ``now``; blocks
  may share a second (unlike Ethereum, see ``_same_second_prague_vm``), so mining never moves time.
* **Blocks are ours.** Submitted transactions wait in a pending pool; ``mine()`` puts all of them
  (up to the block gas limit) into one block in a single pass through py-evm's ``mine_all``,
  several per sender in nonce order. eth-tester's pending-block path re-executes the block on every
  transaction (quadratic) and cannot queue two transactions from one sender.
* **Future nonces wait, as on geth and Hardhat.** A transaction whose nonce is ahead of its sender's
  next nonce is *queued* (not executable, not counted by ``pending_nonce``) and promoted to the
  pending pool when the gap fills; one still queued ``future_lifetime`` seconds of chain time later
  is dropped, and so is one whose nonce the sender has used meanwhile. At most
  ``MAX_QUEUED_PER_SENDER`` wait per sender.
* **A plug point for worlds.** ``submit_hook``, when set, sees every raw transaction before it is
  taken, and may refuse it by raising ``ChainError`` (the simulator injects RPC faults and reads
  each transaction's bytes for its fee model there).
* **Real addresses when asked.** ``token_address`` places the token at a given address (a real
  network's USDC, see ``presets``) after deploying it normally, so that SDKs whose default asset
  tables name that address, with its chain id (``from_preset``), pay on this chain unmodified.
* **Reads are plain.** Balances, ``authorizationState``, total supply and ``Transfer`` logs are
  one call each, and ``call()`` simulates a transaction at the next block's timestamp, returning
  the revert text instead of raising.

Keys made here are test keys derived from the seed; never use them for anything real.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, cast

# py-evm (``eth``) and eth-tester are imported where a LocalChain first needs them: importing them
# costs seconds of CPU (py-evm builds its BLS precompile tables at import), which a run on the
# ledger backend, and every process that never makes a LocalChain, need not pay.
if TYPE_CHECKING:
    from eth.abc import (
        BlockAPI,
        BlockHeaderAPI,
        ComputationAPI,
        ReceiptAPI,
        SignedTransactionAPI,
        StateAPI,
    )

from functools import cache

from eth_abi import encode
from eth_utils import to_canonical_address, to_checksum_address

from ..errors import ChainError
from .contracts import (
    BATCH_SETTLEMENT,
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    EXACT_PERMIT2_PROXY,
    EXACT_PERMIT2_PROXY_ADDRESS,
    IDENTITY_REGISTRY,
    IDENTITY_REGISTRY_ADDRESS,
    MULTICALL3,
    MULTICALL3_ADDRESS,
    PERMIT2,
    PERMIT2_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    PYUSD,
    REPUTATION_REGISTRY,
    REPUTATION_REGISTRY_ADDRESS,
    TOKENS,
    UPTO_PERMIT2_PROXY,
    UPTO_PERMIT2_PROXY_ADDRESS,
    USDC,
    load_artifact,
)
from .eip712 import Domain, address_of_key, canonical
from .hashing import keccak
from .reads import TokenReads
from .state_verify import TokenState, evm_token_state
from .token import (
    Transfer,
    decode_transfer,
    encode_call,
    revert_reason,
)
from .txsign import GWEI as GWEI  # re-exported: fees are written in gwei across the package
from .txsign import Transacts

DEFAULT_CHAIN_ID = 31337
DEFAULT_START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z: a fixed epoch keeps runs reproducible
DEFAULT_BLOCK_GAS_LIMIT = 300_000_000
ZERO_ADDRESS = "0x" + "00" * 20
ETHER = 10**18
FUTURE_LIFETIME = 3 * 3600  # seconds a future-nonce transaction may wait (geth's txpool default)
MAX_QUEUED_PER_SENDER = 64  # future-nonce transactions one sender may park (geth's account queue)
MINT_GAS = 150_000  # declared for a funding mint (~70k used), so thousands fit in one block
# Storage slots the token's constructor writes: every state variable before the first HashMap
# (name 0-2, symbol 3-4, totalSupply 5, minter 6, _version 7-8 in Vyper 0.4.3's layout of usdc.vy
# and pyusd.vy; a test compares this with the compiler's layout). Mappings start at slot 9.
TOKEN_CONSTRUCTOR_SLOTS = 9
# The usual name, symbol and EIP-712 version of each token variant (name and version make the domain).
TOKEN_METADATA = {
    USDC: ("USD Coin", "USDC", "2"),
    PYUSD: ("PayPal USD", "PYUSD", "1"),
}


@dataclass(frozen=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class Receipt:
    """What a mined transaction did: status, gas, logs and, for a revert, its reason text."""

    tx_hash: bytes
    sender: str
    to: str | None
    success: bool
    gas_used: int
    effective_gas_price: int
    block_number: int
    block_timestamp: int
    index: int
    logs: tuple[Log, ...]
    revert_reason: str | None = None
    contract_address: str | None = None

    @property
    def fee(self) -> int:
        """Wei paid for gas."""
        return self.gas_used * self.effective_gas_price

    def transfers(self) -> list[Transfer]:
        return [
            t
            for log in self.logs
            if (
                t := decode_transfer(
                    canonical(log.address),
                    list(log.topics),
                    log.data,
                    self.block_number,
                    self.tx_hash,
                )
            )
        ]


@dataclass(frozen=True)
class CallResult:
    """A simulated call: ``reverted`` is a REVERT (``output`` holds its data); a failure that is not
    a revert (out of gas, bad opcode) has ``success`` and ``reverted`` both False."""

    success: bool
    output: bytes
    revert_reason: str | None
    gas_used: int
    reverted: bool = False


@dataclass(frozen=True)
class Block:
    number: int
    timestamp: int
    hash: bytes
    tx_hashes: tuple[bytes, ...]
    gas_used: int
    base_fee: int


@dataclass(frozen=True)
class Snapshot:
    head_hash: bytes
    head_number: int
    now: int
    pending: tuple[_Pending, ...]
    queued: tuple[tuple[str, tuple[tuple[int, _Pending], ...]], ...]  # sender -> (nonce, transaction)
    rng_state: tuple[Any, ...]  # random.Random.getstate()


@dataclass
class _Pending:
    raw: bytes
    tx: SignedTransactionAPI  # py-evm signed transaction
    sender: str
    queued_at: int = 0  # chain time it arrived (what future_lifetime counts from)


class ChainBasics(Transacts):
    """What ``LocalChain`` and the ledger backend (``ledger.LedgerChain``) share: identity, the clock,
    seeded test keys, funding by real transactions, and receipts by hash. A subclass provides
    ``chain_id``, ``seed``, ``now``, the token's ``usdc``, ``token_name`` and ``token_version``,
    ``bank_key``, ``minter_key``, ``_key_counter``, ``_receipts``, ``latest_timestamp``, ``transact``
    and ``mine``."""

    remote: ClassVar[bool] = False  # in process: calls return at once; time is set from outside
    _receipts: dict[bytes, Receipt]
    seed: int
    now: int
    usdc: str
    token_name: str | None  # None only until the subclass's __post_init__ fills in the default
    token_version: str | None
    bank_key: bytes
    minter_key: bytes
    _key_counter: int

    if TYPE_CHECKING:  # provided by the subclasses; declared here for the type checker only

        @property
        def latest_timestamp(self) -> int: ...

        def mine(self) -> Block: ...

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def domain(self) -> Domain:
        return Domain(cast(str, self.token_name), cast(str, self.token_version), self.chain_id, self.usdc)

    def set_time(self, timestamp: int) -> None:
        if timestamp < self.latest_timestamp:
            raise ChainError(
                f"cannot set time to {timestamp}: the latest block is at {self.latest_timestamp}"
            )
        self.now = timestamp

    def advance(self, seconds: int) -> int:
        if seconds < 0:
            raise ChainError(f"time only moves forward; got {seconds} seconds")
        self.now += seconds
        return self.now

    def new_key(self) -> bytes:
        """A fresh test private key, derived from the seed (same seed, same keys, same order)."""
        self._key_counter += 1
        return self._derive_key(f"account:{self._key_counter}")

    def _derive_key(self, label: str) -> bytes:
        return keccak(f"x402sim test key:{self.seed}:{label}".encode())

    def fund(self, address: str, *, usdc: int = 0, eth: int = 0) -> Block:
        """Mint ``usdc`` atomic units and send ``eth`` wei to ``address``, in one mined block."""
        return self.fund_many([(address, usdc, eth)])

    def fund_many(self, grants: list[tuple[str, int, int]]) -> Block:
        """Fund many accounts: ``[(address, usdc, eth_wei), ...]``, in as many blocks as it takes
        (the last one is returned). Raises ``ChainError`` unless every grant is on chain."""
        hashes = []
        for address, usdc, eth in grants:
            if usdc:
                mint = encode_call("mint(address,uint256)", address, usdc)
                hashes.append(self.transact(self.minter_key, self.usdc, mint, gas=MINT_GAS))
            if eth:
                hashes.append(self.transact(self.bank_key, address, b"", value=eth, gas=21_000))
        block = self.mine()
        while any(self._receipts.get(h) is None for h in hashes):
            if not block.tx_hashes:
                raise ChainError("funding stalled: a block took none of the pending transactions")
            block = self.mine()
        failed = [r for h in hashes if not (r := self._receipts[h]).success]
        if failed:
            raise ChainError(f"funding failed: {failed[0].revert_reason or 'reverted'}")
        return block

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        """The receipt of a mined transaction; None while it is pending or if it is unknown."""
        return self._receipts.get(tx_hash)

    def receipts(self) -> list[Receipt]:
        return list(self._receipts.values())

    def transfers(self, token: str | None = None, *, since_block: int = 0) -> list[Transfer]:
        """Every ``Transfer`` event of ``token`` (default the USDC) in mined blocks, in chain order."""
        token = to_checksum_address(token or self.usdc)
        found: list[Transfer] = []
        for r in sorted(self._receipts.values(), key=lambda r: (r.block_number, r.index)):
            if r.block_number >= since_block:
                found.extend(t for t in r.transfers() if t.token == token)
        return found

    def forget_receipts(self, hashes: Iterable[bytes]) -> None:
        """Drop receipts no one will read again (``receipts()`` and ``transfers()`` then leave them
        out; py-evm's own database keeps its copy)."""
        for h in hashes:
            self._receipts.pop(h, None)


@dataclass
class ChainConfig:
    """The settings the embedded backends share, and are built with: which chain, from when, from
    which seed, with which token (``usdc`` or ``pyusd``, optionally renamed or placed), and block
    limits. ``LocalChain`` and ``ledger.LedgerChain`` take them as their first arguments."""

    chain_id: int = DEFAULT_CHAIN_ID
    start_time: int = DEFAULT_START_TIME
    seed: int = 0
    token: str = USDC
    token_name: str | None = None
    token_symbol: str | None = None
    token_version: str | None = None
    token_address: str | None = None
    block_gas_limit: int = DEFAULT_BLOCK_GAS_LIMIT
    future_lifetime: int = FUTURE_LIFETIME

    def arguments(self) -> dict[str, Any]:
        """These settings (only these, whatever the subclass) as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(ChainConfig)}


@dataclass
class LocalChain(ChainConfig, TokenReads, ChainBasics):
    """A py-evm chain with the token and Multicall3 deployed, driven by an explicit clock.

    ``token`` picks the token contract (``"usdc"`` or ``"pyusd"``); ``token_name``, ``token_symbol``
    and ``token_version`` default to that token's usual values and hold the ones deployed.

    ``token_address``, when given, is where the token ends up (``usdc`` is then that address): it is
    deployed by a transaction as always, then its code and the storage its constructor wrote are
    moved there in one block of their own, and the deployment address is emptied. The domain is
    unchanged by the move, since the contract reads its own address and chain id at call time.
    ``from_preset`` builds a chain for a named network."""

    now: int = field(init=False)

    if TYPE_CHECKING:  # set by __post_init__: always an address here (TokenReads allows None)

        @property
        def usdc(self) -> str: ...
        @usdc.setter
        def usdc(self, value: str) -> None: ...

    def __post_init__(self) -> None:
        if self.token not in TOKENS:
            raise ValueError(f"unknown token {self.token!r}; expected one of {', '.join(TOKENS)}")
        name, symbol, version = TOKEN_METADATA[self.token]
        self.token_name = name if self.token_name is None else self.token_name
        self.token_symbol = symbol if self.token_symbol is None else self.token_symbol
        self.token_version = version if self.token_version is None else self.token_version
        if self.token_address is not None:
            self.token_address = to_checksum_address(self.token_address)
        self._rng = random.Random(f"x402sim-chain:{self.seed}")
        self._key_counter = 0
        self.bank_key = self._derive_key("bank")
        self.bank = address_of_key(self.bank_key)
        self.minter_key = self._derive_key("minter")
        self.minter = address_of_key(self.minter_key)
        multicall = load_artifact(MULTICALL3)
        genesis_state = {
            to_canonical_address(self.bank): _account_state(balance=10**9 * ETHER),
            to_canonical_address(self.minter): _account_state(balance=1_000 * ETHER),
            to_canonical_address(MULTICALL3_ADDRESS): _account_state(code=multicall.runtime_bytecode),
            **_erc8004_genesis(),
            **_permit2_genesis(),
        }
        from eth.db import get_db_backend
        from eth_tester.backends.pyevm.main import PyEVMBackend, get_default_genesis_params

        params = get_default_genesis_params(
            {"timestamp": self.start_time - 1, "gas_limit": self.block_gas_limit}
        )
        backend = PyEVMBackend(genesis_parameters=params, genesis_state=genesis_state)
        # eth-tester fixes the chain id; rebuild the same chain class with ours.
        chain_class = type(backend.chain).configure(
            chain_id=self.chain_id, vm_configuration=((0, _same_second_prague_vm()),)
        )
        backend.chain = chain_class.from_genesis(get_db_backend(), params, genesis_state)
        self.backend = backend
        self.now = self.start_time
        self.submit_hook: Callable[[bytes], None] | None = None
        self._pending: list[_Pending] = []
        self._future: dict[str, dict[int, _Pending]] = {}  # sender -> nonce -> queued transaction
        self._bundle_credit: dict[str, int] = {}  # ether a bundle being taken sends each address
        self._index_pending()
        self._receipts: dict[bytes, Receipt] = {}
        self._head_state: tuple[bytes, StateAPI | None] = (b"", None)
        # what was read of the latest block's state, kept until the head moves: storage words by
        # (address, slot), and the token variant at an address (key: the address)
        self._head_reads: dict[Any, Any] = {}
        self._base_fee: tuple[bytes, int] = (b"", 0)
        self.usdc = self._deploy_token()
        if self.token_address is not None:
            self.usdc = self._move_token(self.usdc, self.token_address)
        self.multicall = to_checksum_address(MULTICALL3_ADDRESS)
        self.identity_registry = to_checksum_address(IDENTITY_REGISTRY_ADDRESS)
        self.reputation_registry = to_checksum_address(REPUTATION_REGISTRY_ADDRESS)

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> LocalChain:
        """A chain for the network preset ``name`` (``"local"``, ``"base"``, ``"base-sepolia"``): its
        chain id, and the token at its canonical address with its EIP-712 name and version. Other
        fields come from ``kwargs``; repeating one the preset sets is a TypeError."""
        from .presets import preset

        p = preset(name)
        return cls(
            chain_id=p.chain_id,
            token_address=p.token_address,
            token_name=p.token_name,
            token_version=p.token_version,
            **kwargs,
        )

    @property
    def evm(self) -> Any:  # MiningChainAPI declares not all used here (persist_block, the db's head)
        """The underlying py-evm chain (for callers that need what this class does not wrap)."""
        return self.backend.chain

    # -- transactions -----------------------------------------------------------------------------

    def send_raw_transaction(self, raw: bytes) -> bytes:
        """Take a signed transaction for the next block (or queue it until its nonce comes up),
        refusing what could never be mined; ``ChainError`` says why."""
        if self.submit_hook is not None:
            self.submit_hook(raw)
        vm = self.evm.get_vm()
        try:
            tx: SignedTransactionAPI = vm.get_transaction_builder().decode(raw)
            tx.validate()
        except Exception as exc:
            raise ChainError(f"invalid transaction: {exc}") from exc
        try:
            sender = to_checksum_address(tx.sender)  # recovered from the signature
        except Exception:
            raise ChainError("invalid sender: the signature does not recover to an address") from None
        if getattr(tx, "chain_id", self.chain_id) not in (None, self.chain_id):
            raise ChainError(f"transaction chain id {tx.chain_id} is not {self.chain_id}")
        self._expire_future()
        mined_nonce, expected = self.nonce(sender), self.pending_nonce(sender)
        if tx.nonce < mined_nonce:
            raise ChainError(f"nonce too low: {tx.nonce} of {sender}, its next nonce is {mined_nonce}")
        waiting = self._future.get(sender, {})
        if tx.nonce < expected or tx.nonce in waiting:
            raise ChainError(
                f"nonce {tx.nonce} of {sender} is already pending (replacement is not supported)"
            )
        if tx.nonce > expected and len(waiting) >= MAX_QUEUED_PER_SENDER:
            raise ChainError(f"{sender} already has {MAX_QUEUED_PER_SENDER} transactions queued")
        if tx.gas > self.block_gas_limit:
            raise ChainError(f"gas {tx.gas} exceeds the block gas limit {self.block_gas_limit}")
        if tx.max_fee_per_gas < self.base_fee:
            raise ChainError(f"max fee per gas {tx.max_fee_per_gas} is below the base fee {self.base_fee}")
        reserved = self._queued.get(sender, (0, 0))[1] + sum(_cost(p.tx) for p in waiting.values())
        if self.eth_balance(sender) + self._bundle_credit.get(sender, 0) < reserved + _cost(tx):
            raise ChainError(f"{sender} has too little ether for gas and value")
        entry = _Pending(raw, tx, sender, self.now)
        if tx.nonce > expected:
            self._future.setdefault(sender, {})[tx.nonce] = entry
            return tx.hash
        self._pending.append(entry)
        self._add_pending(entry)
        self._promote(sender)
        return tx.hash

    def send_bundle(self, raws: list[bytes]) -> list[bytes]:
        """Take signed transactions to be mined in this order, in the next block, all or none (as a
        bundle sent to a block builder): a transaction may spend ether that an earlier one of the
        bundle sends it. ``ChainError`` names the first refused; then none is kept."""
        pending, future = list(self._pending), {s: dict(w) for s, w in self._future.items()}
        try:
            hashes = []
            for raw in raws:
                hashes.append(self.send_raw_transaction(raw))
                tx = self.pending_transaction(hashes[-1])
                if tx is not None and tx.to and tx.value:
                    to = to_checksum_address(tx.to)
                    self._bundle_credit[to] = self._bundle_credit.get(to, 0) + tx.value
            return hashes
        except ChainError:
            self._pending, self._future = pending, future
            self._index_pending()
            raise
        finally:
            self._bundle_credit = {}

    def _add_pending(self, p: _Pending) -> None:
        count, reserved = self._queued.get(p.sender, (0, 0))
        self._queued[p.sender] = (count + 1, reserved + _cost(p.tx))

    def _promote(self, sender: str) -> None:
        """Move queued transactions of ``sender`` whose nonce is now next into the pending pool."""
        waiting = self._future.get(sender)
        while waiting and (entry := waiting.pop(self.pending_nonce(sender), None)) is not None:
            self._pending.append(entry)
            self._add_pending(entry)
        if waiting is not None and not waiting:
            del self._future[sender]

    def _expire_future(self) -> None:
        """Drop queued transactions past their lifetime, or whose nonce was used meanwhile."""
        for sender in list(self._future):
            mined = self.nonce(sender)
            kept = {
                n: p
                for n, p in self._future[sender].items()
                if n >= mined and self.now - p.queued_at <= self.future_lifetime
            }
            if kept:
                self._future[sender] = kept
            else:
                del self._future[sender]

    def _index_pending(self) -> None:
        """Per sender: how many executable transactions wait, and the most ether they may spend."""
        self._queued: dict[str, tuple[int, int]] = {}
        for p in self._pending:
            self._add_pending(p)

    def pending_nonce(self, address: str) -> int:
        sender = to_checksum_address(address)
        return self.nonce(sender) + self._queued.get(sender, (0, 0))[0]

    def nonce(self, address: str) -> int:
        return self.latest_state().get_nonce(canonical(address))

    @property
    def pending_count(self) -> int:
        """Executable transactions waiting for a block."""
        return len(self._pending)

    @property
    def queued_count(self) -> int:
        """Transactions waiting for an earlier nonce of their sender."""
        return sum(len(waiting) for waiting in self._future.values())

    def pending_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        """The signed py-evm transaction waiting (pending or queued) under ``tx_hash``, or None."""
        queued = (p for waiting in self._future.values() for p in waiting.values())
        return next((p.tx for p in (*self._pending, *queued) if p.tx.hash == tx_hash), None)

    def mine(self) -> Block:
        """Mine one block at ``now`` holding every pending transaction that fits."""
        chain = self.evm
        latest = chain.get_canonical_head()
        timestamp = max(self.now, latest.timestamp)
        header = chain.create_header_from_parent(latest, timestamp=timestamp)
        chain.header = header
        included, kept, gas, blocked = [], [], 0, set()
        for p in self._pending:
            fits = gas + p.tx.gas <= header.gas_limit and p.tx.max_fee_per_gas >= header.base_fee_per_gas
            if fits and p.sender not in blocked:
                included.append(p)
                gas += p.tx.gas
            else:
                blocked.add(p.sender)  # later nonces of a skipped sender must wait too
                kept.append(p)
        txs = [p.tx for p in included]
        result, receipts, computations = chain.mine_all(
            txs, coinbase=to_canonical_address(ZERO_ADDRESS), mix_hash=self._rng.randbytes(32)
        )
        block = result.imported_block
        self._pending = kept
        self._index_pending()
        self.now = max(self.now, block.header.timestamp)
        self._expire_future()
        previous_gas = 0
        for index, (p, receipt, computation) in enumerate(zip(included, receipts, computations, strict=True)):
            self._receipts[p.tx.hash] = self._make_receipt(
                p, index, block, receipt, computation, previous_gas
            )
            previous_gas = receipt.gas_used
        return Block(
            number=block.header.block_number,
            timestamp=block.header.timestamp,
            hash=block.header.hash,
            tx_hashes=tuple(p.tx.hash for p in included),
            gas_used=block.header.gas_used,
            base_fee=block.header.base_fee_per_gas,
        )

    def _make_receipt(
        self,
        p: _Pending,
        index: int,
        block: BlockAPI,
        receipt: ReceiptAPI,
        computation: ComputationAPI,
        previous_gas: int,
    ) -> Receipt:
        tx = p.tx
        base_fee = cast(int, block.header.base_fee_per_gas)  # every Prague header has one
        price = min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)
        reason = None
        if computation.is_error:
            from eth.exceptions import Revert

            err = computation.error
            reason = revert_reason(computation.output) if isinstance(err, Revert) else None
            reason = reason or type(err).__name__
        created = None
        if not tx.to and not computation.is_error:
            created = to_checksum_address(computation.msg.storage_address)
        return Receipt(
            tx_hash=tx.hash,
            sender=p.sender,
            to=to_checksum_address(tx.to) if tx.to else None,
            success=not computation.is_error,
            gas_used=receipt.gas_used - previous_gas,
            effective_gas_price=price,
            block_number=block.header.block_number,
            block_timestamp=block.header.timestamp,
            index=index,
            logs=tuple(
                Log(
                    to_checksum_address(log.address),
                    tuple(t.to_bytes(32, "big") for t in log.topics),
                    log.data,
                )
                for log in receipt.logs
            ),
            revert_reason=reason,
            contract_address=created,
        )

    # -- reads ------------------------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        head: BlockHeaderAPI = self.evm.get_canonical_head()
        return head.block_number

    @property
    def latest_timestamp(self) -> int:
        head: BlockHeaderAPI = self.evm.get_canonical_head()
        return head.timestamp

    @property
    def base_fee(self) -> int:
        """Base fee of the next block (computed once per head)."""
        chain = self.evm
        latest = chain.get_canonical_head()
        if self._base_fee[0] != latest.hash:
            header = chain.create_header_from_parent(latest, timestamp=latest.timestamp)
            self._base_fee = (latest.hash, header.base_fee_per_gas)
        return self._base_fee[1]

    def latest_state(self) -> StateAPI:
        """Read-only state of the latest block (cached until the head changes)."""
        head = self.evm.get_canonical_head()
        if self._head_state[0] != head.hash:
            self._head_state = (head.hash, self.evm.get_vm(head).state)
            self._head_reads = {}
        return cast("StateAPI", self._head_state[1])  # set above: b"" is no block's hash

    def latest_reads(self) -> dict[Any, Any]:
        """What was read of the latest block's state so far (emptied when the head moves): a state
        that no block changes reads the same, so verify and settle of a payment read it once."""
        self.latest_state()
        return self._head_reads

    def eth_balance(self, address: str) -> int:
        return self.latest_state().get_balance(canonical(address))

    def code(self, address: str) -> bytes:
        return self.latest_state().get_code(canonical(address))

    def token_variant(self, address: str) -> str | None:
        """Which of the project's token contracts (``"usdc"``, ``"pyusd"``) runs at ``address`` in the
        latest block, told by its code; None for any other code, or none."""
        reads = self.latest_reads()
        if address in reads:
            return cast("str | None", reads[address])
        code = self.code(address)
        found = None
        for variant in TOKENS:
            # Deployed Vyper code is the runtime code followed by the immutables' values.
            if code.startswith(load_artifact(variant).runtime_bytecode):
                found = variant
                break
        reads[address] = found
        return found

    def token_state(self, asset: str) -> TokenState | None:
        """The storage view of ``asset`` when it runs one of the project's token variants (verify
        predicts from it); None for other code (verify simulates)."""
        return evm_token_state(self, asset, self.token_variant(asset))

    def call(
        self,
        to: str,
        data: bytes,
        *,
        sender: str = ZERO_ADDRESS,
        timestamp: int | None = None,
        gas: int = 10_000_000,
        after_block: int | None = None,
    ) -> CallResult:
        """Simulate a call as in the block after the latest one, stamped ``timestamp`` (default
        ``now``); fees are off and nothing is kept. ``after_block=B`` runs it on the state after
        block B instead, stamped like the canonical block B + 1 (to replay a mined transaction)."""
        chain = self.evm
        latest = chain.get_canonical_head()
        if after_block is None or after_block >= latest.block_number:
            parent = latest
            stamp = max(timestamp if timestamp is not None else self.now, latest.timestamp)
        else:
            parent = chain.get_canonical_block_header_by_number(after_block)
            stamp = chain.get_canonical_block_header_by_number(after_block + 1).timestamp
        header = chain.create_header_from_parent(parent, timestamp=stamp).copy(base_fee_per_gas=0)
        vm = chain.get_vm(header)
        state = vm.state
        sender_bytes = to_canonical_address(sender)
        unsigned = vm.create_unsigned_transaction(
            nonce=state.get_nonce(sender_bytes),
            gas_price=0,
            gas=gas,
            to=to_canonical_address(to),
            value=0,
            data=data,
        )
        from eth.exceptions import Revert
        from eth.vm.spoof import SpoofTransaction

        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(SpoofTransaction(unsigned, from_=sender_bytes))
        finally:
            state.revert(snapshot)
        used = computation.get_gas_used()
        if not computation.is_error:
            return CallResult(True, computation.output, None, used)
        if isinstance(computation.error, Revert):
            output = computation.output
            return CallResult(
                False, output, revert_reason(output) or "execution reverted", used, reverted=True
            )
        return CallResult(False, b"", str(computation.error) or type(computation.error).__name__, used)

    # -- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        head = self.evm.get_canonical_head()
        queued = tuple((sender, tuple(waiting.items())) for sender, waiting in self._future.items())
        return Snapshot(
            head.hash, head.block_number, self.now, tuple(self._pending), queued, self._rng.getstate()
        )

    def revert(self, snapshot: Snapshot) -> None:
        """Return chain state, pending pool, clock and receipts to what they were at ``snapshot``."""
        from eth.constants import GENESIS_PARENT_HASH

        chain = self.evm
        header = chain.get_block_header_by_hash(snapshot.head_hash)
        chain.chaindb._set_as_canonical_chain_head(chain.chaindb.db, header, GENESIS_PARENT_HASH)
        chain.header = chain.create_header_from_parent(header)
        self._pending = list(snapshot.pending)
        self._future = {sender: dict(waiting) for sender, waiting in snapshot.queued}
        self._index_pending()
        self._receipts = {h: r for h, r in self._receipts.items() if r.block_number <= snapshot.head_number}
        self.now = snapshot.now
        self._rng.setstate(snapshot.rng_state)

    # -- setup ------------------------------------------------------------------------------------

    def _deploy_token(self) -> str:
        artifact = load_artifact(self.token)
        args = encode(
            ["string", "string", "string"], [self.token_name, self.token_symbol, self.token_version]
        )
        tx_hash = self.transact(self.minter_key, None, artifact.bytecode + args, gas=5_000_000)
        self.mine()
        receipt = self._receipts[tx_hash]
        if not receipt.success or receipt.contract_address is None:
            raise ChainError(f"token deployment failed: {receipt.revert_reason}")
        return receipt.contract_address

    def _move_token(self, deployed: str, address: str) -> str:
        """Move the token deployed at ``deployed`` to ``address`` in a block of its own: its code (runtime
        code and immutables) and its constructor-written storage; ``deployed`` is emptied."""
        source, target = to_canonical_address(deployed), to_canonical_address(address)
        if source == target:
            return to_checksum_address(target)
        if int.from_bytes(target, "big") <= 0x100:
            raise ChainError(f"cannot place the token at {address}: a precompile address")
        chain = self.evm
        latest = chain.get_canonical_head()
        header = chain.create_header_from_parent(latest, timestamp=max(self.now, latest.timestamp))
        vm = chain.get_vm(header)
        state = vm.state
        if state.get_code(target) or state.get_nonce(target) or state.get_balance(target):
            raise ChainError(f"cannot place the token at {address}: that account is in use")
        # Only the constructor has run: no mapping holds an entry, so these slots are all the state.
        state.set_code(target, state.get_code(source))
        for slot in range(TOKEN_CONSTRUCTOR_SLOTS):
            state.set_storage(target, slot, state.get_storage(source, slot))
        state.delete_account(source)
        block = vm.set_block_transactions_and_withdrawals(vm.get_block(), header, [], [])
        mined = vm.mine_block(
            block, coinbase=to_canonical_address(ZERO_ADDRESS), mix_hash=self._rng.randbytes(32)
        )
        chain.persist_block(mined.block)
        chain.header = chain.create_header_from_parent(mined.block.header)
        return to_checksum_address(target)


@cache
def _same_second_prague_vm() -> type:
    """Prague, except that a block may share its parent's timestamp (never be earlier).

    Ethereum demands strictly increasing timestamps; a chain mining one block per transaction would
    then run one second ahead of its clock per block, and a served chain would drift ahead of the
    wall clock that SDK clients sign with until their authorizations expire on chain (seen: after
    ~58 rapid paid requests). Real chains put many transactions in one block per slot; letting
    blocks share a second keeps block time equal to the clock instead."""
    from eth.vm.forks import PragueVM

    class SameSecondPragueVM(PragueVM):
        @classmethod
        def validate_header(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
            if parent_header is not None and header.timestamp == parent_header.timestamp:
                parent_header = parent_header.copy(timestamp=header.timestamp - 1)
            super().validate_header(header, parent_header)

    return SameSecondPragueVM


def _cost(tx: SignedTransactionAPI) -> int:
    """The most ether a transaction may spend: gas at its fee cap, plus value."""
    return tx.gas * tx.max_fee_per_gas + tx.value


def _erc8004_genesis() -> dict[bytes, dict[str, Any]]:
    """The ERC-8004 identity and reputation registries as genesis accounts: code, no storage (neither
    sets any at deployment). The reputation registry's immutable, the identity registry's address,
    follows its runtime code as one ABI word, as its constructor would have left it."""
    identity = load_artifact(IDENTITY_REGISTRY).runtime_bytecode
    reputation = load_artifact(REPUTATION_REGISTRY).runtime_bytecode + encode(
        ["address"], [IDENTITY_REGISTRY_ADDRESS]
    )
    return {
        to_canonical_address(IDENTITY_REGISTRY_ADDRESS): _account_state(code=identity),
        to_canonical_address(REPUTATION_REGISTRY_ADDRESS): _account_state(code=reputation),
    }


def _permit2_genesis() -> dict[bytes, dict[str, Any]]:
    """Permit2, the two x402 Permit2 proxies, and the batch-settlement contract with its two deposit
    collectors, at their canonical addresses: code only (none of them keeps a constructor-set value;
    the proxies and collectors name Permit2 and the batch-settlement contract by constants)."""
    return {
        to_canonical_address(address): _account_state(code=load_artifact(name).runtime_bytecode)
        for name, address in (
            (PERMIT2, PERMIT2_ADDRESS),
            (EXACT_PERMIT2_PROXY, EXACT_PERMIT2_PROXY_ADDRESS),
            (UPTO_PERMIT2_PROXY, UPTO_PERMIT2_PROXY_ADDRESS),
            (BATCH_SETTLEMENT, BATCH_SETTLEMENT_ADDRESS),
            (ERC3009_DEPOSIT_COLLECTOR, ERC3009_DEPOSIT_COLLECTOR_ADDRESS),
            (PERMIT2_DEPOSIT_COLLECTOR, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS),
        )
    }


def _account_state(*, balance: int = 0, code: bytes = b"") -> dict[str, Any]:
    return {"balance": balance, "nonce": 0, "code": code, "storage": {}}
