"""Cases of the ``batch-settlement`` mechanism for facilitator targets (payment channels), judged on chain.

The harness is the resource server: it builds batch offers for a fresh payee (``batch_kit.batch_offer``),
opens channels from fresh funded payers, posts ``/verify`` and ``/settle`` bodies, and reads what the
batch-settlement contract holds afterwards (channel balance, ``totalClaimed``, ``refundNonce``, the
receiver's totals, the contract's events, token ``Transfer`` logs). Every case is skipped when
``/supported`` lists no ``batch-settlement`` kind for the harness's network.

Decisions these cases rest on:

* **Who authorizes.** The channels' ``receiverAuthorizer`` is a key the harness holds, so the harness
  signs claims and refunds itself (``claimAuthorizerSignature``, ``refundAuthorizerSignature``), except
  where a case is about delegation: then it is the address the facilitator's ``/supported`` kind names
  in ``extra.receiverAuthorizer``, and the harness sends no authorizer signature.
* **Deposits.** A deposit that verifies settles with its ``Deposited`` event, and the answer's
  ``amount`` and ``extra.channelState`` are what the chain holds (spec, facilitator interface). A
  deposit whose transfer cannot happen (a payer without the tokens, an authorization the payer
  cancelled) is refused at ``/verify`` and never reported settled (x402#2559: counted before
  confirmed). The same deposit settled twice, in turn or at once, lands once and only one answer is
  a success (x402#2883). ``/verify`` sends nothing: no transaction, the balance stays 0 and the
  authorization unspent, for a valid deposit and for a failing one (x402#2881).
* **Vouchers.** Verification rules 6, 9 and 10: a voucher signed by another key, above the channel's
  balance, or at or below its on-chain ``totalClaimed`` is refused at ``/verify``.
* **Success means the event.** A sweep with nothing claimed lands without a ``Settled`` event: it is
  no success (x402#3096, x402#3092: fail closed). Every success of a claim or sweep names a
  transaction whose receipt holds its event, and a sweep moves exactly the claimed amount to the
  receiver. A claim that raises no channel's ``totalClaimed`` lands without ``Claimed``; answering it
  a success is STRICT only: the public reports are about sweeps and refunds, and such a claim
  leaves nothing unclaimed that the server believes claimed.
* **Refunds.** Rule 11: the refund nonce must be the channel's on-chain one, and the receiver
  authorizer's signature must bind the amount submitted; otherwise nothing moves and no success. The
  contract caps a refund at the unclaimed escrow, so a refund asking for more than is unclaimed
  returns exactly the unclaimed escrow, and the answer's ``amount`` is what the payer received (the
  ``Refunded`` event), not what was asked.
* **Withdrawal race.** While the payer's timed withdrawal is pending the receiver side can still
  claim outstanding vouchers and sweep them (spec, "Refund and withdrawal"): a facilitator claims and
  settles them, and the withdrawal stays pending. The chain's clock never moves here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..evm.channels import BATCH_SETTLEMENT_ADDRESS, erc3009_deposit_nonce
from .batch_kit import (
    BATCH,
    BATCH_SPEC,
    PRICE,
    ChannelPayer,
    batch_events,
    batch_offer,
    channel_fact,
    channel_state,
    claim_payment,
    receipt_has_event,
    receiver_totals,
    settle_payment,
)
from .catalog import case
from .kits import FacilitatorContext, transfer_json

DEPOSIT = 10 * PRICE
RULES = f"{BATCH_SPEC}, Verification Rules"
INTERFACE = f"{BATCH_SPEC}, Facilitator Interface (POST /settle)"


# -- the harness as the resource server ---------------------------------------------------------------


async def _kind(ctx: FacilitatorContext) -> dict:
    """The ``/supported`` batch-settlement kind for the harness's network (skips the case if none)."""
    document = ctx.answer(await ctx.supported())
    kinds = document.get("kinds") if isinstance(document, dict) else None
    for kind in kinds if isinstance(kinds, list) else []:
        if (
            isinstance(kind, dict)
            and kind.get("scheme") == BATCH
            and kind.get("network") == ctx.harness.network
        ):
            return kind
    ctx.skip(f"/supported lists no {BATCH} kind for {ctx.harness.network}")


