"""Server cases: the harness plays the client (and controls the facilitator) against a resource server."""

from __future__ import annotations

from .catalog import case
from .kits import ServerContext


@case(
    "server.handshake.header-present",
    "MUST",
    "HTTP transport spec v2, PAYMENT-REQUIRED",
    "An unpaid request to a paid route gets 402 with a PAYMENT-REQUIRED header (v2) or a v1 body",
)
async def header_present(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    ctx.check(challenge.status == 402, f"an unpaid request got {challenge.status}, not 402")
    ctx.check(challenge.version is not None, "the 402 has neither a PAYMENT-REQUIRED header nor a v1 body")


@case(
    "server.payment.valid-pays-once",
    "MUST",
    "core spec 5 (payment flow)",
    "A valid payment gets 200 and moves exactly the price from payer to payee, in one Transfer",
)
async def valid_pays_once(ctx: ServerContext) -> None:
    paid = await ctx.paid()
    ctx.chain_facts(paid)
    ctx.check(
        paid.response is not None and paid.response.status_code == 200,
        f"a valid payment got {paid.response.status_code if paid.response else 'no answer'}, not 200",
    )
    amount = int(paid.payment["accepted"]["amount"])
    ctx.check(
        paid.payee_delta == amount and paid.payer_delta == -amount,
        f"payee moved {paid.payee_delta}, payer {paid.payer_delta}; the price is {amount}",
    )
    ctx.check(len(paid.transfers) == 1, f"{len(paid.transfers)} Transfer logs, expected exactly 1")
