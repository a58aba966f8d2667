"""Cases of the ``batch-settlement`` mechanism for server targets (payment channels), judged on chain.

The harness is the buyer and the facilitator: it reads the 402 of the target's batch-settlement
route (``RunOptions.mechanism_route``: the declared one, else the main path + ``-batch``; a target
that sells none skips these cases), opens a channel toward the offer's receiver with a fresh payer
(``batch_kit.ChannelPayer``: salt 0, the payer its own voucher signer, the receiver authorizer the
offer names) and pays by deposit, voucher and refund requests, while the controlled reference
facilitator answers the target's ``/verify`` and ``/settle``, or refuses, holds or loses them.

Decisions these cases rest on:

* **A deposit is counted once it is on chain, and not before.** The deposit request is served (200)
  only when the deposit's settlement succeeded: at the moment the 200 arrives the channel's balance
  on chain is the deposit, and the ``/settle`` the target asked for has been answered. A deposit
  whose settlement is refused (nothing reaches the chain), or only answered later and then refused,
  is not served, and a voucher resting on it is not served either (x402#2559, x402#3464).
* **The cumulative rule.** Each voucher is what the server has charged plus the price; a voucher
  skipping ahead and a repeated one are answered with the corrective 402
  (``invalid_batch_settlement_evm_cumulative_amount_mismatch``, ``extra.channelState`` with the
  charged amount and ``extra.voucherState`` carrying the payer's own latest voucher), and the right
  one is then served. Nothing the server refuses changes what it holds: after a voucher signed by
  another key, the next right voucher is served (x402#2881).
* **The balance bounds the vouchers.** The vouchers up to the deposit are served, the next is not;
  the same deposit sent again is not served and does not raise that bound (x402#2883).
* **What is observable of "before".** A server's answer to its buyer can be timed against its
  facilitator's: the harness holds the deposit's ``/settle`` a moment (``settle_mode`` ``hang``,
  a quarter of the server's facilitator bound) and a 200 that arrives while that answer is not
  even decided was served before the deposit was protected. A lost answer (``lose``: settled, then
  500) proves nothing either way, since the deposit did land; it is not used.
* **Refunds.** A client's refund request is completed by the server and returns exactly the amount
  asked, on chain (``Refunded``, the refund nonce up by one; the answer names that transaction),
  leaving the balance behind the vouchers served. A refund asking more than is unclaimed never
  takes what the served vouchers need (MUST); the server should refuse it and move nothing
  (SHOULD: the spec has it validate a partial amount, and the Python SDK server refuses it, while
  returning all that is left, as the TypeScript one does, costs the receiver nothing).

Nothing here depends on when the target claims its vouchers or sweeps its receiver's funds (servers
claim on their own schedule): no case reads ``totalClaimed`` for a verdict, and a claim that lands
meanwhile changes none. Deposits are the offer's ``minDeposit`` (ten prices when it names none), so
exhausting a channel takes a bounded number of vouchers (``MAX_VOUCHERS``).
"""

from __future__ import annotations

import re

from ..evm.channels import MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY, ChannelState
from ..evm.eip712 import address_of_key
from ..mechanisms.batch_client import announced_min_deposit, voucher_state_problem
from ..protocol import Reason
from .batch_kit import (
    BATCH,
    BATCH_SPEC,
    ChannelPayer,
    batch_events,
    channel_state,
    offer_of,
    receipt_has_event,
)
from .catalog import case
from .harness import DEFAULT_FUNDING
from .kits import ServerContext, read_challenge, same_address

MISMATCH = Reason.invalid_batch_settlement_evm_cumulative_amount_mismatch.value
DEFAULT_DEPOSIT_PRICES = 10  # the SDKs' minimum deposit, in prices, when the offer names none
MAX_VOUCHERS = 100  # vouchers a case sends at most to exhaust a channel
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _batch_entry(ctx: ServerContext, accepts: list) -> dict | None:
    for entry in accepts:
        if (
            isinstance(entry, dict)
            and entry.get("scheme") == BATCH
            and entry.get("network") == ctx.harness.network
            and same_address(entry.get("asset"), ctx.harness.asset)
        ):
            return entry
    return None


