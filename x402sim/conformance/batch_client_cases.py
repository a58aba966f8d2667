"""Cases of the ``batch-settlement`` mechanism for client targets (payment channels), judged on chain.

The harness plays the resource server (``BatchShop``, the hostile server's handler) and the
facilitator (the reference one, which is the offers' ``receiverAuthorizer``, so it signs the claims
the shop asks for). The shop sells one batch-settlement offer (EIP-3009 deposits, or Permit2 ones;
withdraw delay ``WITHDRAW_DELAY``), keeps its own book per channel (charged, last voucher) across
the runs of a case, settles deposits and verifies vouchers through the harness's facilitator, and
answers 200 with a ``PAYMENT-RESPONSE`` carrying ``chargedAmount`` and ``channelState`` as the
spec's payment response contract says, or the corrective 402
(``invalid_batch_settlement_evm_cumulative_amount_mismatch``, ``accepts[].extra.channelState`` and
``voucherState``). It records every deposit and voucher the client sent beside the charged amount it
held at that moment; a case that runs the client twice with the same payer models a restarted agent
that lost its local state.

Decisions these cases rest on:

* **The channel.** Against an offer the client deposits into the channel the offer implies
  (``payTo`` -> receiver, ``extra.receiverAuthorizer``, ``asset`` -> token, ``extra.withdrawDelay``;
  its own payer and payer authorizer), whose id is the config's hash, and its first voucher is the
  price (``chargedCumulativeAmount`` 0 + ``amount``), signed by its payer authorizer. What decides
  what is paid (MUST, ``payment``). The deposit must land: the facilitator settles it, the channel's
  balance on chain is the deposit, and it is authorized as the offer's ``assetTransferMethod`` says
  (EIP-3009 by default, else Permit2).
* **Vouchers within the charge.** Each voucher's ``maxClaimableAmount`` is the server's
  ``chargedCumulativeAmount`` plus the offer's ``amount`` (Requests and vouchers): no voucher is
  above what the server charged so far plus the price (MUST, ``payment``). The shop charges half the
  price, so a client that counts its signed ceilings instead of the charges overpays on its next
  voucher.
* **Corrective 402.** A client takes a server's ``chargedCumulativeAmount`` only with the last
  signed voucher beside it, whose signature it has checked against its own voucher signer (Recovery
  After State Loss): a forged ``voucherState`` gets no voucher above the price, and on chain the
  shop can claim no more (MUST, ``spec``). Adopting a genuine one and paying ``charged + price``
  once, without a second channel or deposit when the balance covers it, is how the spec describes
  recovery, with no MUST: the SDKs' clients do it (``client/recovery.py``), so it is STRICT
  (``hardening``); a client that cannot recover strands its escrow after a restart.
* **minDeposit.** The spec's offer table has no ``minDeposit``; the SDK servers announce it
  (``extra.minDeposit``, ten prices by default) and may refuse a smaller deposit, and the SDK
  clients deposit at least it. A client that ignores it cannot pay such a server: STRICT
  (``hardening``).

What the shop can claim is judged by claiming, through the facilitator, the highest voucher the
payer signed that it holds, and reading ``totalClaimed`` back (``claim_best``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..evm.channels import ChannelState, VoucherClaim, channel_id, sign_voucher, voucher_digest
from ..evm.eip712 import SignatureError, recover_digest
from ..mechanisms.batch_client import CUMULATIVE_MISMATCH, PERMIT2
from ..mechanisms.batch_wire import (
    DepositPayload,
    Erc3009Deposit,
    PayloadError,
    Permit2Deposit,
    VoucherPayload,
    channel_snapshot,
    parse_payload,
)
from .batch_kit import BATCH, BATCH_SPEC, PRICE, batch_offer, channel_fact, channel_state, claim_payment
from .catalog import case
from .client_cases import challenge
from .forge import header_value
from .harness import Account
from .hostile import Answer, Seen
from .kits import ClientContext

MIN_DEPOSIT = 7 * PRICE  # above the five prices the SDK clients deposit by default
FORGED_CHARGE = 50 * PRICE  # "far above anything served"
DEPOSIT_BELOW_MIN = "invalid_batch_settlement_evm_deposit_below_min_deposit"
PAYLOAD_TYPE = "invalid_batch_settlement_evm_payload_type"
RECOVERY = f"{BATCH_SPEC}, Recovery After State Loss"


@dataclass
class Book:
    """What the shop holds of one channel: the charged cumulative amount and the last voucher."""

    charged: int = 0
    signed_max: int = 0
    signature: bytes = b""


@dataclass(frozen=True)
class Sent:
    """A deposit or voucher the client sent, and the charged amount the shop held when it came."""

    payload: DepositPayload | VoucherPayload
    charged: int

    def json(self) -> dict:
        out = {
            "type": self.payload.type,
            "channelId": "0x" + self.payload.voucher.channel_id.hex(),
            "maxClaimableAmount": self.payload.voucher.max_claimable,
            "chargedBefore": self.charged,
        }
        if isinstance(self.payload, DepositPayload):
            out["deposit"] = self.payload.amount
        return out


@dataclass
class BatchShop:
    """The hostile server's handler selling ``offer`` by channel (see the module docstring):
    ``charge`` per served request; ``min_deposit`` refused below; ``forge``: settle the first
    payment's deposit, then answer it with a corrective 402 claiming ``FORGED_CHARGE``, its
    voucherState signed by ``impostor``."""

    ctx: ClientContext
    offer: dict
    charge: int = PRICE
    min_deposit: int | None = None
    forge: bool = False
    impostor: Account | None = None
    books: dict[bytes, Book] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    @property
    def price(self) -> int:
        return int(self.offer["amount"])

    async def __call__(self, seen: Seen) -> Answer:
        payment = seen.payment
        if payment is None:
            return challenge(self.ctx, seen, [self.offer])
        try:
            body = parse_payload(payment.get("payload") if isinstance(payment, dict) else None)
        except PayloadError as exc:
            return challenge(self.ctx, seen, [self.offer], error=f"unreadable payload: {exc}")
        if not isinstance(body, DepositPayload | VoucherPayload):
            return challenge(self.ctx, seen, [self.offer], error=PAYLOAD_TYPE)
        channel = body.voucher.channel_id
        book = self.books.setdefault(channel, Book())
        self.sent.append(Sent(body, book.charged))
        if self.forge and self.impostor is not None:
            self.forge = False  # once; the shop then holds the forged amount as charged
            if isinstance(body, DepositPayload):  # the escrow is taken first: there is money at stake
                await facilitator_call(self.ctx, "settle", payment, self.offer)
            book.charged = FORGED_CHARGE
            forged = sign_voucher(self.impostor.key, self.ctx.harness.chain_id, channel, FORGED_CHARGE)
            return await self.corrective(seen, channel, FORGED_CHARGE, FORGED_CHARGE, forged)
        if body.voucher.max_claimable != book.charged + self.price:
            return await self.corrective(seen, channel, book.charged, book.signed_max, book.signature)
        if isinstance(body, DepositPayload):
            if self.min_deposit is not None and body.amount < self.min_deposit:
                return challenge(self.ctx, seen, [self.offer], error=DEPOSIT_BELOW_MIN)
            answer = await facilitator_call(self.ctx, "settle", payment, self.offer)
            if not answer.get("success"):
                return Answer(402, [("PAYMENT-RESPONSE", header_value(answer))], {"paid": False})
            transaction, amount = str(answer.get("transaction", "")), str(body.amount)
        else:
            verdict = await facilitator_call(self.ctx, "verify", payment, self.offer)
            if verdict.get("isValid") is not True:
                return challenge(self.ctx, seen, [self.offer], error=str(verdict.get("invalidReason")))
            transaction, amount = "", ""
        book.charged += self.charge
        book.signed_max, book.signature = body.voucher.max_claimable, body.voucher.signature
        response = {
            "success": True,
            "transaction": transaction,
            "network": self.offer["network"],
            "payer": body.config.payer,
            "amount": amount,
            "extra": {
                "chargedAmount": str(self.charge),
                "channelState": channel_snapshot(await self.onchain(channel), book.charged),
            },
        }
        return Answer(200, [("PAYMENT-RESPONSE", header_value(response))], {"paid": True})

    async def onchain(self, channel: bytes) -> ChannelState:
        # off the services' loop: the chain's JSON-RPC is served there
        return await asyncio.to_thread(channel_state, self.ctx.harness, channel)

    async def corrective(
        self, seen: Seen, channel: bytes, charged: int, signed_max: int, signature: bytes
    ) -> Answer:
        """The corrective 402: the channel on chain with ``charged``, and the voucher state."""
        extra = {
            **self.offer["extra"],
            "channelState": channel_snapshot(await self.onchain(channel), charged),
            "voucherState": {"signedMaxClaimable": str(signed_max), "signature": "0x" + signature.hex()},
        }
        return challenge(self.ctx, seen, [{**self.offer, "extra": extra}], error=CUMULATIVE_MISMATCH)

    def facts(self) -> list[Sent]:
        self.ctx.fact("sent", [s.json() for s in self.sent])
        return self.sent


async def facilitator_call(ctx: ClientContext, endpoint: str, payment: Any, requirements: dict) -> dict:
    """POST ``payment`` and ``requirements`` to the harness facilitator's ``endpoint``; its answer."""
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(
            f"{ctx.harness.facilitator_url}/{endpoint}",
            json={"x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements},
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    return answer if isinstance(answer, dict) else {}


def shop(ctx: ClientContext, **terms: Any) -> BatchShop:
    """A shop selling a batch offer (``min_deposit`` announced when given; deposits by ``method``,
    None: EIP-3009) from a fresh payee, installed as the hostile server's handler."""
    offer = batch_offer(
        ctx.harness,
        pay_to=ctx.harness.new_account("payee").address,
        receiver_authorizer=ctx.harness.facilitator.address,
        min_deposit=terms.get("min_deposit"),
        method=terms.pop("method", None),
    )
    the_shop = BatchShop(ctx, offer, **terms)
    ctx.hostile.handler = the_shop
    return the_shop


def signer_of(ctx: ClientContext, sent: Sent) -> str | None:
    voucher = sent.payload.voucher
    digest = voucher_digest(ctx.harness.chain_id, voucher.channel_id, voucher.max_claimable)
    try:
        return recover_digest(digest, voucher.signature)
    except (SignatureError, ValueError):
        return None


def payer_signed(ctx: ClientContext, sent: Sent, payer: Account) -> bool:
    """Whether ``sent``'s voucher is the payer's (its payer authorizer's, or its own when zero)."""
    config = sent.payload.config
    signer = config.payer if int(config.payer_authorizer, 16) == 0 else config.payer_authorizer
    recovered = signer_of(ctx, sent)
    return (
        config.payer.lower() == payer.address.lower()
        and recovered is not None
        and recovered.lower() == signer.lower()
    )


async def claim_best(ctx: ClientContext, the_shop: BatchShop, payer: Account) -> dict[str, dict]:
    """Claim, through the facilitator, the highest payer-signed voucher the shop holds on each
    channel; the channels' on-chain states afterwards (fact ``channels``)."""
    best: dict[bytes, Sent] = {}
    for sent in the_shop.sent:
        channel = sent.payload.voucher.channel_id
        if payer_signed(ctx, sent, payer) and (
            channel not in best
            or sent.payload.voucher.max_claimable > best[channel].payload.voucher.max_claimable
        ):
            best[channel] = sent
    for sent in best.values():
        voucher, config = sent.payload.voucher, sent.payload.config
        state = channel_state(ctx.harness, voucher.channel_id)
        if state.balance == 0 or voucher.max_claimable <= state.total_claimed:
            continue  # nothing there to claim
        row = (config, voucher.max_claimable, voucher.signature, min(voucher.max_claimable, state.balance))
        payment = claim_payment(the_shop.offer, (VoucherClaim(*row),), None, ctx.harness.chain_id)
        answer = await facilitator_call(ctx, "settle", payment, {**the_shop.offer, "amount": "0"})
        ctx.note(f"claim of 0x{voucher.channel_id.hex()} at {voucher.max_claimable}: {answer}")
    return ctx.fact(
        "channels",
        {
            "0x" + c.hex(): channel_fact(ctx.harness, c)
            for c in {s.payload.voucher.channel_id for s in the_shop.sent}
        },
    )


def _served(ctx: ClientContext, run: Any, what: str) -> None:
    paid = [s for s in ctx.hostile.paid if s.answer is not None and s.answer.status == 200]
    ctx.check(bool(paid), f"{what}: no paid request was served (verdict {run.verdict})")


def _deposits(sent: list[Sent]) -> list[DepositPayload]:
    return [s.payload for s in sent if isinstance(s.payload, DepositPayload)]


def _signs_deposit_case(method: str | None):
    permit2 = method == PERMIT2

    @case(
        "client.batch.signs-permit2-deposit" if permit2 else "client.batch.signs-deposit",
        "MUST",
        f"{BATCH_SPEC}: 402 Response (payTo, receiverAuthorizer, asset, withdrawDelay map to the "
        "channel config), Requests and vouchers (maxClaimableAmount = chargedCumulativeAmount + amount)"
        + (", assetTransferMethod permit2 (the Permit2 deposit collector)" if permit2 else ""),
        f"Against a batch offer ({'Permit2' if permit2 else 'EIP-3009'} deposits) the client deposits "
        "into the offer's channel, its first voucher is the price signed by the payer, and the deposit "
        "lands on chain",
        kind="payment",
        mechanism=BATCH,
    )
    async def run(ctx: ClientContext) -> None:
        the_shop = shop(ctx, method=method)
        payer = ctx.harness.permit2_payer(label="client-payer") if permit2 else None
        run, payer, before = await ctx.run_client(payer=payer)
        sent = the_shop.facts()
        ctx.check(bool(sent), f"the client sent no deposit or voucher (verdict {run.verdict})")
        first = sent[0].payload
        ctx.check(isinstance(first, DepositPayload), f"the first payment on a new channel is a {first.type}")
        assert isinstance(first, DepositPayload)
        config, offer = first.config, the_shop.offer
        expected = {
            "payer": payer.address,
            "receiver": offer["payTo"],
            "receiver_authorizer": offer["extra"]["receiverAuthorizer"],
            "token": offer["asset"],
            "withdraw_delay": offer["extra"]["withdrawDelay"],
        }
        for name, value in expected.items():
            got = getattr(config, name)
            ctx.check(str(got).lower() == str(value).lower(), f"channelConfig.{name} is {got}, not {value}")
        channel = channel_id(config, ctx.harness.chain_id)
        ctx.check(
            first.voucher.channel_id == channel,
            f"voucher.channelId 0x{first.voucher.channel_id.hex()} is not the config's hash "
            f"0x{channel.hex()}",
        )
        ctx.check(
            first.voucher.max_claimable == the_shop.price,
            f"the first voucher is {first.voucher.max_claimable}, not the price {the_shop.price}",
        )
        ctx.check(payer_signed(ctx, sent[0], payer), "the voucher does not recover to the payer's authorizer")
        kind = Permit2Deposit if permit2 else Erc3009Deposit
        ctx.check(
            isinstance(first.authorization, kind),
            f"the deposit is authorized by {type(first.authorization).__name__}, not {kind.__name__}",
        )
        _served(ctx, run, "a valid deposit")
        onchain = ctx.fact("channel", channel_fact(ctx.harness, channel))
        ctx.check(
            int(onchain["balance"]) == first.amount,
            f"the channel holds {onchain['balance']} on chain, not the deposit {first.amount}",
        )
        moved = [t["value"] for t in ctx.payer_transfers(payer, before)]
        ctx.check(
            moved == [first.amount], f"the payer's tokens moved {moved}, not the deposit {first.amount}"
        )

    return run


_signs_deposit_case(None)
_signs_deposit_case(PERMIT2)


@case(
    "client.batch.respects-min-deposit",
    "STRICT",
    "the SDKs' clients deposit at least extra.minDeposit (client/config.py) and an SDK server may "
    f"refuse less (deposit_below_min_deposit); {BATCH_SPEC} has no minDeposit",
    "Against an offer announcing extra.minDeposit (7 x price) the client deposits at least it, on chain",
    kind="hardening",
    mechanism=BATCH,
)
async def respects_min_deposit(ctx: ClientContext) -> None:
    the_shop = shop(ctx, min_deposit=MIN_DEPOSIT)
    run, _, _ = await ctx.run_client()
    deposits = _deposits(the_shop.facts())
    ctx.check(bool(deposits), f"the client sent no deposit (verdict {run.verdict})")
    small = [d.amount for d in deposits if d.amount < MIN_DEPOSIT]
    ctx.check(not small, f"the client deposited {small}, below minDeposit {MIN_DEPOSIT}")
    channel = deposits[0].voucher.channel_id
    onchain = ctx.fact("channel", channel_fact(ctx.harness, channel))
    ctx.check(
        int(onchain["balance"]) >= MIN_DEPOSIT,
        f"the channel holds {onchain['balance']} on chain, below minDeposit {MIN_DEPOSIT}",
    )


def _beyond_charge(the_shop: BatchShop) -> list[dict]:
    return [s.json() for s in the_shop.sent if s.payload.voucher.max_claimable > s.charged + the_shop.price]


@case(
    "client.batch.voucher-within-charge",
    "MUST",
    f"{BATCH_SPEC}: Requests and vouchers (maxClaimableAmount = chargedCumulativeAmount + amount), "
    "Client Verification Rules",
    "Across a run and a restarted run charged half the price, no voucher exceeds what the client was "
    "charged plus the price",
    kind="payment",
    mechanism=BATCH,
)
async def voucher_within_charge(ctx: ClientContext) -> None:
    the_shop = shop(ctx, charge=PRICE // 2)
    _, payer, _ = await ctx.run_client(label="first run")
    await ctx.run_client(payer=payer, label="restarted run")
    the_shop.facts()
    ctx.check(bool(the_shop.sent), "the client sent no deposit or voucher")
    beyond = _beyond_charge(the_shop)
    ctx.check(not beyond, f"the client signed vouchers beyond its charge plus the price: {beyond}")
    bound = ctx.fact("claimable_bound", max(s.charged for s in the_shop.sent) + the_shop.price)
    channels = await claim_best(ctx, the_shop, payer)
    over = {c: state["totalClaimed"] for c, state in channels.items() if int(state["totalClaimed"]) > bound}
    ctx.check(not over, f"the shop claimed {over} on chain, beyond the charge plus the price ({bound})")


@case(
    "client.batch.refuses-forged-corrective",
    "MUST",
    f"{RECOVERY}: adopt the server's chargedCumulativeAmount only when the client verifies the "
    "voucherState signature against its own voucher signer",
    "A corrective 402 whose voucherState is not the payer's signature gets no voucher above the "
    "price, and nothing beyond the price is claimable on chain",
    kind="spec",
    mechanism=BATCH,
)
async def refuses_forged_corrective(ctx: ClientContext) -> None:
    impostor = ctx.harness.new_account("impostor")
    the_shop = shop(ctx, forge=True, impostor=impostor)
    _, payer, _ = await ctx.run_client()
    sent = the_shop.facts()
    over = [s.json() for s in sent if s.payload.voucher.max_claimable > the_shop.price]
    ctx.check(not over, f"after a forged corrective 402 the client signed {over}, above the price")
    channels = await claim_best(ctx, the_shop, payer)
    claimed = {c: int(state["totalClaimed"]) for c, state in channels.items()}
    ctx.check(
        all(total <= the_shop.price for total in claimed.values()),
        f"the shop claimed {claimed} on chain, above the price {the_shop.price}",
    )


@case(
    "client.batch.adopts-genuine-corrective",
    "STRICT",
    f"{RECOVERY} (the corrective 402 describes recovery, no MUST); the SDKs' clients adopt a verified "
    "voucherState and retry (client/recovery.py)",
    "A restarted client answered with the genuine corrective 402 pays charged + price once, on the "
    "same channel, without depositing again",
    kind="hardening",
    mechanism=BATCH,
)
async def adopts_genuine_corrective(ctx: ClientContext) -> None:
    the_shop = shop(ctx)
    _, payer, _ = await ctx.run_client(label="first run")
    first = len(the_shop.sent)
    seen = len(ctx.hostile.seen)
    run, _, before = await ctx.run_client(payer=payer, label="restarted run")
    sent = the_shop.facts()
    again = sent[first:]
    ctx.check(bool(again), f"the restarted client paid nothing (verdict {run.verdict})")
    channels = {s.payload.voucher.channel_id for s in sent}
    ctx.check(len(channels) == 1, f"the client paid through {len(channels)} channels, not one")
    served = [s for s in ctx.hostile.seen[seen:] if s.answer is not None and s.answer.status == 200]
    ctx.check(bool(served), f"the restarted client was not served after the corrective 402: {run.verdict}")
    last = again[-1]
    ctx.check(
        last.payload.voucher.max_claimable == last.charged + the_shop.price,
        f"after the corrective 402 the client signed {last.payload.voucher.max_claimable}, not the "
        f"charged {last.charged} plus the price",
    )
    new_transfers = ctx.payer_transfers(payer, before, "restart_transfers")
    ctx.check(
        not new_transfers,
        f"the restarted client deposited again though its channel's balance covers the next voucher: "
        f"{new_transfers}",
    )
    claimed = await claim_best(ctx, the_shop, payer)
    state = next(iter(claimed.values()))
    ctx.check(
        int(state["totalClaimed"]) == last.payload.voucher.max_claimable,
        f"the adopted voucher could not be claimed on chain: {state}",
    )
