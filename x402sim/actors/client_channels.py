"""A paying client's ``batch-settlement`` channels: what it knows of each, kept durably, and its rules.

One channel per (payer, network, receiver, token, receiver authorizer, withdraw delay): the
parameters an offer fixes. Its record (``ChannelRecord``) holds the config with its salt, the
charged cumulative amount the client has accepted, the last voucher it signed, what it deposited,
the balance and claims it last learnt, what was refunded, and, once a server broke a rule, why the
client stopped signing for it. Its life (``ChannelEvent`` s: deposits with their transaction, each
voucher's cumulative amount, refunds, corrections, a stop) is kept beside it.

Storage (``ChannelStore``): SQLite through the standard library, in a file when given a path (a
restarted agent finds its channel and tops it up instead of opening a second one), in memory
otherwise. Every change is one committed transaction; amounts are decimal text (uint128 does not fit
SQLite's integers). A file of another schema version is refused, not rewritten.

Rules (``ClientChannels``; the facts are the spec's client rules and the SDKs' client):

* Signing. The next voucher is ``charged + price``; a deposit goes first when the balance does not
  back it or would fall under the policy's ``top_up_below`` (sizes: ``batch_client``). The voucher
  is recorded as signed before the payment leaves.
* Cold start. Without a record, and with a chain to read, the client reads ``channels(id)`` and
  takes ``charged = totalClaimed`` (the only amount the chain proves) with the balance read there.
  A record marked uncertain (a payment got no answer, or was refused) has its balance and claims
  re-read before use.
* Answers (``settled``): a deposit or voucher answer must carry ``extra.chargedAmount`` at most the
  price; its ``channelState`` must name this channel, its ``chargedCumulativeAmount`` (when given)
  must be the previous amount plus the charge, and its balance must back that amount. Any failure
  stops the channel: the client signs nothing more for it and says why (it should then withdraw).
* Corrective 402 (``correct``): the server's ``chargedCumulativeAmount`` is adopted only with a
  ``voucherState`` whose signature is this payer's voucher for at least that amount on this channel
  (and, with a chain, not below what the chain has claimed); without one, the chain's ``totalClaimed``
  is adopted when a chain can be read; otherwise nothing is adopted.
* Refunds: a zero-charge voucher (``charged``), the amount optional; the answer's channel state is
  mirrored and the refunded amount added up. The channel stays: a later payment tops it up again.

No I/O besides the store and the chain reads it is given; time is an argument.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ChainError, Refused
from ..evm.channels import ChannelConfig, ChannelState, channel_id, read_channel
from ..evm.eip712 import address_of_key, checksum
from ..mechanisms.batch_client import (
    DEFAULT_DEPOSIT_MULTIPLIER,
    ZERO_SALT,
    announced_min_deposit,
    channel_config,
    client_refusal,
    deposit_payload,
    deposit_size,
    needs_deposit,
    refund_payload,
    voucher_payload,
    voucher_state_problem,
)
from ..mechanisms.batch_wire import (
    DepositPayload,
    PayloadError,
    RefundPayload,
    VoucherPayload,
    parse_payload,
    read_snapshot,
)
from ..mechanisms.offer import Offer
from ..protocol import SettleResponse

SCHEMA_VERSION = 1
ChannelKey = tuple[
    str, str, str, str, str, int
]  # payer, network, receiver, token, receiver authorizer, delay


class ChannelRefused(Refused):
    """The client will not sign for this channel (stopped, nothing to refund, no channel)."""


@dataclass(frozen=True)
class DepositPolicy:
    """How a client sizes its deposits: ``size`` atomic units each (None: ``multiplier`` prices),
    never below what the voucher needs, the price or the server's ``minDeposit``; it tops up when
    what would remain after the next voucher is below ``top_up_below`` (0: only when it must)."""

    size: int | None = None
    multiplier: int = DEFAULT_DEPOSIT_MULTIPLIER
    top_up_below: int = 0

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise ValueError(f"deposit size must be positive, got {self.size}")
        if self.multiplier < 1:
            raise ValueError(f"deposit multiplier must be at least 1, got {self.multiplier}")
        if self.top_up_below < 0:
            raise ValueError(f"top_up_below must not be negative, got {self.top_up_below}")

    def deposit_for(self, price: int, charged: int, balance: int, min_deposit: int | None) -> int | None:
        """The deposit to sign before the voucher ``charged + price`` (None: a voucher alone)."""
        if not needs_deposit(price, charged, balance, self.top_up_below):
            return None
        return deposit_size(
            price, charged, balance, min_deposit=min_deposit, size=self.size, multiplier=self.multiplier
        )


@dataclass(frozen=True)
class ChannelRecord:
    """What the client knows of one of its channels (see the module's rules)."""

    network: str
    config: ChannelConfig
    chain_id: int
    charged: int = 0  # the cumulative amount the server charged, as the client accepted it
    signed_max: int = 0  # the last voucher signed: its ceiling and signature
    signature: bytes = b""
    deposited: int = 0  # deposits the servers confirmed
    balance: int = 0  # the channel's escrow as last learnt (deposits less refunds and withdrawals)
    total_claimed: int = 0
    refund_nonce: int = 0
    withdraw_requested_at: int = 0
    refunded: int = 0
    stopped: str | None = None  # why the client signs nothing more for this channel
    uncertain: bool = False  # a payment got no answer: re-read the chain before trusting balance

    @property
    def channel_id(self) -> bytes:
        return channel_id(self.config, self.chain_id)

    @property
    def key(self) -> ChannelKey:
        c = self.config
        return (c.payer, self.network, c.receiver, c.token, c.receiver_authorizer, c.withdraw_delay)

    @property
    def available(self) -> int:
        """Escrow not yet charged: what further vouchers (or a refund) can use."""
        return max(self.balance - self.charged, 0)

    def mirroring(self, state: ChannelState, **changes: Any) -> ChannelRecord:
        """This record with the on-chain fields of ``state`` (balance, totalClaimed, refund nonce,
        pending withdrawal) and ``changes``."""
        return replace(
            self,
            balance=state.balance,
            total_claimed=state.total_claimed,
            refund_nonce=state.refund_nonce,
            withdraw_requested_at=state.withdraw_requested_at,
            **changes,
        )


@dataclass(frozen=True)
class ChannelEvent:
    """One step of a channel's life: ``kind`` is ``deposit``, ``voucher``, ``refund``,
    ``corrected``, ``recovered`` or ``stopped``; ``amount`` is what the step moved or charged,
    ``cumulative`` the charged amount after it, ``balance`` the escrow after it."""

    channel_id: bytes
    kind: str
    at: int
    amount: int = 0
    cumulative: int = 0
    balance: int = 0
    tx: str = ""
    note: str = ""

    def describe(self) -> str:
        """One line for a person."""
        text = {
            "deposit": f"deposit {self.amount}",
            "voucher": f"voucher charged {self.amount}",
            "refund": f"refund {self.amount}",
            "corrected": "adopted the server's cumulative amount",
            "recovered": "recovered from the chain",
            "stopped": "stopped signing",
        }.get(self.kind, self.kind)
        tail = f" tx {self.tx}" if self.tx else ""
        note = f" ({self.note})" if self.note else ""
        return f"{text}: cumulative {self.cumulative}, balance {self.balance}{tail}{note}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    payer TEXT NOT NULL, network TEXT NOT NULL, receiver TEXT NOT NULL, token TEXT NOT NULL,
    receiver_authorizer TEXT NOT NULL, withdraw_delay INTEGER NOT NULL,
    channel_id TEXT NOT NULL UNIQUE, chain_id INTEGER NOT NULL, config TEXT NOT NULL,
    charged TEXT NOT NULL, signed_max TEXT NOT NULL, signature TEXT NOT NULL, deposited TEXT NOT NULL,
    balance TEXT NOT NULL, total_claimed TEXT NOT NULL, refund_nonce TEXT NOT NULL,
    withdraw_requested_at INTEGER NOT NULL, refunded TEXT NOT NULL, stopped TEXT,
    uncertain INTEGER NOT NULL,
    PRIMARY KEY (payer, network, receiver, token, receiver_authorizer, withdraw_delay)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel_id TEXT NOT NULL, kind TEXT NOT NULL,
    at INTEGER NOT NULL, amount TEXT NOT NULL, cumulative TEXT NOT NULL, balance TEXT NOT NULL,
    tx TEXT NOT NULL, note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_channel ON events (channel_id, seq);
"""
_COLUMNS = (
    "payer, network, receiver, token, receiver_authorizer, withdraw_delay, channel_id, chain_id, config, "
    "charged, signed_max, signature, deposited, balance, total_claimed, refund_nonce, "
    "withdraw_requested_at, refunded, stopped, uncertain"
)


class ChannelStore:
    """A client's channel records and their life, in SQLite: the file at ``path``, else memory.
    ``keep_life`` False keeps no events (a simulation's agents need only the records)."""

    def __init__(self, path: str | Path | None = None, *, keep_life: bool = True) -> None:
        self.path = None if path is None else Path(path)
        self.keep_life = keep_life
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self.path is not None:  # a bad file is refused at once; memory waits for first use
            self._connect()

    def _connect(self) -> sqlite3.Connection:
        where = ":memory:" if self.path is None else str(self.path)
        db = sqlite3.connect(where, check_same_thread=False)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ValueError(f"{where}: not a channel state file ({exc})") from None
        if version not in (0, SCHEMA_VERSION) or (version == 0 and tables):
            db.close()
            raise ValueError(f"{where}: not a channel state file of version {SCHEMA_VERSION}")
        if self.path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a signed voucher survives a crash
        with db:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = db
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        return self._conn if self._conn is not None else self._connect()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ChannelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: ChannelKey) -> ChannelRecord | None:
        """The record of the channel with these parameters, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM channels WHERE payer=? AND network=? AND receiver=? AND token=? "
                "AND receiver_authorizer=? AND withdraw_delay=?",
                key,
            ).fetchone()
        return None if row is None else _record(row)

    def by_id(self, channel: bytes) -> ChannelRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM channels WHERE channel_id=?", ("0x" + channel.hex(),)
            ).fetchone()
        return None if row is None else _record(row)

    def records(self, payer: str | None = None) -> list[ChannelRecord]:
        """Every record (of ``payer``, when given), oldest first."""
        query = f"SELECT {_COLUMNS} FROM channels"
        args: tuple[str, ...] = ()
        if payer is not None:
            query, args = query + " WHERE payer=?", (checksum(payer),)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
        return [_record(row) for row in rows]

    def put(self, record: ChannelRecord, *events: ChannelEvent) -> None:
        """Write ``record`` and append ``events``, in one committed transaction."""
        c = record.config
        row = (
            *record.key,
            "0x" + record.channel_id.hex(),
            record.chain_id,
            json.dumps(c.to_wire(), sort_keys=True),
            str(record.charged),
            str(record.signed_max),
            "0x" + record.signature.hex(),
            str(record.deposited),
            str(record.balance),
            str(record.total_claimed),
            str(record.refund_nonce),
            record.withdraw_requested_at,
            str(record.refunded),
            record.stopped,
            int(record.uncertain),
        )
        with self._lock, self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO channels ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row
            )
            if self.keep_life:
                self._db.executemany(
                    "INSERT INTO events (channel_id, kind, at, amount, cumulative, balance, tx, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            "0x" + e.channel_id.hex(),
                            e.kind,
                            e.at,
                            str(e.amount),
                            str(e.cumulative),
                            str(e.balance),
                            e.tx,
                            e.note,
                        )
                        for e in events
                    ],
                )

    def life(self, channel: bytes) -> list[ChannelEvent]:
        """The channel's events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel_id, kind, at, amount, cumulative, balance, tx, note FROM events "
                "WHERE channel_id=? ORDER BY seq",
                ("0x" + channel.hex(),),
            ).fetchall()
        return [
            ChannelEvent(bytes.fromhex(r[0][2:]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6], r[7])
            for r in rows
        ]