async def batch_route(ctx: ServerContext) -> tuple[str, dict]:
    """The target's batch-settlement route and its offer on the harness's chain; skips the case when
    the target sells none (a declared route that offers none fails it)."""
    route = ctx.options.mechanism_route(BATCH)
    if route is None:
        ctx.skip(f"the target's test.config.json declares no {BATCH} route")
    challenge = await ctx.challenge(route.path, label=f"unpaid request ({BATCH} route)")
    offer = _batch_entry(ctx, challenge.accepts)
    if offer is not None:
        return route.path, offer
    message = f"{route.path} answered {challenge.status} with no {BATCH} offer on the harness's chain"
    if BATCH in ctx.options.mechanism_routes:
        ctx.fail(message)
    ctx.skip(message)


def _price(ctx: ServerContext, offer: dict) -> int:
    amount = offer.get("amount")
    if not (isinstance(amount, str) and amount.isascii() and amount.isdigit() and int(amount) > 0):
        ctx.fail(f"the batch offer's amount {amount!r} is no positive integer")
    return int(amount)


class Channel:
    """One payer's channel on the target's batch route, and what the target charged on it."""

    def __init__(self, ctx: ServerContext, path: str, offer: dict) -> None:
        self.ctx, self.path, self.offer = ctx, path, offer
        self.price = _price(ctx, offer)
        self.deposit = announced_min_deposit(offer_of(offer)) or DEFAULT_DEPOSIT_PRICES * self.price
        account = ctx.harness.funded_account(usdc=max(DEFAULT_FUNDING, 2 * self.deposit))
        self.payer = ChannelPayer(account, offer, ctx.harness.chain_id, ctx.rng)
        self.charged = 0
        self.block = ctx.harness.block_number()

    async def send(self, payment: dict, label: str):
        return await self.ctx.pay(self.offer, payment, path=self.path, label=label)

    async def open(self, label: str = "deposit with the first voucher"):
        """Deposit ``self.deposit`` with the voucher of one price; the response."""
        payment = self.payer.deposit(self.deposit, self.price, self.ctx.harness.now())
        response = await self.send(payment, label)
        if _status(response) == 200:
            self.charged = self.price
        return response

    async def opened(self):
        """Open the channel, failing the case when the target does not serve it."""
        response = await self.open()
        self.ctx.check(
            _status(response) == 200,
            f"a deposit of {self.deposit} with its first voucher was answered {_status(response)}, not 200",
        )
        return response

    async def next(self, label: str | None = None, key: bytes | None = None):
        """The right next voucher (charged + price; signed by ``key`` when given); the response."""
        amount = self.charged + self.price
        response = await self.send(self.payer.voucher(amount, key), label or f"voucher {amount}")
        if _status(response) == 200 and key is None:
            self.charged = amount
        return response

    async def served_up_to(self, limit: int) -> None:
        """Send the right vouchers up to ``limit``, each of which must be served."""
        if (limit - self.charged) // self.price > MAX_VOUCHERS:
            self.ctx.skip(f"a deposit of {self.deposit} takes more than {MAX_VOUCHERS} vouchers to use up")
        while self.charged + self.price <= limit:
            response = await self.next()
            self.ctx.check(
                _status(response) == 200,
                f"the voucher {self.charged + self.price} within the balance {limit} was answered "
                f"{_status(response)}, not 200",
            )

    def state(self, name: str = "channel"):
        found = channel_state(self.ctx.harness, self.payer.channel)
        self.ctx.fact(name, {**found.to_wire(), "charged_served": self.charged})
        return found

    def events(self, name: str) -> list:
        """The batch contract's ``name`` events of this channel since it was made here."""
        return [
            e
            for e in batch_events(self.ctx.harness, self.block, name)
            if len(e.topics) > 1 and same_address(e.topics[1], self.payer.channel_hex)
        ]


def _status(response) -> int | None:
    return getattr(response, "status_code", None)


def _not_served(ctx: ServerContext, response, what: str) -> None:
    ctx.check(response is not None, f"{what}: no answer")
    ctx.check(_status(response) != 200, f"{what} was served (200)")


def _settlement(ctx: ServerContext, response, what: str) -> dict:
    _, settlement = ctx.settlement_header(response)
    ctx.fact(f"payment_response ({what})", settlement)
    ctx.check(
        isinstance(settlement, dict) and settlement.get("success") is True,
        f"{what}: PAYMENT-RESPONSE says {settlement}",
    )
    return settlement


