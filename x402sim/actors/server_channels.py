"""The resource server's book of ``batch-settlement`` channels, and the cadence that redeems them.

A channel the server is paid through has one record here (the specification's "Per-Channel
State"): its immutable config; ``charged``, the cumulative amount this server has charged and
served (the SDKs' ``chargedCumulativeAmount``); the latest voucher it holds (``signed_max`` and its
``signature``, the SDKs' ``signedMaxClaimable``); the on-chain state last seen (``balance``,
``total_claimed``, ``withdraw_requested_at``, ``refund_nonce``) and when (``synced_at``); the time
of the last paid request; and, for x402sim's exposure figures, ``settled``: how much of what was
claimed has been swept to the receiver. ``charged - total_claimed`` is value served but not yet
claimed (lost if the payer withdraws first), ``charged - settled`` value served but not yet paid out.

Rules:

* ``ChannelBook`` keeps the records in SQLite (the standard library's ``sqlite3``): in the file it
  is given, or in memory (``":memory:"``), through one code path. A file is opened in WAL mode with
  ``synchronous=FULL``: every ``put`` is one transaction, committed (on disk) when it returns, so a
  caller that writes a voucher before it answers never answers for a voucher a crash can lose. A
  file that is not a usable book raises ``ChannelBookError`` naming it, when the book is made; a
  book in memory connects on first use.
* Amounts are stored as decimal text (uint128 does not fit SQLite's integers).
* One request per channel at a time: ``begin(channel)`` is False while another request for it is in
  flight (the server answers ``invalid_batch_settlement_evm_channel_busy``); ``end`` frees it. What is
  in flight is not persisted: after a restart nothing is.
* The cadence (``claims_due``, ``claim_batches``, ``settle_due``, ``idle_refunds``) is a set of pure
  decisions over records and times; ``ResourceServer.channel_work`` acts on them. A channel is
  claimed when it holds a voucher above what is claimed on chain and either its route's claim
  interval has passed since that route's last claim round or a withdrawal is pending on it (then at
  once: the payer can take the unclaimed escrow when the delay ends). Claims are batched per
  (receiver authorizer, receiver, token), at most ``max_claims`` to a batch. A receiver whose claims
  landed is settled when its settle interval has passed since its last settlement.
* The facilitator payloads of that work are built as the Python SDK's channel manager builds them:
  requirements of amount 0 naming the receiver and the token, and a ``claim``, ``settle`` or
  ``refund`` payload.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..evm.channels import ChannelConfig, ChannelState, VoucherClaim
from ..mechanisms.batch_wire import ClaimPayload, SettlePayload, channel_snapshot
from ..protocol import PaymentPayload, PaymentRequirements

SCHEME = "batch-settlement"
# The SDKs' defaults (constants.py): claim every minute, settle every two, 100 claims to a batch,
# a minimum deposit of ten requests' price.
DEFAULT_CLAIM_INTERVAL = 60
DEFAULT_SETTLE_INTERVAL = 120
DEFAULT_MAX_CLAIMS = 100
DEFAULT_MIN_DEPOSIT_MULTIPLIER = 10
DEFAULT_WITHDRAW_DELAY = 900

# The reasons a server gives itself (the SDKs' spellings).
CHANNEL_BUSY = "invalid_batch_settlement_evm_channel_busy"
CUMULATIVE_MISMATCH = "invalid_batch_settlement_evm_cumulative_amount_mismatch"
DEPOSIT_BELOW_MIN = "invalid_batch_settlement_evm_deposit_below_min_deposit"
CHANNEL_ID_MISMATCH = "invalid_batch_settlement_evm_channel_id_mismatch"
PAYLOAD_TYPE = "invalid_batch_settlement_evm_payload_type"
MISSING_CHANNEL = "invalid_batch_settlement_evm_missing_channel"
VOUCHER_SIGNATURE = "invalid_batch_settlement_evm_voucher_signature"
EXCEEDS_BALANCE = "invalid_batch_settlement_evm_cumulative_exceeds_balance"
BELOW_CLAIMED = "invalid_batch_settlement_evm_cumulative_below_claimed"
REFUND_NO_BALANCE = "invalid_batch_settlement_evm_refund_no_balance"
REFUND_AMOUNT_INVALID = "invalid_batch_settlement_evm_refund_amount_invalid"
RECEIVER_MISMATCH = "invalid_batch_settlement_evm_receiver_mismatch"
RECEIVER_AUTHORIZER_MISMATCH = "invalid_batch_settlement_evm_receiver_authorizer_mismatch"
TOKEN_MISMATCH = "invalid_batch_settlement_evm_token_mismatch"
WITHDRAW_DELAY_MISMATCH = "invalid_batch_settlement_evm_withdraw_delay_mismatch"
NOTHING_TO_SETTLE = "invalid_batch_settlement_evm_nothing_to_settle"


def payload_reason(kind: str) -> str:
    """The reason for a client payload of type ``kind`` whose shape is wrong."""
    return PAYLOAD_TYPE if kind == "type" else f"invalid_batch_settlement_evm_{kind}_payload"


class ChannelBookError(InputError, ValueError):
    """A channel book that cannot be opened or read; the message names the file."""


@dataclass(frozen=True)
class ChannelRecord:
    """What the server knows of one channel (see the module docstring)."""

    channel_id: bytes
    config: ChannelConfig
    route: str  # the route it last paid, whose cadence it follows
    charged: int = 0
    signed_max: int = 0
    signature: bytes = b""
    balance: int = 0
    total_claimed: int = 0
    withdraw_requested_at: int = 0
    refund_nonce: int = 0
    synced_at: int | None = None
    last_request_at: int = 0
    settled: int = 0

    @property
    def unclaimed(self) -> int:
        """Served, not yet claimed on chain."""
        return max(0, self.charged - self.total_claimed)

    @property
    def unsettled(self) -> int:
        """Served, not yet swept to the receiver."""
        return max(0, self.charged - self.settled)

    def state(self) -> ChannelState:
        return ChannelState(
            self.channel_id,
            self.balance,
            self.total_claimed,
            0,
            self.withdraw_requested_at,
            self.refund_nonce,
        )

    def snapshot(self) -> dict[str, Any]:
        """The ``channelState`` object of an answer, with this server's charged amount."""
        return channel_snapshot(self.state(), self.charged)

    def with_state(self, state: dict[str, Any] | None, now: int | None) -> ChannelRecord:
        """This record with the on-chain fields of a facilitator's snapshot (missing ones kept)."""
        if not state:
            return self
        return replace(
            self,
            balance=_read_int(state, "balance", self.balance),
            total_claimed=max(self.total_claimed, _read_int(state, "totalClaimed", self.total_claimed)),
            withdraw_requested_at=_read_int(state, "withdrawRequestedAt", self.withdraw_requested_at),
            refund_nonce=_read_int(state, "refundNonce", self.refund_nonce),
            synced_at=now if now is not None else self.synced_at,
        )

    def claim(self) -> VoucherClaim:
        """The claim row redeeming what was charged, with the voucher held."""
        return VoucherClaim(self.config, self.signed_max, self.signature, self.charged)