def _record(row: tuple[Any, ...]) -> ChannelRecord:
    network, chain_id, config = row[1], row[7], ChannelConfig.from_wire(json.loads(row[8]))
    return ChannelRecord(
        network=network,
        config=config,
        chain_id=chain_id,
        charged=int(row[9]),
        signed_max=int(row[10]),
        signature=bytes.fromhex(row[11][2:]),
        deposited=int(row[12]),
        balance=int(row[13]),
        total_claimed=int(row[14]),
        refund_nonce=int(row[15]),
        withdraw_requested_at=row[16],
        refunded=int(row[17]),
        stopped=row[18],
        uncertain=bool(row[19]),
    )


def _settlement_extra(settlement: SettleResponse) -> dict[str, Any]:
    extra = settlement.to_wire().get("extra")
    return extra if isinstance(extra, dict) else {}


def _digits(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


@dataclass
class ClientChannels:
    """The channels of the payer whose key is ``key``: ``store`` keeps them (default: in memory),
    ``policy`` sizes deposits, ``salt`` names the channels it opens (the same salt gives the same
    channel id, which is what a cold start finds on chain), ``chain`` (optional) is read on a cold
    start and after an unanswered or refused payment."""

    key: bytes = field(repr=False)
    store: ChannelStore = field(default_factory=ChannelStore)
    policy: DepositPolicy = field(default_factory=DepositPolicy)
    salt: bytes = ZERO_SALT
    chain: Any = None

    def __post_init__(self) -> None:
        self.payer = address_of_key(self.key)

    # -- looking channels up ----------------------------------------------------------------------

    def key_of(self, offer: Offer) -> ChannelKey:
        config = channel_config(offer, self.payer, self.salt)
        return (
            config.payer,
            offer.network,
            config.receiver,
            config.token,
            config.receiver_authorizer,
            config.withdraw_delay,
        )

    def find(self, offer: Offer) -> ChannelRecord | None:
        """The record of the channel that pays ``offer``, if the client has one."""
        return self.store.get(self.key_of(offer))

    def records(self) -> list[ChannelRecord]:
        return self.store.records(self.payer)

    def life(self, record: ChannelRecord) -> list[ChannelEvent]:
        return self.store.life(record.channel_id)

    def refusal(self, offer: Offer) -> str | None:
        """Why the client will not pay ``offer`` by channel: the offer's shape, or a stopped channel."""
        problem = client_refusal(offer)
        if problem is not None:
            return problem
        record = self.find(offer)
        if record is not None and record.stopped is not None:
            return f"channel 0x{record.channel_id.hex()} is stopped: {record.stopped}"
        return None

    def channel_for(self, offer: Offer, now: int) -> ChannelRecord:
        """The record for ``offer``: the stored one (refreshed from the chain when uncertain), else
        one recovered from the chain (cold start), else a new channel (not stored until used)."""
        record = self.find(offer)
        if record is not None:
            if record.uncertain:
                record = self._refresh(record, now)
            return record
        config = channel_config(offer, self.payer, self.salt)
        record = ChannelRecord(offer.network, config, offer.chain_id or 0)
        onchain = self._read(record)
        if onchain is not None and (onchain.balance or onchain.total_claimed):
            record = record.mirroring(onchain, charged=onchain.total_claimed)
            self.store.put(record, self._event(record, "recovered", now, note="cold start"))
        return record

    def _read(self, record: ChannelRecord) -> ChannelState | None:
        if self.chain is None or getattr(self.chain, "chain_id", None) != record.chain_id:
            return None
        try:
            return read_channel(self.chain, record.channel_id)
        except ChainError:
            return None

    def _refresh(self, record: ChannelRecord, now: int) -> ChannelRecord:
        onchain = self._read(record)
        if onchain is None:
            return record
        record = record.mirroring(
            onchain, charged=max(record.charged, onchain.total_claimed), uncertain=False
        )
        self.store.put(
            record,
            self._event(record, "recovered", now, note="re-read after an unanswered or refused payment"),
        )
        return record

    @staticmethod
    def _event(record: ChannelRecord, kind: str, now: int, **fields: Any) -> ChannelEvent:
        fields.setdefault("cumulative", record.charged)
        fields.setdefault("balance", record.balance)
        return ChannelEvent(record.channel_id, kind, now, **fields)

    # -- paying -----------------------------------------------------------------------------------

    def pay(self, offer: Offer, now: int, entropy: bytes) -> dict[str, Any]:
        """The payload paying ``offer``: a deposit (with the voucher) when the policy says so, else
        the next voucher. The voucher is recorded as signed before it is returned."""
        problem = self.refusal(offer)
        if problem is not None:
            raise ChannelRefused(problem)
        record = self.channel_for(offer, now)
        price = offer.amount
        ceiling = record.charged + price
        deposit = self.policy.deposit_for(price, record.charged, record.balance, announced_min_deposit(offer))
        payload: DepositPayload | VoucherPayload
        if deposit is None:
            payload = voucher_payload(self.key, record.config, record.chain_id, ceiling)
        else:
            payload = deposit_payload(self.key, record.config, offer, deposit, ceiling, now, entropy)
        self.store.put(replace(record, signed_max=ceiling, signature=payload.voucher.signature))
        return payload.to_wire()

    def settled(
        self, offer: Offer, payload: dict[str, Any], settlement: SettleResponse, now: int
    ) -> str | None:
        """Take in the successful answer to a deposit or voucher ``payload`` for ``offer``; the
        problem that stopped the channel, or None (see the module's rules)."""
        sent = parse_payload(payload)
        if not isinstance(sent, DepositPayload | VoucherPayload):
            raise ValueError("settled() takes the answer to a deposit or voucher payload")
        record = self.store.by_id(sent.voucher.channel_id) or self.channel_for(offer, now)
        previous = sent.voucher.max_claimable - offer.amount
        deposit = sent.amount if isinstance(sent, DepositPayload) else 0
        extra = _settlement_extra(settlement)
        problem, state, cumulative = self._check_answer(record, extra, offer.amount, previous, deposit)
        if problem is not None:
            return self._stop(record, problem, now)
        assert cumulative is not None
        balance = state.balance if state is not None else record.balance + deposit
        updated = replace(
            record,
            charged=cumulative,
            deposited=record.deposited + deposit,
            balance=balance,
            total_claimed=state.total_claimed if state is not None else record.total_claimed,
            refund_nonce=state.refund_nonce if state is not None else record.refund_nonce,
            withdraw_requested_at=state.withdraw_requested_at if state is not None else 0,
            uncertain=False,
        )
        events = []
        if deposit:
            deposited = self._event(updated, "deposit", now, amount=deposit, cumulative=previous)
            events.append(replace(deposited, tx=settlement.transaction))
        events.append(self._event(updated, "voucher", now, amount=cumulative - previous))
        self.store.put(updated, *events)
        return None

    def _check_answer(
        self, record: ChannelRecord, extra: dict[str, Any], price: int, previous: int, deposit: int
    ) -> tuple[str | None, ChannelState | None, int | None]:
        """The spec's client verification rules on a paid answer's ``extra``."""
        charged = _digits(extra.get("chargedAmount"))
        if charged is None:
            return "the answer carries no extra.chargedAmount (a decimal string)", None, None
        if charged > price:
            return f"chargedAmount {charged} exceeds the price {price}", None, None
        cumulative = previous + charged
        wire = extra.get("channelState")
        if wire is None:
            return None, None, cumulative
        try:
            state, named = read_snapshot(wire)
        except PayloadError as exc:
            return f"unreadable channelState: {exc}", None, None
        if state.channel_id != record.channel_id:
            return (
                f"channelState names channel 0x{state.channel_id.hex()}, not 0x{record.channel_id.hex()}",
                None,
                None,
            )
        if named is not None and named != cumulative:
            return (
                f"chargedCumulativeAmount {named} is not the previous {previous} plus the charge {charged}",
                None,
                None,
            )
        if state.balance < cumulative:
            return f"channelState.balance {state.balance} does not back the charged {cumulative}", None, None
        if deposit and state.balance < deposit:
            return f"channelState.balance {state.balance} is below the deposit {deposit}", None, None
        return None, state, cumulative

    def _stop(self, record: ChannelRecord, problem: str, now: int) -> str:
        stopped = replace(record, stopped=problem)
        self.store.put(stopped, self._event(stopped, "stopped", now, note=problem))
        return problem

    def doubt(self, offer: Offer) -> None:
        """The client's view of the channel paying ``offer`` may be stale (a payment got no answer,
        so it may have landed; or it was refused): re-read the chain before the next payment."""
        record = self.find(offer)
        if record is not None:
            self.store.put(replace(record, uncertain=True))

    # -- corrective 402 ---------------------------------------------------------------------------

    def correct(self, offer: Offer, now: int) -> str | None:
        """Adopt the server's state from a corrective 402's offer (``offer.extra`` holds
        ``channelState`` and ``voucherState``) under the module's rules; why not, or None."""
        record = self.channel_for(offer, now)
        if record.stopped is not None:
            return f"channel is stopped: {record.stopped}"
        voucher_state = offer.extra.get("voucherState")
        wire = offer.extra.get("channelState")
        onchain = self._read(record)
        proof = (
            isinstance(voucher_state, dict) and {"signedMaxClaimable", "signature"} <= voucher_state.keys()
        )
        if proof and isinstance(wire, dict) and "chargedCumulativeAmount" in wire:
            assert isinstance(voucher_state, dict)
            try:
                state, named = read_snapshot(wire)
            except PayloadError as exc:
                return f"unreadable channelState: {exc}"
            signed = _digits(voucher_state.get("signedMaxClaimable"))
            signature = voucher_state.get("signature")
            if state.channel_id != record.channel_id:
                return f"channelState names channel 0x{state.channel_id.hex()}, not this one"
            if named is None or signed is None or not isinstance(signature, str):
                return "voucherState or chargedCumulativeAmount missing or malformed"
            try:
                raw = bytes.fromhex(signature.removeprefix("0x"))
            except ValueError:
                return "voucherState.signature is not hex"
            problem = voucher_state_problem(
                record.config.payer_authorizer, record.chain_id, record.channel_id, signed, raw, named
            )
            if problem is not None:
                return problem
            claimed = onchain.total_claimed if onchain is not None else state.total_claimed
            if named < claimed:
                return f"chargedCumulativeAmount {named} is below the {claimed} claimed on chain"
            base = onchain if onchain is not None else state
            adopted = record.mirroring(base, charged=named, signed_max=signed, signature=raw, uncertain=False)
            self.store.put(adopted, self._event(adopted, "corrected", now, note="voucherState verified"))
            return None
        if onchain is None:
            return "corrective 402 without a voucherState, and no chain to read the channel from"
        adopted = record.mirroring(onchain, charged=onchain.total_claimed, uncertain=False)
        self.store.put(adopted, self._event(adopted, "corrected", now, note="totalClaimed from the chain"))
        return None

    # -- refunds ----------------------------------------------------------------------------------

    def refund(self, offer: Offer, now: int, amount: int | None = None) -> dict[str, Any]:
        """The refund payload for the channel paying ``offer`` (``amount`` None: all unclaimed)."""
        problem = client_refusal(offer)
        if problem is not None:
            raise ChannelRefused(problem)
        record = self.channel_for(offer, now)
        if record.balance <= record.charged:
            raise ChannelRefused(f"nothing to refund: balance {record.balance}, charged {record.charged}")
        if amount is not None and amount <= 0:
            raise ChannelRefused(f"a refund amount must be positive, got {amount}")
        payload = refund_payload(self.key, record.config, record.chain_id, record.charged, amount)
        return payload.to_wire()

    def refunded(
        self, offer: Offer, payload: dict[str, Any], settlement: SettleResponse, now: int
    ) -> str | None:
        """Take in the successful answer to a refund ``payload``; a problem with it, or None."""
        sent = parse_payload(payload)
        if not isinstance(sent, RefundPayload):
            raise ValueError("refunded() takes the answer to a refund payload")
        record = self.store.by_id(sent.voucher.channel_id) or self.channel_for(offer, now)
        amount = _digits(settlement.amount)
        extra = _settlement_extra(settlement)
        state: ChannelState | None = None
        if extra.get("channelState") is not None:
            try:
                state, _ = read_snapshot(extra["channelState"])
            except PayloadError as exc:
                return f"unreadable channelState: {exc}"
            if state.channel_id != record.channel_id:
                return f"channelState names channel 0x{state.channel_id.hex()}, not this one"
        if amount is None:
            amount = (record.balance - state.balance) if state is not None else (sent.amount or 0)
        if sent.amount is not None and amount > sent.amount:
            return self._stop(record, f"refunded {amount}, more than the {sent.amount} asked", now)
        updated = replace(
            record,
            refunded=record.refunded + amount,
            balance=state.balance if state is not None else max(record.balance - amount, record.charged),
            total_claimed=state.total_claimed if state is not None else record.total_claimed,
            refund_nonce=state.refund_nonce if state is not None else record.refund_nonce + 1,
            withdraw_requested_at=state.withdraw_requested_at if state is not None else 0,
        )
        self.store.put(updated, self._event(updated, "refund", now, amount=amount, tx=settlement.transaction))
        return None

    def __iter__(self) -> Iterator[ChannelRecord]:
        return iter(self.records())