class Shop:
    """The harness's batch offer for a fresh payee, and the receiver authorizer's key (None when the
    channels delegate it to the facilitator)."""

    def __init__(self, ctx: FacilitatorContext, authorizer: str | None = None) -> None:
        self.ctx = ctx
        self.key: bytes | None = None
        if authorizer is None:
            account = ctx.harness.new_account("receiver-authorizer")
            self.key, authorizer = account.key, account.address
        self.pay_to = ctx.harness.new_account("payee").address
        self.offer = batch_offer(ctx.harness, pay_to=self.pay_to, receiver_authorizer=authorizer)

    def payer(self, usdc: int | None = None) -> ChannelPayer:
        harness = self.ctx.harness
        account = harness.funded_account() if usdc is None else harness.funded_account(usdc=usdc)
        return ChannelPayer(account, self.offer, harness.chain_id, self.ctx.rng)

    async def verify(self, payment: dict, what: str) -> Any:
        response = await self.ctx.call("verify", payment, self.offer, label=f"POST /verify ({what})")
        self.ctx.check(response is not None and response.status_code < 500, f"/verify of {what}: a 5xx")
        return self.ctx.answer(response)

    async def settle(self, payment: dict, what: str) -> Any:
        response = await self.ctx.call("settle", payment, self.offer, label=f"POST /settle ({what})")
        self.ctx.check(response is not None and response.status_code < 500, f"/settle of {what}: a 5xx")
        return self.ctx.answer(response)

    async def refused(self, payment: dict, what: str) -> None:
        verdict = await self.verify(payment, what)
        self.ctx.fact(f"verify: {what}", verdict)
        self.ctx.check(_valid(verdict) is False, f"/verify did not refuse {what}: {verdict}")

    async def open(self, payer: ChannelPayer, amount: int = DEPOSIT) -> dict:
        """Deposit ``amount`` (voucher ``PRICE``), and check that it landed; the settle answer."""
        answer = await self.settle(payer.deposit(amount, PRICE, self.ctx.harness.now()), "a deposit")
        self.ctx.check(_success(answer), f"a valid deposit did not settle: {answer}")
        state = channel_state(self.ctx.harness, payer.channel)
        self.ctx.check(
            state.balance == amount, f"the channel holds {state.balance} after a deposit of {amount}"
        )
        return answer

    async def claim(self, payer: ChannelPayer, total: int, what: str) -> Any:
        claims = (payer.claim(total),)
        payment = claim_payment(self.offer, claims, self.key, self.ctx.harness.chain_id)
        return await self.settle(payment, what)

    async def opened(self) -> ChannelPayer:
        """A fresh payer whose channel holds ``DEPOSIT`` (checked on chain)."""
        payer = self.payer()
        await self.open(payer)
        return payer

    async def claimed(self, total: int) -> tuple[ChannelPayer, Any]:
        """A fresh payer's channel holding ``DEPOSIT`` with ``total`` claimed: the payer and the
        claim's answer, which must be a success."""
        payer = await self.opened()
        answer = await self.claim(payer, total, "a claim")
        self.ctx.check(_success(answer), f"a valid claim did not succeed: {answer}")
        return payer, answer


def _valid(verdict: Any) -> bool | None:
    return verdict.get("isValid") if isinstance(verdict, dict) else None


