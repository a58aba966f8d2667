"""Client cases: the harness plays the resource server, often a hostile one, and runs the client once."""

from __future__ import annotations

import httpx

from .catalog import case
from .forge import header_value
from .hostile import Answer, Seen
from .kits import ClientContext


def honest(ctx: ClientContext, amount: int = 1_000, **fields):
    """A handler selling ``path`` honestly: 402 with one exact offer, then settle through the harness's
    facilitator and answer 200 with PAYMENT-RESPONSE (or 402 when settlement fails)."""
    payee = ctx.harness.new_account("payee").address
    offer = {
        "scheme": "exact",
        "network": ctx.harness.network,
        "amount": str(amount),
        "asset": ctx.harness.asset,
        "payTo": payee,
        "maxTimeoutSeconds": 60,
        "extra": {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version},
    }
    offer.update(fields)

    async def handler(seen: Seen) -> Answer:
        payment = seen.payment
        required = {
            "x402Version": 2,
            "error": "payment required",
            "resource": {"url": ctx.hostile.url + seen.path},
            "accepts": [offer],
        }
        if payment is None:
            return Answer(402, [("PAYMENT-REQUIRED", header_value(required))], {})
        async with httpx.AsyncClient(timeout=20) as http:
            answer = (
                await http.post(
                    ctx.harness.facilitator_url + "/settle",
                    json={"x402Version": 2, "paymentPayload": payment, "paymentRequirements": offer},
                )
            ).json()
        status = 200 if answer.get("success") else 402
        return Answer(status, [("PAYMENT-RESPONSE", header_value(answer))], {"paid": status == 200})

    return offer, handler


@case(
    "client.pays.right-amount",
    "MUST",
    "core spec 5 (payment flow); exact scheme",
    "Against an honest 402 the client pays exactly the price to the payee, once, and gets 200",
)
async def pays_right_amount(ctx: ClientContext) -> None:
    offer, ctx.hostile.handler = honest(ctx)
    _run, payer, before = await ctx.run_client()
    transfers = ctx.fact(
        "transfers",
        [
            {"from": t.from_, "to": t.to, "value": t.value}
            for t in ctx.harness.transfers_since(before)
            if t.from_.lower() == payer.address.lower()
        ],
    )
    ctx.check(len(transfers) == 1, f"{len(transfers)} transfers from the payer, expected exactly 1")
    ctx.check(
        transfers[0]["to"].lower() == offer["payTo"].lower()
        and transfers[0]["value"] == int(offer["amount"]),
        f"the transfer {transfers[0]} is not {offer['amount']} to {offer['payTo']}",
    )
