"""A small stand-in for a batch-settlement resource server, and a chain that answers channel reads.

They let the client's channel logic be tested alone: the server keeps each channel's charged amount,
checks every voucher's signature by recovery, answers the corrective 402 the spec describes, and can
be told to lie in its answers. The real server and facilitator are tested end to end elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi import encode

from x402sim.actors.driver import BaseDriver, run
from x402sim.actors.messages import Handle, HttpRequest, HttpResponse, Send, Settle, Verify
from x402sim.evm.channels import BATCH_SETTLEMENT_ADDRESS, ChannelState, channel_id, voucher_digest
from x402sim.evm.eip712 import recover_digest
from x402sim.evm.token import selector
from x402sim.mechanisms import Mechanisms, default_mechanisms
from x402sim.mechanisms.batch_client import CUMULATIVE_MISMATCH
from x402sim.mechanisms.batch_wire import DepositPayload, RefundPayload, channel_snapshot, parse_payload
from x402sim.protocol import (
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
    VerifyResponse,
    encode_header,
    read_payment,
)

CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
TOKEN = "0x" + "aa" * 20
PAY_TO = "0x" + "bb" * 20
AUTHORIZER = "0x" + "cc" * 20


class _BatchIdentity:
    """batch-settlement's identity as the client and server look it up, for a registry without the
    facilitator's mechanism: the client's channels sign, the server adds its own extra."""

    scheme, family, transfer_method = "batch-settlement", "eip155", "eip3009"
    ledger_rules = None
    reports_amount = True

    def client_refusal(self, offer: Any) -> None:
        return None

    def sign(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("batch-settlement payloads are signed by the client's channels")

    def extra(self, asset_name: str, asset_version: str) -> dict[str, Any]:
        return {}


def batch_mechanisms() -> Mechanisms[Any]:
    """x402sim's registry, with a client-only batch-settlement entry when it has none yet."""
    registry = default_mechanisms()
    if "batch-settlement" not in registry.schemes:
        registry.register(_BatchIdentity())  # type: ignore[arg-type]
    return registry


def batch_requirements(price: int, **extra: Any) -> PaymentRequirements:
    fields = {
        "receiverAuthorizer": AUTHORIZER,
        "withdrawDelay": 900,
        "name": "USD Coin",
        "version": "2",
        **extra,
    }
    return PaymentRequirements(
        scheme="batch-settlement",
        network=NETWORK,
        amount=str(price),
        asset=TOKEN,
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        extra=fields,
    )


@dataclass
class Book:
    charged: int = 0
    balance: int = 0
    claimed: int = 0
    signed_max: int = 0
    signature: bytes = b""


@dataclass
class FakeBatchServer:
    """Sells one resource at ``price`` by batch-settlement; ``tamper`` rewrites a paid answer's
    ``extra`` before it leaves; ``charge`` is what it charges of the price."""

    price: int
    min_deposit: int | None = None
    charge: int | None = None
    tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    voucher_state: Callable[[Book], dict[str, Any]] | None = None  # a corrective 402's, if overridden
    books: dict[bytes, Book] = field(default_factory=dict)
    served: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    def requirements(self, **extra: Any) -> PaymentRequirements:
        if self.min_deposit is not None:
            extra.setdefault("minDeposit", str(self.min_deposit))
        return batch_requirements(self.price, **extra)

    def _challenge(self, error: str | None = None, **extra: Any) -> HttpResponse:
        required = PaymentRequired(
            x402_version=2,
            error=error,
            resource=ResourceInfo(url="http://fake/thing"),
            accepts=[self.requirements(**extra)],
        )
        return HttpResponse(402, (("PAYMENT-REQUIRED", encode_header(required)),), b"{}")

    def handle(self, request: HttpRequest) -> HttpResponse:
        payment = read_payment(request.headers)
        if payment is None:
            return self._challenge()
        wire = payment.payload
        self.received.append(wire)
        sent = parse_payload(wire)
        cid = sent.voucher.channel_id  # type: ignore[union-attr]
        assert cid == channel_id(sent.config, CHAIN_ID)  # type: ignore[union-attr]
        signer = recover_digest(
            voucher_digest(CHAIN_ID, cid, sent.voucher.max_claimable), sent.voucher.signature
        )  # type: ignore[union-attr]
        assert signer == sent.config.payer_authorizer  # type: ignore[union-attr]
        book = self.books.setdefault(cid, Book())
        if isinstance(sent, RefundPayload):
            if sent.voucher.max_claimable != book.charged:
                return self._corrective(book, cid)
            amount = (
                book.balance - book.charged
                if sent.amount is None
                else min(sent.amount, book.balance - book.charged)
            )
            book.balance -= amount
            book.claimed = book.charged
            return self._answer(cid, book, {"channelState": self._state(cid, book)}, str(amount), "0xfeed")
        if sent.voucher.max_claimable != book.charged + self.price:
            return self._corrective(book, cid)
        deposit = sent.amount if isinstance(sent, DepositPayload) else 0
        if sent.voucher.max_claimable > book.balance + deposit:
            return self._challenge("invalid_batch_settlement_evm_cumulative_exceeds_balance")
        book.balance += deposit
        charged = self.price if self.charge is None else self.charge
        book.charged += charged
        book.signed_max, book.signature = sent.voucher.max_claimable, sent.voucher.signature
        self.served += 1
        extra = {"chargedAmount": str(charged), "channelState": self._state(cid, book)}
        if self.tamper is not None:
            extra = self.tamper(extra)
        tx = "0x" + "de" * 32 if deposit else ""
        return self._answer(cid, book, extra, str(deposit) if deposit else "", tx, body=b"served")

    def _state(self, cid: bytes, book: Book) -> dict[str, Any]:
        return channel_snapshot(ChannelState(cid, book.balance, book.claimed), book.charged)

    def _corrective(self, book: Book, cid: bytes) -> HttpResponse:
        state = self._state(cid, book)
        voucher = (
            self.voucher_state(book)
            if self.voucher_state is not None
            else {"signedMaxClaimable": str(book.signed_max), "signature": "0x" + book.signature.hex()}
        )
        return self._challenge(CUMULATIVE_MISMATCH, channelState=state, voucherState=voucher)

    def _answer(
        self, cid: bytes, book: Book, extra: dict[str, Any], amount: str, tx: str, body: bytes = b""
    ) -> HttpResponse:
        settlement = SettleResponse.from_wire(
            {"success": True, "transaction": tx, "network": NETWORK, "amount": amount, "extra": extra}
        )
        return HttpResponse(200, (("PAYMENT-RESPONSE", encode_header(settlement)),), body)


