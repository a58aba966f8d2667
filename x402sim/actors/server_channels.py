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

``ChannelSelling`` is the server's side of it, mixed into ``server.ResourceServer``: the channel
terms of an offer, the ``serve_channel`` hook (a deposit, voucher or refund, from the cumulative
check to the durable write) and ``channel_work`` (the cadence's rounds, as ``Settle`` effects).
The rules they follow are written in ``server``'s module docstring.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eth_utils import is_address, to_checksum_address

from ..errors import InputError
from ..evm.channels import (
    ChannelConfig,
    ChannelState,
    VoucherClaim,
    channel_id,
    sign_claim_batch,
    sign_refund,
    voucher_digest,
)
from ..evm.eip712 import address_of_key, recover_digest
from ..mechanisms import Mechanism, Verdict
from ..mechanisms.batch_wire import (
    ClaimPayload,
    DepositPayload,
    PayloadError,
    RefundPayload,
    SettlePayload,
    Voucher,
    VoucherPayload,
    channel_snapshot,
    parse_payload,
)
from ..mechanisms.permit2 import TRANSFER_METHOD as PERMIT2
from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayload,
    PaymentRequirements,
    SettleResponse,
    VerifyResponse,
    encode_header,
    evm_chain_id,
    response_header_name,
)
from .messages import Handle, Headers, HttpRequest, HttpResponse, Settle, Steps, Unreachable, Verify

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


# -- the server's side: mixed into ResourceServer ---------------------------------------------


class ChannelRoute(Protocol):
    """What the channel side reads of a route (``server.Route``)."""

    @property
    def key(self) -> str: ...
    @property
    def price(self) -> int: ...
    @property
    def pay_to(self) -> str | None: ...
    @property
    def min_deposit(self) -> int | None: ...
    @property
    def withdraw_delay(self) -> int: ...
    @property
    def claim_interval(self) -> int | None: ...
    @property
    def settle_interval(self) -> int | None: ...