def _success(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("success") is True


def _succeeded_with(ctx: FacilitatorContext, answer: Any, event: str, what: str) -> None:
    """A success ``answer`` names a mined transaction whose receipt holds ``event``."""
    if _success(answer):
        tx = ctx.fact(f"{what}: transaction", answer.get("transaction"))
        ctx.check(
            ctx.fact(f"{what}: {event} in its receipt", receipt_has_event(ctx.harness, tx, event)),
            f"{what} answered success naming {tx!r}, whose receipt holds no {event} event",
        )


def _salt_nonce(payer: ChannelPayer, payment: dict) -> str:
    """The EIP-3009 nonce a deposit payment's authorization spends."""
    salt = payment["payload"]["deposit"]["authorization"]["erc3009Authorization"]["salt"]
    return "0x" + erc3009_deposit_nonce(payer.channel, int(salt, 16)).hex()


# -- deposits -------------------------------------------------------------------------------------------


@case(
    "facilitator.batch.deposit-settles",
    "MUST",
    f"{INTERFACE}: a deposit settles through the collector; amount and extra.channelState in the answer",
    "A valid deposit verifies and settles with a Deposited event; amount and channelState match the chain",
    kind="spec",
    mechanism=BATCH,
)
async def deposit_settles(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    payer = shop.payer()
    payment = payer.deposit(DEPOSIT, PRICE, ctx.harness.now())
    verdict = await shop.verify(payment, "a valid deposit")
    ctx.check(_valid(verdict) is True, f"/verify refused a valid deposit: {verdict}")
    answer = await shop.settle(payment, "a valid deposit")
    ctx.fact("settle", answer)
    ctx.check(_success(answer), f"a valid deposit did not settle: {answer}")
    tx = answer.get("transaction")
    ctx.check(
        ctx.fact("Deposited", receipt_has_event(ctx.harness, tx, "Deposited")),
        f"the deposit's transaction {tx!r} holds no Deposited event",
    )
    state = ctx.fact("channel", channel_fact(ctx.harness, payer.channel))
    ctx.check(state["balance"] == str(DEPOSIT), f"the channel holds {state['balance']}, not {DEPOSIT}")
    ctx.check(str(answer.get("amount")) == str(DEPOSIT), f"the answer's amount is {answer.get('amount')!r}")
    extra = answer.get("extra")
    said = extra.get("channelState") if isinstance(extra, dict) else None
    if not isinstance(said, dict):
        ctx.fail(f"the answer carries no extra.channelState: {extra}")
    for name in ("channelId", "balance", "totalClaimed", "refundNonce"):
        ctx.check(
            str(said.get(name)).lower() == str(state[name]).lower(),
            f"extra.channelState.{name} is {said.get(name)!r}, the chain holds {state[name]!r}",
        )


@case(
    "facilitator.batch.deposit-unconfirmed",
    "MUST",
    "x402#2559 (a deposit counted before it was confirmed); " + f"{RULES} 8 (the payer holds the deposit)",
    "A deposit whose transfer cannot happen is refused at /verify, never settled, and credits nothing",
    kind="bug",
    mechanism=BATCH,
)
async def deposit_unconfirmed(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    broke = shop.payer(usdc=0)
    cancelled = shop.payer()
    cancelled_payment = cancelled.deposit(DEPOSIT, PRICE, ctx.harness.now())
    ctx.harness.fund(cancelled.account.address, eth=10**16)
    nonce = _salt_nonce(cancelled, cancelled_payment)
    ctx.cancel_authorization(cancelled.account, nonce, shop.offer)
    ctx.check(
        ctx.fact("cancelled authorization spent", ctx.harness.used(cancelled.account.address, nonce)),
        "the payer's cancelAuthorization did not land",
    )
    before = ctx.harness.block_number()
    for what, payer, payment in (
        (
            "a deposit from a payer without the tokens",
            broke,
            broke.deposit(DEPOSIT, PRICE, ctx.harness.now()),
        ),
        ("a deposit whose authorization the payer cancelled", cancelled, cancelled_payment),
    ):
        await shop.refused(payment, what)
        answer = await shop.settle(payment, what)
        ctx.fact(f"settle: {what}", answer)
        ctx.check(not _success(answer), f"/settle reported success for {what}: {answer}")
        state = ctx.fact(f"channel: {what}", channel_fact(ctx.harness, payer.channel))
        ctx.check(state["balance"] == "0", f"the channel holds {state['balance']} after {what}")
    deposited = ctx.fact("Deposited", [e.tx_hash for e in batch_events(ctx.harness, before, "Deposited")])
    ctx.check(not deposited, f"Deposited events for deposits that cannot happen: {deposited}")


@case(
    "facilitator.batch.deposit-twice",
    "MUST",
    "x402#2883 (a deposit counted twice); EIP-3009 single-use nonce",
    "A deposit settled twice (in turn, at once): one success, one Deposited, the balance counts it once",
    kind="bug",
    mechanism=BATCH,
)
async def deposit_twice(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    payer = shop.payer()
    payment = payer.deposit(DEPOSIT, PRICE, ctx.harness.now())
    before = ctx.harness.block_number()
    first = await shop.settle(payment, "a deposit")
    ctx.check(_success(first), f"a valid deposit did not settle: {first}")
    second = await shop.settle(payment, "the same deposit again")
    ctx.fact("second settle", second)
    ctx.check(not _success(second), f"the same deposit settled twice answered success twice: {second}")
    deposited = ctx.fact("Deposited", [e.tx_hash for e in batch_events(ctx.harness, before, "Deposited")])
    ctx.check(len(deposited) == 1, f"{len(deposited)} Deposited events for one deposit")
    state = ctx.fact("channel", channel_fact(ctx.harness, payer.channel))
    ctx.check(state["balance"] == str(DEPOSIT), f"the channel holds {state['balance']}, not {DEPOSIT}")
    # a top-up, its two copies settled at once
    top_up = payer.deposit(DEPOSIT, PRICE, ctx.harness.now())
    answers = await asyncio.gather(*(shop.settle(top_up, f"a top-up, copy {i + 1}") for i in range(2)))
    ctx.fact("top-up settles", answers)
    ctx.check(sum(map(_success, answers)) == 1, f"two copies of one top-up: {answers}")
    deposited = ctx.fact("Deposited", [e.tx_hash for e in batch_events(ctx.harness, before, "Deposited")])
    ctx.check(len(deposited) == 2, f"{len(deposited)} Deposited events for a deposit and a top-up")
    state = ctx.fact("channel after the top-up", channel_fact(ctx.harness, payer.channel))
    ctx.check(
        state["balance"] == str(2 * DEPOSIT), f"the channel holds {state['balance']}, not {2 * DEPOSIT}"
    )


@case(
    "facilitator.batch.verify-writes-nothing",
    "MUST",
    "x402#2881 (state changed before verify); facilitator API (POST /verify executes nothing)",
    "/verify of a valid deposit and of a failing one sends no transaction: balance 0, authorization unspent",
    kind="bug",
    mechanism=BATCH,
)
async def verify_writes_nothing(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    valid, failing = shop.payer(), shop.payer()
    payments = (
        ("a valid deposit", valid, valid.deposit(DEPOSIT, PRICE, ctx.harness.now()), True),
        # a voucher above the deposit: refused by rule 9
        (
            "a deposit whose voucher exceeds it",
            failing,
            failing.deposit(DEPOSIT, DEPOSIT + 1, ctx.harness.now()),
            False,
        ),
    )
    before = ctx.harness.block_number()
    for what, _, payment, ok in payments:
        verdict = await shop.verify(payment, what)
        ctx.fact(f"verify: {what}", verdict)
        ctx.check(_valid(verdict) is ok, f"/verify of {what} answered {verdict}")
    sent = ctx.fact("transactions", ctx.transactions_since(before))
    ctx.check(not sent, f"/verify sent transactions: {sent}")
    for what, payer, payment, _ in payments:
        state = ctx.fact(f"channel: {what}", channel_fact(ctx.harness, payer.channel))
        ctx.check(state["balance"] == "0", f"the channel holds {state['balance']} after /verify of {what}")
        spent = ctx.harness.used(payer.account.address, _salt_nonce(payer, payment))
        ctx.check(
            not ctx.fact(f"authorization spent: {what}", spent), f"/verify of {what} spent its authorization"
        )


# -- vouchers -------------------------------------------------------------------------------------------


@case(
    "facilitator.batch.voucher-over-balance",
    "MUST",
    f"{RULES} 9 (maxClaimableAmount at most the balance)",
    "A voucher whose maxClaimableAmount exceeds the channel's balance is refused at /verify",
    kind="payment",
    mechanism=BATCH,
)
async def voucher_over_balance(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    payer = await shop.opened()
    ok = await shop.verify(payer.voucher(DEPOSIT), "a voucher for the whole balance")
    ctx.check(_valid(ok) is True, f"/verify refused a voucher within the balance: {ok}")
    await shop.refused(payer.voucher(DEPOSIT + 1), "a voucher above the balance")


@case(
    "facilitator.batch.voucher-stale",
    "MUST",
    f"{RULES} 10 (maxClaimableAmount above the on-chain totalClaimed)",
    "After a claim, a voucher at or below the channel's totalClaimed is refused at /verify",
    kind="payment",
    mechanism=BATCH,
)
async def voucher_stale(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    claimed = 3 * PRICE
    payer, _ = await shop.claimed(claimed)
    state = ctx.fact("channel", channel_fact(ctx.harness, payer.channel))
    ctx.check(
        state["totalClaimed"] == str(claimed), f"totalClaimed is {state['totalClaimed']}, not {claimed}"
    )
    await shop.refused(payer.voucher(claimed), "a voucher equal to totalClaimed")
    await shop.refused(payer.voucher(PRICE), "a voucher below totalClaimed")
    fresh = await shop.verify(payer.voucher(claimed + PRICE), "a voucher above totalClaimed")
    ctx.check(_valid(fresh) is True, f"/verify refused a voucher above totalClaimed: {fresh}")


@case(
    "facilitator.batch.voucher-wrong-signer",
    "MUST",
    f"{RULES} 6 (the voucher is signed by the payer, or its payerAuthorizer)",
    "A voucher signed by another key than the payer's is refused at /verify",
    kind="payment",
    mechanism=BATCH,
)
async def voucher_wrong_signer(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    payer = await shop.opened()
    stranger = ctx.harness.new_account("stranger")
    await shop.refused(payer.voucher(2 * PRICE, key=stranger.key), "a voucher signed by another key")


# -- claims and sweeps ----------------------------------------------------------------------------------


@case(
    "facilitator.batch.claim-needs-event",
    "MUST",
    "x402#3096, x402#3092 (a claim or settlement reported without its on-chain event); " + INTERFACE,
    "Sweeps succeed only with their event: a claim then a sweep moves exactly the claimed amount to the "
    "receiver, and an empty sweep is no success",
    kind="bug",
    mechanism=BATCH,
)
async def claim_needs_event(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    claimed = 3 * PRICE
    _, answer = await shop.claimed(claimed)
    _succeeded_with(ctx, answer, "Claimed", "the claim")
    before, received = ctx.harness.block_number(), ctx.harness.balance(shop.pay_to)
    swept = await shop.settle(settle_payment(shop.offer), "a sweep")
    ctx.fact("sweep", swept)
    ctx.check(_success(swept), f"a sweep of claimed funds did not succeed: {swept}")
    _succeeded_with(ctx, swept, "Settled", "the sweep")
    moved = [t for t in ctx.harness.transfers_since(before) if t.to.lower() == shop.pay_to.lower()]
    ctx.fact("transfers to the receiver", [transfer_json(t) for t in moved])
    ctx.check(
        len(moved) == 1
        and moved[0].value == claimed
        and moved[0].from_.lower() == BATCH_SETTLEMENT_ADDRESS.lower()
        and ctx.harness.balance(shop.pay_to) - received == claimed,
        f"the sweep moved {[t.value for t in moved]} to the receiver, not one Transfer of {claimed}",
    )
    ctx.check(
        receiver_totals(ctx.harness, shop.pay_to) == (claimed, claimed),
        f"the receiver's (claimed, settled) totals are {receiver_totals(ctx.harness, shop.pay_to)}",
    )
    before = ctx.harness.block_number()
    empty = await shop.settle(settle_payment(shop.offer), "a sweep with nothing claimed")
    ctx.fact("empty sweep", empty)
    ctx.check(not _success(empty), f"a sweep with nothing to settle answered success: {empty}")
    ctx.check(not batch_events(ctx.harness, before, "Settled"), "an empty sweep emitted Settled")


@case(
    "facilitator.batch.noop-claim-not-success",
    "STRICT",
    "x402#3092 (fail closed without the event), applied to claims; " + INTERFACE,
    "A claim that raises no channel's totalClaimed (the same claim again) is no success and emits nothing",
    kind="hardening",
    mechanism=BATCH,
)
async def noop_claim_not_success(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    claimed = 3 * PRICE
    payer, _ = await shop.claimed(claimed)
    before = ctx.harness.block_number()
    again = await shop.claim(payer, claimed, "the same claim again")
    ctx.fact("repeated claim", again)
    ctx.check(not _success(again), f"a claim that raises no totalClaimed answered success: {again}")
    ctx.check(not batch_events(ctx.harness, before, "Claimed"), "a repeated claim emitted Claimed")
    state = ctx.fact("channel", channel_fact(ctx.harness, payer.channel))
    ctx.check(
        state["totalClaimed"] == str(claimed), f"totalClaimed is {state['totalClaimed']}, not {claimed}"
    )


# -- refunds --------------------------------------------------------------------------------------------


def _refund_facts(ctx: FacilitatorContext, payer: ChannelPayer, what: str) -> tuple[int, dict]:
    return (
        ctx.fact(f"payer balance: {what}", ctx.harness.balance(payer.account.address)),
        ctx.fact(f"channel: {what}", channel_fact(ctx.harness, payer.channel)),
    )


async def _refund_refused(ctx: FacilitatorContext, shop: Shop, payer: ChannelPayer, payment: dict, what: str):
    """A completed refund is no success and moves nothing (payer, channel, refund nonce)."""
    before = _refund_facts(ctx, payer, f"before {what}")
    answer = await shop.settle(payment, what)
    ctx.fact(f"settle: {what}", answer)
    ctx.check(not _success(answer), f"/settle reported success for {what}: {answer}")
    after = _refund_facts(ctx, payer, f"after {what}")
    ctx.check(after == before, f"{what} changed the payer's balance or the channel: {before} -> {after}")


async def _refund_lands(
    ctx: FacilitatorContext, shop: Shop, payer: ChannelPayer, payment: dict, amount: int, what: str
) -> None:
    """A completed refund succeeds with Refunded, and the payer gets exactly ``amount``, which the
    answer says."""
    paid_before, state_before = _refund_facts(ctx, payer, f"before {what}")
    answer = await shop.settle(payment, what)
    ctx.fact(f"settle: {what}", answer)
    ctx.check(_success(answer), f"{what} did not succeed: {answer}")
    _succeeded_with(ctx, answer, "Refunded", what)
    paid_after, state_after = _refund_facts(ctx, payer, f"after {what}")
    ctx.check(
        paid_after - paid_before == amount, f"{what}: the payer got {paid_after - paid_before}, not {amount}"
    )
    ctx.check(
        int(state_before["balance"]) - int(state_after["balance"]) == amount,
        f"{what}: the channel went from {state_before['balance']} to {state_after['balance']}",
    )
    ctx.check(
        str(answer.get("amount")) == str(amount), f"{what}: the answer says amount {answer.get('amount')!r}"
    )


def _delegate(kind: dict) -> str | None:
    """The receiver authorizer a ``/supported`` kind offers to sign for the server, if any."""
    extra = kind.get("extra")
    named = extra.get("receiverAuthorizer") if isinstance(extra, dict) else None
    return named if isinstance(named, str) and named else None


@case(
    "facilitator.batch.refund-wrong-nonce",
    "MUST",
    f"{RULES} 11 (the refund nonce is the channel's on-chain refundNonce)",
    "A refund with a spent or a future refundNonce (server-signed or delegated) is no success and moves "
    "nothing; the channel's nonce refunds exactly the amount",
    kind="spec",
    mechanism=BATCH,
)
async def refund_wrong_nonce(ctx: FacilitatorContext) -> None:
    delegate = _delegate(await _kind(ctx))
    shops = [("server-signed", Shop(ctx))] + ([("delegated", Shop(ctx, delegate))] if delegate else [])
    for name, shop in shops:
        payer = shop.payer()
        await shop.open(payer)
        first = payer.completed_refund(0, PRICE, 0, shop.key)
        await _refund_lands(ctx, shop, payer, first, PRICE, f"a first {name} refund (nonce 0)")
        nonce = ctx.fact(f"{name} refundNonce", channel_state(ctx.harness, payer.channel).refund_nonce)
        for wrong in (nonce - 1, nonce + 1):
            payment = payer.completed_refund(0, PRICE, wrong, shop.key)
            await _refund_refused(ctx, shop, payer, payment, f"a {name} refund with refundNonce {wrong}")
        payment = payer.completed_refund(0, 2 * PRICE, nonce, shop.key)
        await _refund_lands(ctx, shop, payer, payment, 2 * PRICE, f"a {name} refund with refundNonce {nonce}")


@case(
    "facilitator.batch.refund-wrong-amount",
    "MUST",
    f"{RULES} 11 (the Refund signature binds the amount submitted); "
    + f"{BATCH_SPEC}, Refund and withdrawal "
    "(a refund returns at most balance - totalClaimed); the answer's amount is what the payer got",
    "A refund whose signature binds another amount is no success and moves nothing; one above the unclaimed "
    "escrow returns exactly the unclaimed escrow, and the answer says what the payer got",
    kind="spec",
    mechanism=BATCH,
)
async def refund_wrong_amount(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    claimed = 2 * PRICE
    payer, _ = await shop.claimed(claimed)
    nonce = channel_state(ctx.harness, payer.channel).refund_nonce
    assert shop.key is not None
    forged = payer.completed_refund(claimed, PRICE, nonce, shop.key)
    forged["payload"]["amount"] = str(2 * PRICE)  # the signature binds PRICE
    await _refund_refused(ctx, shop, payer, forged, "a refund whose signature binds another amount")
    await _refund_lands(
        ctx, shop, payer, payer.completed_refund(claimed, PRICE, nonce, shop.key), PRICE, "a partial refund"
    )
    nonce = channel_state(ctx.harness, payer.channel).refund_nonce
    unclaimed = DEPOSIT - claimed - PRICE
    payment = payer.completed_refund(claimed, DEPOSIT, nonce, shop.key)
    await _refund_lands(ctx, shop, payer, payment, unclaimed, "a refund asking for more than is unclaimed")


# -- withdrawal --------------------------------------------------------------------------------------


@case(
    "facilitator.batch.withdraw-race",
    "MUST",
    f"{BATCH_SPEC}, Refund and withdrawal (during the grace period the server can claim its vouchers)",
    "While the payer's timed withdrawal is pending, a claim and a sweep of its vouchers succeed and the "
    "receiver gets all they cover; the withdrawal stays pending",
    kind="spec",
    mechanism=BATCH,
)
async def withdraw_race(ctx: FacilitatorContext) -> None:
    await _kind(ctx)
    shop = Shop(ctx)
    payer = await shop.opened()
    owed = 4 * PRICE  # the receiver's unclaimed vouchers reach this
    tx = payer.initiate_withdraw(ctx.harness, DEPOSIT - owed)
    state = ctx.fact("channel after initiateWithdraw", channel_fact(ctx.harness, payer.channel))
    ctx.check(state["withdrawRequestedAt"] != 0, f"the withdrawal {tx} did not start: {state}")
    received = ctx.harness.balance(shop.pay_to)
    answer = await shop.claim(payer, owed, "a claim during the withdrawal delay")
    ctx.check(_success(answer), f"a claim during the withdrawal delay did not succeed: {answer}")
    _succeeded_with(ctx, answer, "Claimed", "the claim")
    swept = await shop.settle(settle_payment(shop.offer), "a sweep during the withdrawal delay")
    ctx.check(_success(swept), f"a sweep during the withdrawal delay did not succeed: {swept}")
    _succeeded_with(ctx, swept, "Settled", "the sweep")
    got = ctx.fact("receiver got", ctx.harness.balance(shop.pay_to) - received)
    ctx.check(got == owed, f"the receiver got {got} of the {owed} its vouchers cover")
    state = ctx.fact("channel after the claim", channel_fact(ctx.harness, payer.channel))
    ctx.check(state["totalClaimed"] == str(owed), f"totalClaimed is {state['totalClaimed']}, not {owed}")
    ctx.check(state["withdrawRequestedAt"] != 0, "the withdrawal is no longer pending")