class FakeDriver(BaseDriver):
    world = "fake batch server"

    def __init__(self, server: FakeBatchServer) -> None:
        self.server = server

    def send(self, effect: Send) -> HttpResponse:
        return self.server.handle(effect.request)


@dataclass
class FakeChain:
    """Answers the batch-settlement contract's channel reads from ``channels`` (id -> state)."""

    chain_id: int = CHAIN_ID
    channels: dict[bytes, ChannelState] = field(default_factory=dict)

    def call(self, to: str, data: bytes, *, timestamp: int | None = None) -> Any:
        assert to == BATCH_SETTLEMENT_ADDRESS
        cid = data[4:36]
        state = self.channels.get(cid, ChannelState(cid))
        if data[:4] == selector("channels(bytes32)"):
            out = encode(["uint128", "uint128"], [state.balance, state.total_claimed])
        elif data[:4] == selector("pendingWithdrawals(bytes32)"):
            out = encode(["uint128", "uint40"], [state.withdraw_amount, state.withdraw_requested_at])
        else:
            out = encode(["uint256"], [state.refund_nonce])
        return _Result(out)


@dataclass
class _Result:
    output: bytes
    success: bool = True
    revert_reason: str | None = None


@dataclass
class LedgerFacilitator:
    """A facilitator whose chain is a dict of channel states: verify judges deposits and vouchers
    against the balance, settle applies deposits, claims and refunds to it. Every answer carries
    the channel's state, as the spec's facilitator does."""

    channels: dict[bytes, ChannelState] = field(default_factory=dict)
    settled: list[dict[str, Any]] = field(default_factory=list)

    def state(self, cid: bytes) -> ChannelState:
        return self.channels.get(cid, ChannelState(cid))

    def verify(self, payment: Any) -> VerifyResponse:
        body = parse_payload(payment.payload)
        cid = body.voucher.channel_id  # type: ignore[union-attr]
        state = self.state(cid)
        deposit = body.amount if isinstance(body, DepositPayload) else 0
        ceiling = body.voucher.max_claimable  # type: ignore[union-attr]
        valid = ceiling <= state.balance + deposit and (
            ceiling >= state.total_claimed
            if isinstance(body, RefundPayload)
            else ceiling > state.total_claimed
        )
        answer = VerifyResponse(
            is_valid=valid,
            invalid_reason=None if valid else "invalid_batch_settlement_evm_cumulative_exceeds_balance",
            payer=body.config.payer,  # type: ignore[union-attr]
        )
        return answer.model_copy(update={"extra": state.to_wire()})

    def settle(self, payment: Any) -> SettleResponse:
        body = parse_payload(payment.payload)
        self.settled.append(payment.payload)
        amount = ""
        cid = getattr(getattr(body, "voucher", None), "channel_id", None)
        if isinstance(body, DepositPayload):
            state = self.state(cid)  # type: ignore[arg-type]
            self.channels[cid] = replace(state, balance=state.balance + body.amount)  # type: ignore[index]
            amount = str(body.amount)
        elif isinstance(body, RefundPayload):
            state = self.state(cid)  # type: ignore[arg-type]
            claimed = max([state.total_claimed, *(c.total_claimed for c in body.claims)])
            refunded = min(body.amount or 0, state.balance - claimed)
            self.channels[cid] = replace(  # type: ignore[index]
                state,
                balance=state.balance - refunded,
                total_claimed=claimed,
                refund_nonce=state.refund_nonce + 1,
            )
            amount = str(refunded)
        extra = {"channelState": self.state(cid).to_wire()} if cid is not None else {}
        return SettleResponse.from_wire(
            {
                "success": True,
                "transaction": "0x" + "ab" * 32,
                "network": NETWORK,
                "amount": amount,
                "extra": extra,
            }
        )


class ServerDriver(BaseDriver):
    """Runs x402sim's ``ResourceServer`` for a client: its facilitator calls go to ``facilitator``,
    its application answers 200."""

    world = "server and ledger facilitator"

    def __init__(self, server: Any, facilitator: LedgerFacilitator, now: int) -> None:
        self.server, self.facilitator, self.now = server, facilitator, now

    def send(self, effect: Send) -> HttpResponse:
        return run(self.server.handle(effect.request, self.now), self)

    def verify(self, effect: Verify) -> VerifyResponse:
        return self.facilitator.verify(effect.payload)

    def settle(self, effect: Settle) -> SettleResponse:
        return self.facilitator.settle(effect.payload)

    def handle(self, effect: Handle) -> HttpResponse:
        return HttpResponse(200, (), b"the resource")