class ChannelSelling:
    """The batch-settlement side of ``ResourceServer`` (which mixes it in, and owns the fields and
    the steps named below): offers' channel terms, ``serve_channel`` and ``channel_work``. The rules
    are in ``server``'s module docstring."""

    if TYPE_CHECKING:  # what ResourceServer supplies
        network: str
        pay_to: str
        asset_name: str
        asset_version: str
        routes: Mapping[str, Any]
        stats: Counter[str]
        channels: ChannelBook
        receiver_authorizer_key: bytes | None
        claim_interval: int
        settle_interval: int
        max_claims: int
        channel_state_ttl: int | None
        refund_idle: int | None

        def challenge(
            self,
            route: Any,
            version: int,
            error: str,
            headers: Headers = (),
            status: int = 402,
            extra: dict[str, Any] | None = None,
        ) -> HttpResponse: ...
        def deliver(
            self, route: Any, version: int, response: HttpResponse | None, settlement: SettleResponse
        ) -> HttpResponse: ...
        def settle_payment(
            self, payment: AnyPaymentPayload, requirements: AnyRequirements
        ) -> Steps[SettleResponse]: ...
        def mechanism_of(self, route: Any) -> Mechanism[Verdict]: ...
        def _kind_extra(self, mechanism: Mechanism[Verdict]) -> dict[str, Any]: ...

    def _channel_extra(
        self, route: ChannelRoute, mechanism: Mechanism[Verdict], price: int
    ) -> dict[str, Any]:
        """What a batch-settlement offer adds to its extra: the receiver authorizer (this server's
        key, else the facilitator's), the withdraw delay, the token's domain, the minimum deposit,
        and the transfer method when it is Permit2."""
        authorizer = self.receiver_authorizer
        if authorizer is None:
            supplied = self._kind_extra(mechanism).get("receiverAuthorizer")
            authorizer = supplied if isinstance(supplied, str) and is_address(supplied) else None
        if authorizer is None or int(authorizer, 16) == 0:
            raise ValueError(
                f"route {route.key!r}: a batch-settlement offer needs a receiver authorizer: give the server "
                "receiver_authorizer_key, or use a facilitator whose /supported names a receiverAuthorizer"
            )
        extra: dict[str, Any] = {
            "receiverAuthorizer": to_checksum_address(authorizer),
            "withdrawDelay": route.withdraw_delay,
            "name": self.asset_name,
            "version": self.asset_version,
            "minDeposit": str(self.min_deposit(route, price)),
        }
        if mechanism.transfer_method == PERMIT2:
            extra["assetTransferMethod"] = PERMIT2
        return extra

    @property
    def receiver_authorizer(self) -> str | None:
        """The address of the receiver authorizer key this server holds, or None."""
        if self.receiver_authorizer_key is None:
            return None
        return address_of_key(self.receiver_authorizer_key)

    @staticmethod
    def min_deposit(route: ChannelRoute, price: int | None = None) -> int:
        """The least deposit ``route`` accepts (as the SDK: never below one request's price)."""
        price = route.price if price is None else price
        if route.min_deposit is None:
            return price * DEFAULT_MIN_DEPOSIT_MULTIPLIER
        return max(price, route.min_deposit)

    def serve_channel(
        self,
        route: ChannelRoute,
        request: HttpRequest,
        payment: AnyPaymentPayload,
        requirements: AnyRequirements,
        version: int,
        now: int | None = None,
    ) -> Steps[HttpResponse]:
        """Hook, a batch-settlement route: a deposit, voucher or refund on one of the payer's
        channels, checked against the book, verified, served and written (see the module docstring)."""
        if not isinstance(payment, PaymentPayload) or not isinstance(requirements, PaymentRequirements):
            return self.challenge(route, version, "batch-settlement is paid in x402 v2 only")
        try:
            body = parse_payload(payment.payload)
        except PayloadError as exc:
            self.stats["invalid"] += 1
            return self.challenge(route, version, payload_reason(exc.kind))
        if not isinstance(body, DepositPayload | VoucherPayload | RefundPayload) or (
            isinstance(body, RefundPayload) and body.completed
        ):
            self.stats["invalid"] += 1
            return self.challenge(route, version, PAYLOAD_TYPE)
        price = int(requirements.amount)
        if isinstance(body, DepositPayload) and body.amount < self.min_deposit(route, price):
            self.stats["deposit_below_minimum"] += 1
            return self.challenge(route, version, DEPOSIT_BELOW_MIN)
        channel = body.voucher.channel_id
        if channel_id(body.config, evm_chain_id(self.network)) != channel:
            self.stats["invalid"] += 1
            return self.challenge(route, version, CHANNEL_ID_MISMATCH)
        if not self.channels.begin(channel):
            self.stats["channel_busy"] += 1
            return self.challenge(route, version, CHANNEL_BUSY)
        try:
            return (
                yield from self._channel_request(route, request, payment, requirements, body, version, now)
            )
        finally:
            self.channels.end(channel)

    def _channel_request(
        self,
        route: ChannelRoute,
        request: HttpRequest,
        payment: PaymentPayload,
        requirements: PaymentRequirements,
        body: DepositPayload | VoucherPayload | RefundPayload,
        version: int,
        now: int | None,
    ) -> Steps[HttpResponse]:
        price = int(requirements.amount)
        refund = isinstance(body, RefundPayload)
        record = self.channels.get(body.voucher.channel_id)
        if record is None and refund:
            self.stats["invalid"] += 1
            return self.challenge(route, version, MISSING_CHANNEL)
        signed = body.voucher.max_claimable
        # a channel this server never saw: the voucher names its base (as the SDK infers it)
        charged = record.charged if record is not None else max(0, signed - price)
        if signed != (charged if refund else charged + price):
            self.stats["cumulative_mismatch"] += 1
            known = record or ChannelRecord(
                body.voucher.channel_id, body.config, route.key, charged, signed, body.voucher.signature
            )
            state = {
                "channelState": known.snapshot(),
                "voucherState": {
                    "signedMaxClaimable": str(known.signed_max),
                    "signature": "0x" + known.signature.hex(),
                },
            }
            return self.challenge(route, version, CUMULATIVE_MISMATCH, extra=state)
        if refund and record is not None and body.voucher.signature != record.signature:
            self.stats["invalid"] += 1
            return self.challenge(route, version, VOUCHER_SIGNATURE)
        local = (
            self.verify_locally(record, body, requirements, now) if isinstance(body, VoucherPayload) else None
        )
        verdict: VerifyResponse = local if local is not None else (yield Verify(payment, requirements))
        if local is not None:
            self.stats["verified_locally"] += 1
        if not verdict.is_valid:
            self.stats["invalid"] += 1
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment")
        base = record or ChannelRecord(body.voucher.channel_id, body.config, route.key, charged)
        seen = base.with_state(_channel_state(verdict), None if local is not None else now)
        if isinstance(body, RefundPayload):
            return (yield from self._refund(route, payment, requirements, body, seen, version, now))
        response: HttpResponse = yield Handle(request)
        if response.status >= 400:
            self.stats["handler_error"] += 1
            return response
        settlement: SettleResponse | None = None
        if isinstance(body, DepositPayload):
            settlement = yield from self.settle_payment(payment, requirements)
            if settlement.success and not settlement.transaction:
                settlement = settlement.model_copy(
                    update={
                        "success": False,
                        "error_reason": "invalid_batch_settlement_evm_deposit_transaction_failed",
                        "error_message": "the deposit was reported without its transaction",
                    }
                )
            if not settlement.success:
                return self.deliver(route, version, None, settlement)
            seen = seen.with_state(_channel_state(settlement), now)
        served = replace(
            seen,
            config=body.config,
            route=route.key,
            charged=charged + price,
            signed_max=signed,
            signature=body.voucher.signature,
            last_request_at=now if now is not None else seen.last_request_at,
        )
        problem = self._store(served)
        if problem is not None:
            return problem
        extra = {"chargedAmount": str(price), "channelState": served.snapshot()}
        if settlement is None:
            settlement = SettleResponse(
                success=True,
                payer=body.config.payer,
                transaction="",
                network=requirements.network,
                amount="",
            ).model_copy(update={"extra": extra})
        else:
            settlement = settlement.model_copy(update={"extra": {**_extra_of(settlement), **extra}})
        return self.deliver(route, version, response, settlement)

    def _store(self, record: ChannelRecord) -> HttpResponse | None:
        """Write ``record`` durably; a 500 (nothing is delivered) when the book cannot. What the
        channel work recorded meanwhile (claims, settlements) is kept."""
        try:
            current = self.channels.get(record.channel_id)
            if current is not None:
                record = replace(
                    record,
                    total_claimed=max(record.total_claimed, current.total_claimed),
                    settled=max(record.settled, current.settled),
                )
            self.channels.put(record)
        except (sqlite3.Error, OSError) as exc:
            self.stats["channel_store_failed"] += 1
            return HttpResponse.of_json(500, {"error": f"channel state not stored, nothing served: {exc}"})
        return None

    def verify_locally(
        self,
        record: ChannelRecord | None,
        body: VoucherPayload,
        requirements: PaymentRequirements,
        now: int | None,
    ) -> VerifyResponse | None:
        """Hook, a voucher verified without the facilitator: when the mirrored channel state is
        fresh (``channel_state_ttl``) and an EOA signs the payer's vouchers, the voucher's signature
        is recovered and its amount held against the mirrored balance and claims; None: ask the
        facilitator."""
        config = body.config
        ttl = self.channel_state_ttl
        if ttl is None:
            ttl = min(300, max(30, config.withdraw_delay // 3))
        if (
            ttl <= 0
            or record is None
            or now is None
            or record.synced_at is None
            or now - record.synced_at > ttl
        ):
            return None  # 0: never locally (a state synced this very second is not fresh enough)
        if int(config.payer_authorizer, 16) == 0:
            return None

        def refused(reason: str) -> VerifyResponse:
            return VerifyResponse(is_valid=False, invalid_reason=reason, payer=config.payer)

        extra = requirements.extra or {}
        if config.receiver != requirements.pay_to:
            return refused(RECEIVER_MISMATCH)
        if config.token != requirements.asset:
            return refused(TOKEN_MISMATCH)
        authorizer = extra.get("receiverAuthorizer")
        if not isinstance(authorizer, str) or authorizer.lower() != config.receiver_authorizer.lower():
            return refused(RECEIVER_AUTHORIZER_MISMATCH)
        if extra.get("withdrawDelay") != config.withdraw_delay:
            return refused(WITHDRAW_DELAY_MISMATCH)
        voucher = body.voucher
        digest = voucher_digest(evm_chain_id(self.network), voucher.channel_id, voucher.max_claimable)
        try:
            signer = recover_digest(digest, voucher.signature)
        except ValueError:
            signer = None
        if signer != config.payer_authorizer:
            return refused(VOUCHER_SIGNATURE)
        if voucher.max_claimable > record.balance:
            return refused(EXCEEDS_BALANCE)
        if voucher.max_claimable <= record.total_claimed:
            return refused(BELOW_CLAIMED)
        valid = VerifyResponse(is_valid=True, payer=config.payer)
        return valid.model_copy(update={"extra": record.state().to_wire()})

    def _refund(
        self,
        route: ChannelRoute,
        payment: PaymentPayload,
        requirements: PaymentRequirements,
        body: RefundPayload,
        record: ChannelRecord,
        version: int,
        now: int | None,
    ) -> Steps[HttpResponse]:
        """A cooperative refund, verified: completed with the nonce, the claim of what was charged and
        (when this server holds the key) the receiver authorizer's signatures, then settled."""
        remainder = record.balance - record.charged
        amount = remainder if body.amount is None else body.amount
        if body.amount is not None and body.amount <= 0:
            return self.challenge(route, version, REFUND_AMOUNT_INVALID)
        if remainder <= 0 or amount > remainder:
            return self.challenge(route, version, REFUND_NO_BALANCE)
        completed = self._refund_payload(record, amount, (record.claim(),), body.voucher)
        settlement = yield from self.settle_payment(
            payment.model_copy(update={"payload": completed.to_wire()}), requirements
        )
        if not settlement.success:
            self.stats["refund_failed"] += 1
            return self.deliver(route, version, None, settlement)
        after = record.with_state(_channel_state(settlement), now)
        after = replace(after, total_claimed=max(after.total_claimed, record.charged))
        try:
            if after.balance <= after.charged:
                self.channels.delete(record.channel_id)
            else:
                self.channels.put(after)
        except (sqlite3.Error, OSError) as exc:
            self.stats["channel_store_failed"] += 1
            return HttpResponse.of_json(500, {"error": f"refund settled, channel state not stored: {exc}"})
        self.stats["refunded"] += 1
        self.channels.set_mark(pending_mark(record.config.receiver, record.config.token), now or 0)
        extra = {**_extra_of(settlement), "channelState": {**after.snapshot()}}
        header = (
            response_header_name(version),
            encode_header(settlement.model_copy(update={"extra": extra}), vouch=True),
        )
        answer = {"message": "Refund acknowledged", "channelId": "0x" + record.channel_id.hex()}
        return HttpResponse.of_json(200, answer, (("Cache-Control", "private"), header))

    def _refund_payload(
        self,
        record: ChannelRecord,
        amount: int,
        claims: tuple[VoucherClaim, ...],
        voucher: Voucher | None = None,
    ) -> RefundPayload:
        """A completed refund of ``amount`` from ``record``'s channel, signed when this server holds
        the channel's receiver authorizer key."""
        key = self._authorizer_key(record.config)
        chain = evm_chain_id(self.network)
        return RefundPayload(
            record.config,
            voucher or Voucher(record.channel_id, record.signed_max, record.signature),
            amount,
            record.refund_nonce,
            claims,
            None if key is None else sign_refund(key, chain, record.channel_id, record.refund_nonce, amount),
            None if key is None or not claims else sign_claim_batch(key, chain, claims),
        )

    def _authorizer_key(self, config: ChannelConfig) -> bytes | None:
        """This server's receiver authorizer key when it is ``config``'s receiver authorizer."""
        if self.receiver_authorizer_key is None or self.receiver_authorizer != config.receiver_authorizer:
            return None
        return self.receiver_authorizer_key

    def _cadence(self, route_key: str) -> tuple[int, int]:
        """The claim and settle intervals of the channels of ``route_key``."""
        route = self.routes.get(route_key)
        claim = route.claim_interval if route is not None and route.claim_interval else self.claim_interval
        settle = (
            route.settle_interval if route is not None and route.settle_interval else self.settle_interval
        )
        return claim, settle

    def channel_work(self, now: int) -> Steps[ChannelWork]:
        """The claim, settle and refund work due at ``now`` (see ``server_channels``); yields
        ``Settle`` effects. A facilitator that does not answer ends the round (the rest waits for
        the next one)."""
        work = ChannelWork()
        if self.channels.mark(CADENCE_START) is None:  # the first round starts every clock
            self.channels.set_mark(CADENCE_START, now)
        try:
            yield from self._claim_round(now, work)
            yield from self._settle_round(now, work)
            if self.refund_idle is not None:
                yield from self._refund_round(now, work)
        except Unreachable as exc:
            work.errors.append(str(exc))
        return work

    def channel_routes(self) -> list[ChannelRoute]:
        """The routes paid through channels (batch-settlement)."""
        return [r for r in self.routes.values() if self.mechanism_of(r).scheme == SCHEME]

    def _claim_round(self, now: int, work: ChannelWork) -> Steps[None]:
        records = self.channels.all()
        keys = {r.route for r in records} | {r.key for r in self.channel_routes()}
        due: set[str] = set()
        for key in sorted(keys):
            last = self.channels.mark(claim_mark(key))
            if last is None:
                self.channels.set_mark(claim_mark(key), now)
            elif claim_round_due(now, last, self._cadence(key)[0]):
                due.add(key)
        for batch in claim_batches(claims_due(records, due), self.max_claims):
            yield from self._claim(batch, now, work)
        for key in due:
            self.channels.set_mark(claim_mark(key), now)

    def _claim(self, batch: list[ChannelRecord], now: int, work: ChannelWork) -> Steps[None]:
        """Claim ``batch`` in one claim; when a batch of several is refused (one channel whose payer
        withdrew its escrow fails the whole claim), claim its channels one by one, so that the
        others' vouchers are not held back."""
        first = batch[0].config
        claims = [r.claim() for r in batch]
        signer = self._authorizer_key(first)
        chain = evm_chain_id(self.network)
        signature = None if signer is None else sign_claim_batch(signer, chain, claims)
        requirements = work_requirements(self.network, first.receiver, first.token)
        answer: SettleResponse = yield Settle(claim_payment(requirements, claims, signature), requirements)
        if not answer.success and len(batch) > 1:
            self.stats["claim_batch_split"] += 1
            for row in batch:
                yield from self._claim([row], now, work)
            return
        if not answer.success:
            self.stats["claim_failed"] += 1
            work.errors.append(f"claim: {answer.error_reason}: {answer.error_message or ''}".rstrip(": "))
            return
        self.stats["claims"] += 1
        work.claims.append((len(claims), answer.transaction))
        updated = []
        for claimed in batch:
            current = self.channels.get(claimed.channel_id)
            if current is not None and claimed.charged > current.total_claimed:
                updated.append(replace(current, total_claimed=claimed.charged))
        self.channels.put_many(updated)
        self.channels.set_mark(pending_mark(first.receiver, first.token), now)

    def _settle_round(self, now: int, work: ChannelWork) -> Steps[None]:
        for mark in sorted(self.channels.marks("pending:")):
            _, receiver, token = mark.split(":")
            intervals = [
                self._cadence(k)[1]
                for k, r in self.routes.items()
                if (r.pay_to or self.pay_to) == receiver and self.mechanism_of(r).scheme == SCHEME
            ]
            interval = min(intervals, default=self.settle_interval)
            last = self.channels.mark(settle_mark(receiver, token)) or self.channels.mark(CADENCE_START)
            if not settle_due(now, last, interval, True):
                continue
            requirements = work_requirements(self.network, receiver, token)
            answer: SettleResponse = yield Settle(settle_payment(requirements, receiver, token), requirements)
            if not answer.success and answer.error_reason != NOTHING_TO_SETTLE:
                self.stats["settle_failed"] += 1
                work.errors.append(
                    f"settle: {answer.error_reason}: {answer.error_message or ''}".rstrip(": ")
                )
                continue
            self.stats["settlements"] += 1
            work.settlements.append(answer.transaction)
            swept = [
                replace(r, settled=r.total_claimed)
                for r in self.channels.all()
                if (r.config.receiver, r.config.token) == (receiver, token) and r.settled < r.total_claimed
            ]
            self.channels.put_many(swept)
            self.channels.set_mark(settle_mark(receiver, token), now)
            self.channels.set_mark(mark, None)

    def _refund_round(self, now: int, work: ChannelWork) -> Steps[None]:
        assert self.refund_idle is not None  # called only then
        for record in idle_refunds(self.channels.all(), now, self.refund_idle, set()):
            if not self.channels.begin(record.channel_id):
                continue
            try:
                claims = (record.claim(),) if record.charged > record.total_claimed else ()
                refund = self._refund_payload(record, record.balance - record.charged, claims)
                requirements = work_requirements(self.network, record.config.receiver, record.config.token)
                payment = PaymentPayload(x402_version=2, payload=refund.to_wire(), accepted=requirements)
                answer: SettleResponse = yield Settle(payment, requirements)
                if not answer.success:
                    self.stats["refund_failed"] += 1
                    work.errors.append(f"refund: {answer.error_reason}")
                    continue
                self.stats["refunded"] += 1
                work.refunds.append(answer.transaction)
                self.channels.delete(record.channel_id)
                if claims:  # claimed with the refund: the receiver has funds to settle
                    self.channels.set_mark(pending_mark(record.config.receiver, record.config.token), now)
            finally:
                self.channels.end(record.channel_id)


def _extra_of(answer: VerifyResponse | SettleResponse) -> dict[str, Any]:
    """A facilitator answer's ``extra`` (an object), or {}."""
    extra = getattr(answer, "extra", None)
    return dict(extra) if isinstance(extra, dict) else {}


def _channel_state(answer: VerifyResponse | SettleResponse) -> dict[str, Any] | None:
    """The channel snapshot a facilitator's answer carries: ``extra.channelState`` (settle), or
    ``extra`` itself when it names the channel (verify)."""
    extra = _extra_of(answer)
    state = extra.get("channelState")
    if isinstance(state, dict):
        return state
    return extra if "balance" in extra else None


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
    "ChannelRoute",
    "ChannelSelling",
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