# -- the offer ------------------------------------------------------------------------------------


@case(
    "server.batch.offer",
    "MUST",
    f"{BATCH_SPEC}: 402 Response (receiverAuthorizer, withdrawDelay 15 min - 30 days, name, version)",
    "The batch offer names a non-zero receiverAuthorizer, an integer withdrawDelay in range, the "
    "token's name and version, and minDeposit (when given) as a positive decimal string",
    kind="spec",
    mechanism=BATCH,
)
async def server_batch_offer(ctx: ServerContext) -> None:
    _, offer = await batch_route(ctx)
    _price(ctx, offer)
    extra = offer.get("extra")
    if not isinstance(extra, dict):
        ctx.fail(f"the batch offer's extra is {extra!r}, not an object")
    ctx.fact("extra", extra)
    authorizer = extra.get("receiverAuthorizer")
    ctx.check(
        isinstance(authorizer, str) and _ADDRESS.fullmatch(authorizer) is not None and int(authorizer, 16),
        f"extra.receiverAuthorizer is {authorizer!r}, not a non-zero address",
    )
    delay = extra.get("withdrawDelay")
    ctx.check(
        isinstance(delay, int)
        and not isinstance(delay, bool)
        and MIN_WITHDRAW_DELAY <= delay <= MAX_WITHDRAW_DELAY,
        f"extra.withdrawDelay is {delay!r}, not an integer of seconds in "
        f"{MIN_WITHDRAW_DELAY}..{MAX_WITHDRAW_DELAY}",
    )
    for field, expected in (("name", ctx.harness.asset_name), ("version", ctx.harness.asset_version)):
        ctx.check(
            extra.get(field) == expected,
            f"extra.{field} is {extra.get(field)!r}, not the token's {expected!r}",
        )
    if "minDeposit" in extra:
        minimum = extra["minDeposit"]
        ctx.check(
            isinstance(minimum, str) and minimum.isascii() and minimum.isdigit() and int(minimum) > 0,
            f"extra.minDeposit is {minimum!r}, not a positive decimal string",
        )


# -- deposits -------------------------------------------------------------------------------------