def _read_int(state: dict[str, Any], key: str, fallback: int) -> int:
    value = state.get(key)
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    return fallback


_COLUMNS = (
    "channel_id",
    "config",
    "route",
    "charged",
    "signed_max",
    "signature",
    "balance",
    "total_claimed",
    "withdraw_requested_at",
    "refund_nonce",
    "synced_at",
    "last_request_at",
    "settled",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS channels ("
    "channel_id TEXT PRIMARY KEY, config TEXT NOT NULL, route TEXT NOT NULL, charged TEXT NOT NULL, "
    "signed_max TEXT NOT NULL, signature TEXT NOT NULL, balance TEXT NOT NULL, "
    "total_claimed TEXT NOT NULL, withdraw_requested_at TEXT NOT NULL, refund_nonce TEXT NOT NULL, "
    "synced_at TEXT, last_request_at TEXT NOT NULL, settled TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cadence (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def _row(record: ChannelRecord) -> tuple[str | None, ...]:
    return (
        "0x" + record.channel_id.hex(),
        json.dumps(record.config.to_wire(), sort_keys=True),
        record.route,
        str(record.charged),
        str(record.signed_max),
        "0x" + record.signature.hex(),
        str(record.balance),
        str(record.total_claimed),
        str(record.withdraw_requested_at),
        str(record.refund_nonce),
        None if record.synced_at is None else str(record.synced_at),
        str(record.last_request_at),
        str(record.settled),
    )


def _record(row: Sequence[Any]) -> ChannelRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    return ChannelRecord(
        channel_id=bytes.fromhex(values["channel_id"][2:]),
        config=ChannelConfig.from_wire(json.loads(values["config"])),
        route=values["route"],
        charged=int(values["charged"]),
        signed_max=int(values["signed_max"]),
        signature=bytes.fromhex(values["signature"][2:]),
        balance=int(values["balance"]),
        total_claimed=int(values["total_claimed"]),
        withdraw_requested_at=int(values["withdraw_requested_at"]),
        refund_nonce=int(values["refund_nonce"]),
        synced_at=None if values["synced_at"] is None else int(values["synced_at"]),
        last_request_at=int(values["last_request_at"]),
        settled=int(values["settled"]),
    )


class ChannelBook:
    """The server's channel records, in SQLite: in ``path`` (created if missing), or in memory."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._busy: set[bytes] = set()
        self._connection: sqlite3.Connection | None = None
        if self.path != ":memory:":
            self._open()  # a file that is not a book is refused now, naming it

    @property
    def _db(self) -> sqlite3.Connection:
        # a book in memory connects on first use: a server that never sells through channels pays nothing
        return self._connection if self._connection is not None else self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._connection = db
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                db.execute(statement)
            columns = [r[1] for r in db.execute("PRAGMA table_info(channels)")]
            if tuple(columns) != _COLUMNS:
                raise sqlite3.DatabaseError(f"its channels table has columns {', '.join(columns)}")
            self.all()  # every stored row must read back
        except (sqlite3.Error, ValueError) as exc:
            self._connection = None
            raise ChannelBookError(f"{self.path}: not a usable channel state file: {exc}") from None
        return db

    # -- records ----------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, channel: bytes) -> ChannelRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM channels WHERE channel_id = ?", ("0x" + channel.hex(),)
            ).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[ChannelRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM channels ORDER BY channel_id"
            ).fetchall()
        return [_record(row) for row in rows]

    def put(self, record: ChannelRecord) -> None:
        """Store ``record`` durably (one committed transaction)."""
        self.put_many((record,))

    def put_many(self, records: Iterable[ChannelRecord]) -> None:
        """Store ``records`` in one committed transaction."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._transaction() as db:
            for record in records:
                db.execute(f"INSERT OR REPLACE INTO channels VALUES ({placeholders})", _row(record))

    def delete(self, channel: bytes) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM channels WHERE channel_id = ?", ("0x" + channel.hex(),))

    # -- cadence times ----------------------------------------------------------------------------

    def mark(self, key: str) -> int | None:
        """The time stored under ``key`` (a cadence clock), or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM cadence WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def marks(self, prefix: str) -> dict[str, int]:
        """Every cadence time whose key starts with ``prefix``."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM cadence").fetchall()
        return {k: int(v) for k, v in rows if k.startswith(prefix)}

    def set_mark(self, key: str, value: int | None) -> None:
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM cadence WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO cadence VALUES (?, ?)", (key, str(value)))

    # -- requests in flight -----------------------------------------------------------------------

    def begin(self, channel: bytes) -> bool:
        """Take ``channel`` for one request; False while another holds it."""
        with self._lock:
            if channel in self._busy:
                return False
            self._busy.add(channel)
            return True

    def end(self, channel: bytes) -> None:
        with self._lock:
            self._busy.discard(channel)

    def busy(self, channel: bytes) -> bool:
        with self._lock:
            return channel in self._busy

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


# -- the cadence: pure decisions ------------------------------------------------------------------


@dataclass(frozen=True)
class Cadence:
    """How often a route's channels are claimed and its receiver settled, in seconds."""

    claim_interval: int = DEFAULT_CLAIM_INTERVAL
    settle_interval: int = DEFAULT_SETTLE_INTERVAL


def claim_round_due(now: int, last_round: int | None, interval: int) -> bool:
    """Whether a route's claim round is due: its interval has passed since its last round (a route
    that never had one starts its clock now and is not due)."""
    return last_round is not None and now - last_round >= interval


def claims_due(records: Iterable[ChannelRecord], due_routes: set[str]) -> list[ChannelRecord]:
    """The channels to claim now: those holding a voucher above what is claimed on chain, whose
    route's round is due or on which a withdrawal is pending."""
    return [
        r
        for r in records
        if r.charged > r.total_claimed and (r.route in due_routes or r.withdraw_requested_at > 0)
    ]


def claim_batches(
    records: Iterable[ChannelRecord], max_claims: int = DEFAULT_MAX_CLAIMS
) -> list[list[ChannelRecord]]:
    """``records`` grouped per (receiver authorizer, receiver, token), in chunks of ``max_claims``."""
    if max_claims < 1:
        raise ValueError(f"max_claims must be positive, got {max_claims}")
    groups: dict[tuple[str, str, str], list[ChannelRecord]] = {}
    for r in records:
        groups.setdefault((r.config.receiver_authorizer, r.config.receiver, r.config.token), []).append(r)
    return [rows[i : i + max_claims] for rows in groups.values() for i in range(0, len(rows), max_claims)]


def settle_due(now: int, last_settle: int | None, interval: int, pending: bool) -> bool:
    """Whether a receiver whose claims landed (``pending``) is settled now."""
    return pending and (last_settle is None or now - last_settle >= interval)


def idle_refunds(
    records: Iterable[ChannelRecord], now: int, idle: int, busy: set[bytes]
) -> list[ChannelRecord]:
    """Channels idle ``idle`` seconds with escrow left above what was charged, not in flight."""
    return [
        r
        for r in records
        if r.balance > r.charged and r.channel_id not in busy and now - r.last_request_at >= idle
    ]


@dataclass
class ChannelWork:
    """What one round of ``channel_work`` did: claim batches (vouchers, transaction), settlements
    and refunds (their transactions), and what failed."""

    claims: list[tuple[int, str]] = field(default_factory=list)
    settlements: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# -- the facilitator payloads of that work ------------------------------------------------------


def work_requirements(network: str, receiver: str, token: str) -> PaymentRequirements:
    """The requirements a claim, settle or server refund is sent to ``/settle`` with."""
    return PaymentRequirements(
        scheme=SCHEME,
        network=network,
        amount=0,
        asset=token,
        pay_to=receiver,
        max_timeout_seconds=0,
        extra={},
    )


def claim_payment(
    requirements: PaymentRequirements, claims: Sequence[VoucherClaim], signature: bytes | None
) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2, payload=ClaimPayload(tuple(claims), signature).to_wire(), accepted=requirements
    )


def settle_payment(requirements: PaymentRequirements, receiver: str, token: str) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2, payload=SettlePayload(receiver, token).to_wire(), accepted=requirements
    )


CADENCE_START = "start"  # when the first round of channel work ran: every clock starts there


def claim_mark(route: str) -> str:
    return f"claim:{route}"


def settle_mark(receiver: str, token: str) -> str:
    return f"settle:{receiver}:{token}"


def pending_mark(receiver: str, token: str) -> str:
    return f"pending:{receiver}:{token}"


__all__ = [
    "CHANNEL_BUSY",
    "CUMULATIVE_MISMATCH",
    "DEFAULT_CLAIM_INTERVAL",
    "DEFAULT_MAX_CLAIMS",
    "DEFAULT_SETTLE_INTERVAL",
    "DEPOSIT_BELOW_MIN",
    "Cadence",
    "ChannelBook",
    "ChannelBookError",
    "ChannelRecord",
    "ChannelWork",
    "claim_batches",
    "claim_payment",
    "claim_round_due",
    "claims_due",
    "idle_refunds",
    "settle_due",
    "settle_payment",
    "work_requirements",
]
