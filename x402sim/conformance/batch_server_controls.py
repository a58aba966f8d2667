"""Controls of the ``batch-settlement`` server cases: the reference server with one channel rule
broken on purpose.

Each is a subclass of ``ResourceServer`` overriding one step of its channel side
(``server_channels.ChannelSelling``): the offer's terms, the answer it delivers, the deposit's
settlement (served before it answers, or counted whatever it answers), the cumulative check (any
amount served, or a corrective 402 without the state to correct by), the local verify (no balance
row; the voucher recorded before it is judged), a resent deposit counted again, and the refund it
completes (all the escrow whatever was asked, or all that is left when asked too much).
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ..actors.server import ResourceServer
from ..actors.server_channels import CUMULATIVE_MISMATCH, ChannelRecord
from ..evm.channels import UINT128_MAX, channel_id
from ..mechanisms.batch_wire import DepositPayload, PayloadError, VoucherPayload, parse_payload
from ..protocol import PaymentPayload, SettleResponse, evm_chain_id
from .controls import control
from .reference import InProcessService, reference_server

SETTLE_TIMEOUT = 30.0  # seconds the background settlement of ``ServesBeforeSettling`` may take


def _server(name: str, role_class: type[ResourceServer], facilitator: bool = False) -> InProcessService:
    """The from-env reference server built as ``role_class`` (given the facilitator's URL when
    ``facilitator``)."""

    def build(env: dict[str, str]):
        switches = {"facilitator_url": env["FACILITATOR_URL"]} if facilitator else {}
        return reference_server(env, role_class=role_class, **switches)[1]

    return InProcessService("server", build, name=name, kind="control")


def _deposit(payment: Any) -> DepositPayload | None:
    """The deposit a payment carries, or None."""
    try:
        body = parse_payload(getattr(payment, "payload", None))
    except PayloadError:
        return None
    return body if isinstance(body, DepositPayload) else None


def _counted(payment: PaymentPayload, requirements, body: DepositPayload, transaction: str) -> SettleResponse:
    """A deposit answered as settled, its amount counted into the channel's balance."""
    answer = SettleResponse(
        success=True,
        payer=body.config.payer,
        transaction=transaction or "0x" + "00" * 32,
        network=requirements.network,
        amount=str(body.amount),
    )
    state = {"channelId": "0x" + body.voucher.channel_id.hex(), "balance": str(body.amount)}
    return answer.model_copy(update={"extra": {"channelState": state}})


@dataclass
class DelayAsText(ResourceServer):
    def _channel_extra(self, route, mechanism, price):
        extra = super()._channel_extra(route, mechanism, price)
        return {**extra, "withdrawDelay": str(extra["withdrawDelay"])}


@control(
    "server-batch-delay-as-text",
    "server",
    "Writes the batch offer's withdrawDelay as a string",
    ("server.batch.offer",),
)
def delay_as_text():
    return _server("server-batch-delay-as-text", DelayAsText)


@dataclass
class NoChannelState(ResourceServer):
    def deliver(self, route, version, response, settlement):
        extra = {k: v for k, v in (settlement.extra or {}).items() if k != "channelState"}
        return super().deliver(route, version, response, settlement.model_copy(update={"extra": extra}))


@control(
    "server-batch-no-channel-state",
    "server",
    "Answers paid batch requests without extra.channelState in PAYMENT-RESPONSE",
    ("server.batch.pays",),
)
def no_channel_state():
    return _server("server-batch-no-channel-state", NoChannelState)


@dataclass
class ServesBeforeSettling(ResourceServer):
    """Takes a verified deposit as counted: serves at once and settles it in the background."""

    facilitator_url: str = ""

    def settle_payment(self, payment, requirements):
        body = _deposit(payment)
        if body is None:
            return (yield from super().settle_payment(payment, requirements))
        document = {
            "x402Version": 2,
            "paymentPayload": payment.to_wire(),
            "paymentRequirements": requirements.to_wire(),
        }

        def settle() -> None:
            with contextlib.suppress(httpx.HTTPError):  # a settlement nobody waits for
                httpx.post(
                    self.facilitator_url.rstrip("/") + "/settle", json=document, timeout=SETTLE_TIMEOUT
                )

        threading.Thread(target=settle, daemon=True).start()
        return _counted(payment, requirements, body, "")


@control(
    "server-batch-serves-before-settling",
    "server",
    "Serves a verified deposit at once and settles it in the background (x402#2559, x402#3464)",
    ("server.batch.deposit-unconfirmed", "server.batch.serve-before-protected"),
)
def serves_before_settling():
    return _server("server-batch-serves-before-settling", ServesBeforeSettling, facilitator=True)


@dataclass
class CountsRefusedDeposit(ResourceServer):
    """Counts a deposit whatever its settlement answered."""

    def settle_payment(self, payment, requirements):
        answer = yield from super().settle_payment(payment, requirements)
        body = _deposit(payment)
        if answer.success or body is None:
            return answer
        return _counted(payment, requirements, body, answer.transaction)


@control(
    "server-batch-counts-refused-deposit",
    "server",
    "Counts a deposit and serves it whatever its settlement answered (x402#2559)",
    ("server.batch.deposit-unconfirmed", "server.batch.serve-before-protected"),
)
def counts_refused_deposit():
    return _server("server-batch-counts-refused-deposit", CountsRefusedDeposit)


