"""Facilitator cases: the harness plays the resource server and posts /verify and /settle bodies."""

from __future__ import annotations

from .catalog import case
from .forge import payment_v2
from .kits import FacilitatorContext


@case(
    "facilitator.settle.valid-lands",
    "MUST",
    "facilitator API (POST /settle)",
    "Settling a valid payment answers success with a transaction that moved the amount on chain",
)
async def settle_lands(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements()
    _payer, payload = ctx.sign(requirements)
    response = await ctx.call("settle", payment_v2(requirements, payload), requirements)
    ctx.check(response is not None and response.status_code == 200, "settle did not answer 200")
    answer = response.json()
    ctx.check(answer.get("success") is True, f"settle answered {answer}")
    receipt = ctx.harness.receipt(str(answer.get("transaction", "")))
    ctx.fact("receipt.success", receipt.success if receipt else None)
    ctx.check(receipt is not None and receipt.success, "the answered transaction is not a successful receipt")
    paid = ctx.fact("payee_balance", ctx.harness.balance(requirements["payTo"]))
    ctx.check(paid == int(requirements["amount"]), "the payee was not paid")