@case(
    "server.batch.pays",
    "MUST",
    f"{BATCH_SPEC}: Request Processing, Payment Response Contract",
    "A deposit with its first voucher is served once on chain (balance, Deposited) and answered with "
    "its transaction and channelState; the next voucher is served with no transaction",
    kind="spec",
    mechanism=BATCH,
)
async def server_batch_pays(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    response = await channel.opened()
    state = channel.state("channel after the deposit")
    ctx.check(
        state.balance == channel.deposit,
        f"the deposit was served while the channel's balance on chain is {state.balance}, "
        f"not the deposit {channel.deposit}",
    )
    deposited = channel.events("Deposited")
    ctx.fact("deposited_events", [e.tx_hash for e in deposited])
    ctx.check(len(deposited) == 1, f"{len(deposited)} Deposited events for the channel, not 1")
    answer = _settlement(ctx, response, "the deposit")
    ctx.check(
        same_address(answer.get("transaction"), deposited[0].tx_hash),
        f"the deposit's PAYMENT-RESPONSE names the transaction {answer.get('transaction')!r}, "
        f"not the deposit's {deposited[0].tx_hash}",
    )
    _check_channel_state(ctx, answer, channel, "the deposit")

    payer_before = ctx.harness.balance(channel.payer.account.address)
    response = await channel.next("the second voucher")
    ctx.check(_status(response) == 200, f"the second voucher was answered {_status(response)}, not 200")
    answer = _settlement(ctx, response, "the second voucher")
    ctx.check(
        answer.get("transaction") == "",
        f'the voucher\'s PAYMENT-RESPONSE names the transaction {answer.get("transaction")!r}, not ""',
    )
    _check_channel_state(ctx, answer, channel, "the second voucher")
    ctx.check(len(channel.events("Deposited")) == 1, "a voucher deposited into the channel again")
    ctx.check(
        ctx.harness.balance(channel.payer.account.address) == payer_before,
        "tokens left the payer for a voucher",
    )


def _check_channel_state(ctx: ServerContext, answer: dict, channel: Channel, what: str) -> None:
    extra = answer.get("extra")
    state = extra.get("channelState") if isinstance(extra, dict) else None
    if not isinstance(state, dict):
        ctx.fail(f"{what}: PAYMENT-RESPONSE carries no extra.channelState")
    ctx.check(
        same_address(state.get("channelId"), channel.payer.channel_hex),
        f"{what}: channelState.channelId is {state.get('channelId')!r}, not the channel's",
    )
    ctx.check(
        str(state.get("chargedCumulativeAmount")) == str(channel.charged),
        f"{what}: channelState.chargedCumulativeAmount is {state.get('chargedCumulativeAmount')!r}, "
        f"not {channel.charged}",
    )
    ctx.check(
        str(state.get("balance")) == str(channel.deposit),
        f"{what}: channelState.balance is {state.get('balance')!r}, not {channel.deposit}",
    )


@case(
    "server.batch.deposit-unconfirmed",
    "MUST",
    "x402#2559 (a deposit counted before it was confirmed); batch-settlement EVM scheme spec",
    "A deposit whose settlement is refused (nothing on chain) is not served, nor is a voucher resting "
    "on it; the channel's balance stays 0",
    kind="bug",
    mechanism=BATCH,
)
async def server_batch_deposit_unconfirmed(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    ctx.harness.control.settle_mode = "refuse"
    channel = Channel(ctx, path, offer)
    _not_served(ctx, await channel.open(), "a deposit whose settlement was refused")
    channel.charged = channel.price  # as if the deposit had counted
    response = await channel.next("a voucher on the unconfirmed deposit")
    _not_served(ctx, response, "a voucher resting on a deposit that never confirmed")
    state = channel.state()
    ctx.check(state.balance == 0, f"the channel's balance on chain is {state.balance}, not 0")
    ctx.check(not channel.events("Deposited"), "a Deposited event, though the facilitator sent nothing")


@case(
    "server.batch.serve-before-protected",
    "MUST",
    "x402#3464 (service delivered before the payment is protected on chain); batch-settlement EVM "
    "scheme spec: Request Processing",
    "A deposit is served only after its settlement answered, with the deposit on chain; a deposit "
    "whose settlement is answered late with a refusal is not served",
    kind="bug",
    mechanism=BATCH,
)
async def server_batch_serve_before_protected(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    control = ctx.harness.control
    control.settle_mode = "hang"  # answered normally, a moment late
    channel = Channel(ctx, path, offer)
    response = await channel.open("deposit whose settlement is answered late")
    settles = [c for c in control.calls if c.path == "/settle"]
    unanswered = sum(1 for c in settles if c.answer is None)  # its answer not even decided yet
    balance = channel.state("channel when the answer arrived").balance
    ctx.fact("settle_calls_unanswered_at_the_answer", f"{unanswered} of {len(settles)}")
    if _status(response) == 200:
        ctx.check(
            settles and not unanswered,
            "the deposit was served (200) before its settlement was answered",
        )
        ctx.check(
            balance == channel.deposit,
            f"the deposit was served while the channel's balance on chain was {balance}",
        )
    await ctx.facilitator_quiet(ctx.facilitator_timeout)

    control.settle_mode = "hang-refuse"
    late = Channel(ctx, path, offer)
    response = await late.open("deposit whose settlement is refused late")
    _not_served(ctx, response, "a deposit whose settlement was refused after a moment")
    state = late.state("channel of the refused deposit")
    ctx.check(state.balance == 0, f"the refused deposit's channel holds {state.balance} on chain")


# -- vouchers -------------------------------------------------------------------------------------


@case(
    "server.batch.cumulative-mismatch",
    "MUST",
    f"{BATCH_SPEC}: Request Processing (maxClaimableAmount == chargedCumulativeAmount + amount) and "
    "Corrective 402",
    "A voucher skipping ahead or repeating the last is answered with the corrective 402 "
    "(channelState with what was charged, voucherState with the payer's voucher); the right one is served",
    kind="spec",
    mechanism=BATCH,
)
async def server_batch_cumulative_mismatch(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    await channel.opened()
    charged = channel.charged
    for amount, what in ((charged + 2 * channel.price, "skipping ahead"), (charged, "repeating the last")):
        response = await channel.send(channel.payer.voucher(amount), f"voucher {amount} ({what})")
        _not_served(ctx, response, f"a voucher {what} ({amount}, charged {charged})")
        _check_corrective(ctx, response, channel, charged, what)
    response = await channel.next("the right voucher after the corrective 402s")
    ctx.check(
        _status(response) == 200,
        f"the right voucher {charged + channel.price} was answered {_status(response)}, not 200",
    )


def _check_corrective(ctx: ServerContext, response, channel: Channel, charged: int, what: str) -> None:
    challenge = read_challenge(response)
    required = challenge.required or {}
    ctx.fact(f"corrective 402 ({what})", required)
    ctx.check(
        challenge.status == 402 and required.get("error") == MISMATCH,
        f"a voucher {what} was answered {challenge.status} with error {required.get('error')!r}, "
        f"not the corrective 402 {MISMATCH}",
    )
    entry = _batch_entry(ctx, challenge.accepts)
    extra = (entry or {}).get("extra") or {}
    state, voucher = extra.get("channelState"), extra.get("voucherState")
    if not (isinstance(state, dict) and isinstance(voucher, dict)):
        ctx.fail(f"the corrective 402's batch offer lacks channelState or voucherState: {extra}")
    ctx.check(
        str(state.get("chargedCumulativeAmount")) == str(charged),
        f"channelState.chargedCumulativeAmount is {state.get('chargedCumulativeAmount')!r}, not {charged}",
    )
    signed, signature = voucher.get("signedMaxClaimable"), voucher.get("signature")
    problem: str | None = "voucherState is malformed"
    if isinstance(signed, str) and signed.isdigit() and isinstance(signature, str):
        try:
            problem = voucher_state_problem(
                channel.payer.account.address,
                ctx.harness.chain_id,
                channel.payer.channel,
                int(signed),
                bytes.fromhex(signature.removeprefix("0x")),
                charged,
            )
        except ValueError as exc:
            problem = f"voucherState.signature is not hex: {exc}"
    ctx.check(problem is None, f"the corrective 402's voucherState proves nothing: {problem}")


@case(
    "server.batch.voucher-over-balance",
    "MUST",
    f"{BATCH_SPEC}: Verification Rules 9 (maxClaimableAmount at most the balance)",
    "The vouchers up to the channel's balance are served; the next one, beyond it, is not",
    kind="payment",
    mechanism=BATCH,
)
async def server_batch_voucher_over_balance(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    await channel.opened()
    await channel.served_up_to(channel.deposit)
    amount = channel.charged + channel.price
    _not_served(ctx, await channel.next(), f"the voucher {amount} beyond the balance {channel.deposit}")
    state = channel.state()
    ctx.check(state.balance == channel.deposit, f"the balance on chain is {state.balance}")


@case(
    "server.batch.failed-verify-no-state",
    "MUST",
    "x402#2881 (state changed by a verify that fails); batch-settlement EVM scheme spec: Request "
    "Processing (on failure, state unchanged)",
    "A voucher signed by another key is refused and changes nothing: the right next voucher is served",
    kind="bug",
    mechanism=BATCH,
)
async def server_batch_failed_verify(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    await channel.opened()
    stranger = ctx.harness.new_account("voucher-forger")
    ctx.fact("forger", address_of_key(stranger.key))
    response = await channel.next("voucher signed by another key", key=stranger.key)
    _not_served(ctx, response, "a voucher signed by another key")
    response = await channel.next("the right voucher after the refused one")
    ctx.check(
        _status(response) == 200,
        f"after a refused voucher, the right voucher {channel.charged + channel.price} was answered "
        f"{_status(response)}, not 200: the refusal changed the server's state",
    )


@case(
    "server.batch.deposit-counted-twice",
    "MUST",
    "x402#2883 (a deposit counted twice); batch-settlement EVM scheme spec",
    "The same deposit payment sent again is not served and does not raise the balance the server "
    "allows: a voucher beyond the single deposit is refused",
    kind="bug",
    mechanism=BATCH,
)
async def server_batch_deposit_twice(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    payment = channel.payer.deposit(channel.deposit, channel.price, ctx.harness.now())
    response = await channel.send(payment, "deposit with the first voucher")
    ctx.check(_status(response) == 200, f"a deposit was answered {_status(response)}, not 200")
    channel.charged = channel.price
    _not_served(ctx, await channel.send(payment, "the same deposit again"), "the same deposit sent again")
    await channel.served_up_to(channel.deposit)
    amount = channel.charged + channel.price
    _not_served(ctx, await channel.next(), f"the voucher {amount} beyond the single deposit")
    state = channel.state()
    ctx.check(state.balance == channel.deposit, f"the balance on chain is {state.balance}")
    ctx.check(len(channel.events("Deposited")) == 1, "the deposit landed twice")


# -- refunds --------------------------------------------------------------------------------------


@case(
    "server.batch.refund",
    "MUST",
    f"{BATCH_SPEC}: Cooperative refund flow",
    "A client's refund request returns exactly the amount asked (Refunded, refundNonce + 1), the "
    "vouchers served stay backed, also when a refund asks more than is unclaimed",
    kind="spec",
    mechanism=BATCH,
)
async def server_batch_refund(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    await channel.opened()
    response = await channel.next()
    ctx.check(_status(response) == 200, f"the second voucher was answered {_status(response)}, not 200")
    payer = channel.payer.account.address
    before, paid_before = channel.state("channel before the refund"), ctx.harness.balance(payer)
    asked = channel.price
    response = await channel.send(channel.payer.refund(channel.charged, asked), f"refund of {asked}")
    ctx.check(_status(response) == 200, f"a refund of {asked} was answered {_status(response)}, not 200")
    after, received = channel.state("channel after the refund"), ctx.harness.balance(payer) - paid_before
    ctx.fact("payer_received", received)
    ctx.check(received == asked, f"the payer received {received}, not the {asked} asked")
    ctx.check(channel.events("Refunded"), "no Refunded event for the channel")
    answer = _settlement(ctx, response, "the refund")
    ctx.check(
        receipt_has_event(ctx.harness, answer.get("transaction"), "Refunded"),
        f"the refund's PAYMENT-RESPONSE names {answer.get('transaction')!r}, no transaction that refunded",
    )
    ctx.check(
        after.refund_nonce == before.refund_nonce + 1,
        f"the refund nonce went from {before.refund_nonce} to {after.refund_nonce}, not up by one",
    )
    ctx.check(
        after.balance >= channel.charged,
        f"after the refund the balance {after.balance} no longer backs the {channel.charged} served",
    )
    moved, end = await _refund_too_much(ctx, channel, after)
    ctx.check(
        moved <= after.balance - channel.charged,
        f"a refund asking more than is unclaimed moved {moved} to the payer, more than the "
        f"{after.balance - channel.charged} no served voucher needs",
    )
    ctx.check(
        end.balance >= channel.charged,
        f"after a refund asking too much the balance {end.balance} no longer backs the "
        f"{channel.charged} served",
    )


async def _refund_too_much(
    ctx: ServerContext, channel: Channel, state: ChannelState
) -> tuple[int, ChannelState]:
    """Ask a refund of more than the channel holds unclaimed (``state``): what reached the payer, and
    the channel's state afterwards."""
    payer = channel.payer.account.address
    paid_before = ctx.harness.balance(payer)
    too_much = state.balance - state.total_claimed + channel.price
    response = await channel.send(channel.payer.refund(channel.charged, too_much), f"refund of {too_much}")
    ctx.fact("too_much_answer", _status(response))
    moved = ctx.fact("moved_to_payer", ctx.harness.balance(payer) - paid_before)
    return moved, channel.state("channel at the end")


@case(
    "server.batch.refund-over-unclaimed",
    "SHOULD",
    f"{BATCH_SPEC}: Cooperative refund flow (the server validates a partial amount)",
    "A refund asking more than is unclaimed is refused and moves nothing, rather than turned into a "
    "refund of all that is left",
    kind="advice",
    mechanism=BATCH,
)
async def server_batch_refund_over_unclaimed(ctx: ServerContext) -> None:
    path, offer = await batch_route(ctx)
    channel = Channel(ctx, path, offer)
    await channel.opened()
    before = channel.state("channel before the refund")
    refunds = len(channel.events("Refunded"))
    moved, end = await _refund_too_much(ctx, channel, before)
    ctx.check(moved == 0, f"a refund asking more than is unclaimed moved {moved} to the payer")
    ctx.check(len(channel.events("Refunded")) == refunds, "a refund asking too much emitted Refunded")
    ctx.check(
        end.balance == before.balance, f"the channel's balance went from {before.balance} to {end.balance}"
    )