@dataclass
class AnyCumulative(ResourceServer):
    """Takes every voucher as the next one: what it charged becomes the voucher less the price."""

    def serve_channel(self, route, request, payment, requirements, version, now=None):
        try:
            body = parse_payload(getattr(payment, "payload", None))
        except PayloadError:
            body = None
        if isinstance(body, DepositPayload | VoucherPayload):
            record = self.channels.get(body.voucher.channel_id)
            base = max(0, body.voucher.max_claimable - int(requirements.amount))
            if record is not None and record.charged != base:
                self.channels.put(replace(record, charged=base))
        return (yield from super().serve_channel(route, request, payment, requirements, version, now))


@control(
    "server-batch-any-cumulative",
    "server",
    "Serves a voucher of any cumulative amount, never answering the corrective 402",
    ("server.batch.cumulative-mismatch",),
)
def any_cumulative():
    return _server("server-batch-any-cumulative", AnyCumulative)


@dataclass
class NoBalanceCheck(ResourceServer):
    """Verifies vouchers locally as if every channel held the most a channel can."""

    def verify_locally(self, record, body, requirements, now):
        roomy = None if record is None else replace(record, balance=UINT128_MAX)
        return super().verify_locally(roomy, body, requirements, now)


@control(
    "server-batch-no-balance-check",
    "server",
    "Serves vouchers beyond the channel's balance (no balance row in its local verify)",
    ("server.batch.voucher-over-balance", "server.batch.deposit-counted-twice"),
)
def no_balance_check():
    return _server("server-batch-no-balance-check", NoBalanceCheck)


@dataclass
class RecordsBeforeVerify(ResourceServer):
    """Writes a voucher's charge into the book before judging it (x402#2881)."""

    def verify_locally(self, record: ChannelRecord | None, body, requirements, now):
        if record is not None:
            voucher = body.voucher
            self.channels.put(
                replace(
                    record,
                    charged=voucher.max_claimable,
                    signed_max=voucher.max_claimable,
                    signature=voucher.signature,
                )
            )
        return super().verify_locally(record, body, requirements, now)


@control(
    "server-batch-records-before-verify",
    "server",
    "Records a voucher before verifying it, so a refused one still moves the channel (x402#2881)",
    ("server.batch.failed-verify-no-state",),
)
def records_before_verify():
    return _server("server-batch-records-before-verify", RecordsBeforeVerify)


@dataclass
class RecountsDeposit(ResourceServer):
    """Takes a deposit sent again as a retry of the one it settled: counts its amount into the
    balance once more and judges its voucher alone (x402#2883)."""

    deposits: set[str] = field(default_factory=set)

    def serve_channel(self, route, request, payment, requirements, version, now=None):
        body = _deposit(payment)
        if body is not None:
            key = json.dumps(payment.payload.get("deposit"), sort_keys=True)
            channel = channel_id(body.config, evm_chain_id(self.network))
            record = self.channels.get(channel)
            if key in self.deposits and record is not None:
                self.channels.put(replace(record, balance=record.balance + body.amount))
                voucher = VoucherPayload(body.config, body.voucher)
                payment = payment.model_copy(update={"payload": voucher.to_wire()})
            self.deposits.add(key)
        return (yield from super().serve_channel(route, request, payment, requirements, version, now))


@control(
    "server-batch-recounts-deposit",
    "server",
    "Counts a deposit sent again into the channel's balance once more (x402#2883)",
    ("server.batch.deposit-counted-twice",),
)
def recounts_deposit():
    return _server("server-batch-recounts-deposit", RecountsDeposit)


@dataclass
class RefundsAll(ResourceServer):
    """Completes any refund request as the whole unclaimed escrow, claiming nothing first."""

    def _refund_payload(self, record, amount, claims, voucher=None):
        return super()._refund_payload(record, record.balance - record.total_claimed, (), voucher)


@control(
    "server-batch-refunds-all",
    "server",
    "Refunds the whole unclaimed escrow whatever was asked and served, claiming nothing first",
    ("server.batch.refund",),
)
def refunds_all():
    return _server("server-batch-refunds-all", RefundsAll)


@dataclass
class RefundsWhatIsLeft(ResourceServer):
    """Answers a refund asking more than is unclaimed with a refund of all that is left."""

    def _refund(self, route, payment, requirements, body, record, version, now):
        if body.amount is not None and body.amount > record.balance - record.charged:
            body = replace(body, amount=None)
        return (yield from super()._refund(route, payment, requirements, body, record, version, now))


@control(
    "server-batch-refunds-what-is-left",
    "server",
    "Refunds all that is left when a refund asks more than is unclaimed, instead of refusing it",
    ("server.batch.refund-over-unclaimed",),
)
def refunds_what_is_left():
    return _server("server-batch-refunds-what-is-left", RefundsWhatIsLeft)


@dataclass
class BareMismatch(ResourceServer):
    def challenge(self, route, version, error, headers=(), status=402, extra=None):
        if error == CUMULATIVE_MISMATCH:
            extra = None
        return super().challenge(route, version, error, headers, status, extra)


@control(
    "server-batch-bare-mismatch",
    "server",
    "Answers a cumulative mismatch with a 402 carrying neither channelState nor voucherState",
    ("server.batch.cumulative-mismatch",),
)
def bare_mismatch():
    return _server("server-batch-bare-mismatch", BareMismatch)
