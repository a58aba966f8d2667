"""The A2A cases: what the A2A transport (x402 ``specs/transports-v2/a2a.md``) adds to a paid agent.

Rules:

* They run over A2A only (``transports=("a2a",)``). A case talks to the target through ``ctx.send``,
  which the harness's ``A2aBridge`` carries as messages (the skill: the path without its slash; a
  paid request: the unpaid message opening a task, then the payment on it), and judges the raw task
  the bridge keeps under ``A2A_TASK``, or a JSON-RPC error. A message the bridge cannot express (a
  second payment on a finished task) is sent on the link itself (``ctx.a2a``), noted in the evidence.
* Verdicts rest on chain facts (balances, Transfer logs) wherever money could move.
* A malformed payment may be answered either way the transport allows: a JSON-RPC error that is not
  an internal one, or a ``failed`` task with ``payment-failed``. What is never allowed: a completed
  task, anything delivered, money moving, a crash (an internal error, a failed task that does not
  say the payment failed) or an agent that stops answering.
* Importing this module needs no A2A SDK (the catalog lists without the ``agents`` extra).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ..protocol.models import PaymentRequired
from ..transports.a2a_carry import (
    PAYMENT_ERROR,
    PAYMENT_PAYLOAD,
    PAYMENT_RECEIPTS,
    PAYMENT_REQUIRED_KEY,
    PAYMENT_STATUS,
    SKILL_KEY,
    AgentMessage,
    as_ints,
    state_of,
    task_metadata,
)
from .catalog import case
from .forge import header_value
from .kits import ServerContext, check_settlement
from .mcp_cases import MALFORMED_PAYMENTS

A2A = ("a2a",)
SPEC = "A2A transport spec v2"
A2A_TASK = "a2a_task"  # as a2a_kit.A2A_TASK (not imported: it needs the SDK)
JSONRPC_ERROR = "jsonrpc_error"
INTERNAL_ERROR = -32603
GREETING = "x402sim conformance"


def task_of(response) -> Any:
    """The raw task (a dict) or JSON-RPC error the bridge read ``response`` from, else None."""
    return None if response is None else response.extensions.get(A2A_TASK)


def state(task: Any) -> str:
    status = task.get("status") if isinstance(task, dict) else None
    return state_of(status.get("state", "")) if isinstance(status, dict) else ""


def metadata(task: Any) -> dict[str, Any]:
    return task_metadata(task) if isinstance(task, dict) else {}


def is_task(response) -> bool:
    task = task_of(response)
    return isinstance(task, dict) and isinstance(task.get("status"), dict)


def delivered(task: Any) -> list[Any]:
    """What ``task`` delivers: its artifacts' parts."""
    artifacts = task.get("artifacts") if isinstance(task, dict) else None
    return [
        part
        for artifact in artifacts or ()
        if isinstance(artifact, dict)
        for part in artifact.get("parts") or ()
    ]


async def _unpaid_task(ctx: ServerContext, label: str = "unpaid message") -> dict:
    response = await ctx.send(label, ctx.endpoint.method, ctx.endpoint.path)
    ctx.check(response is not None, f"{label}: no answer from the agent")
    task = task_of(response)
    ctx.check(is_task(response), f"{label}: answered {json.dumps(task)[:200]}, not a task")
    return task


@case(
    "server.a2a.payment-required",
    "MUST",
    f"{SPEC} (payment required)",
    "An unpaid message to a paid skill leaves its task input-required with x402.payment.status "
    "payment-required and a valid PaymentRequired (x402Version 2, accepts, resource) in "
    "x402.payment.required",
    kind="spec",
    transports=A2A,
)
async def payment_required(ctx: ServerContext) -> None:
    task = await _unpaid_task(ctx)
    ctx.fact("task", task)
    ctx.check(state(task) == "input-required", f"the task is {state(task)!r}, not input-required")
    meta = metadata(task)
    status = meta.get(PAYMENT_STATUS)
    ctx.check(status == "payment-required", f"x402.payment.status is {status!r}, not payment-required")
    required = meta.get(PAYMENT_REQUIRED_KEY)
    ctx.check(isinstance(required, dict), f"x402.payment.required is {required!r}, not an object")
    assert isinstance(required, dict)  # checked just above
    try:
        PaymentRequired.model_validate(as_ints(required))
    except ValidationError as exc:
        ctx.fail(f"x402.payment.required is no valid PaymentRequired: {str(exc)[:300]}")
    ctx.check(required.get("x402Version") == 2, f"x402Version is {required.get('x402Version')!r}, not 2")
    accepts = required.get("accepts")
    ctx.check(isinstance(accepts, list) and accepts, "accepts is not a non-empty list")
    ctx.check(not delivered(task), "the unpaid task delivers artifacts")


@case(
    "server.a2a.receipts",
    "MUST",
    f"{SPEC} (payment completed: receipts)",
    "A paid task is completed with payment-completed and x402.payment.receipts, whose last receipt is a "
    "success naming the offer's network and the transaction that moved the price to the payee",
    kind="spec",
    transports=A2A,
)
async def receipts(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await ctx.paid(offer)
    ctx.chain_facts(paid)
    task = task_of(paid.response)
    ctx.fact("task", task)
    ctx.check(is_task(paid.response), f"the paid message got no task: {json.dumps(task)[:200]}")
    ctx.check(state(task) == "completed", f"a valid payment's task is {state(task)!r}, not completed")
    meta = metadata(task)
    status = meta.get(PAYMENT_STATUS)
    ctx.check(status == "payment-completed", f"x402.payment.status is {status!r}, not payment-completed")
    found = meta.get(PAYMENT_RECEIPTS)
    ctx.check(isinstance(found, list) and found, f"x402.payment.receipts is {found!r}, not a non-empty list")
    assert isinstance(found, list)  # checked just above
    check_settlement(ctx, found[-1], offer, paid, "the last receipt")


@case(
    "server.a2a.failed-payment",
    "MUST",
    f"{SPEC} (payment failed); core spec 5",
    "A payment the facilitator refuses (under the price) fails the task with payment-failed and "
    "x402.payment.error, delivers nothing, and moves nothing",
    kind="payment",
    transports=A2A,
)
async def failed_payment(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    short = {**offer, "amount": str(max(int(offer["amount"]) - 1, 0))}
    payer, payload = ctx.sign(short)
    payment = ctx.complete(ctx.payment(offer, payload))
    before = ctx.snapshot()
    response = await ctx.pay(offer, payment, label="a payment one unit under the price", complete=False)
    task = task_of(response)
    ctx.fact("task", task)
    ctx.check(is_task(response), f"the refused payment got no task: {json.dumps(task)[:200]}")
    ctx.check(state(task) == "failed", f"the refused payment's task is {state(task)!r}, not failed")
    meta = metadata(task)
    ctx.check(
        meta.get(PAYMENT_STATUS) == "payment-failed",
        f"x402.payment.status is {meta.get(PAYMENT_STATUS)!r}, not payment-failed",
    )
    ctx.check(meta.get(PAYMENT_ERROR), "x402.payment.error is missing: a failed payment says why")
    ctx.check(not delivered(task), f"the failed task delivers {json.dumps(delivered(task))[:200]}")
    delta, transfers = ctx.moved_since(before, payer.address)
    ctx.transfer_facts("transfers", transfers)
    ctx.check(delta == 0 and not transfers, f"a refused payment moved funds: payee {delta:+}")


@case(
    "server.a2a.malformed-payload",
    "MUST",
    f"{SPEC} (payment failed); JSON-RPC 2.0 (errors)",
    "A malformed x402.payment.payload fails the task with payment-failed (or gets a JSON-RPC error that "
    "is not internal), delivers nothing, moves nothing, and the agent keeps answering",
    kind="payment",
    transports=A2A,
)
async def malformed_payload(ctx: ServerContext) -> None:
    await ctx.offer()
    for what, value in MALFORMED_PAYMENTS:
        before = ctx.snapshot()
        label = f"payload that is {what}"
        response = await ctx.send(
            label, ctx.endpoint.method, ctx.endpoint.path, headers={"PAYMENT-SIGNATURE": header_value(value)}
        )
        ctx.check(response is not None, f"{label}: no answer (did the agent crash?)")
        task = task_of(response)
        if is_task(response):
            meta = metadata(task)
            ctx.check(state(task) == "failed", f"{label}: the task is {state(task)!r}, not failed")
            ctx.check(
                meta.get(PAYMENT_STATUS) == "payment-failed",
                f"{label}: x402.payment.status is {meta.get(PAYMENT_STATUS)!r}, not payment-failed "
                "(a failed task that does not say so is a crash)",
            )
            ctx.check(not delivered(task), f"{label}: the task delivers {json.dumps(delivered(task))[:200]}")
        else:
            code = task.get("code") if isinstance(task, dict) else None
            ctx.check(
                isinstance(task, dict) and code != INTERNAL_ERROR,
                f"{label}: answered {json.dumps(task)[:200]} (an internal error, or no JSON-RPC answer)",
            )
        delta, transfers = ctx.moved_since(before)
        ctx.check(delta == 0 and not transfers, f"{label}: moved funds: payee {delta:+}")
    after = await _unpaid_task(ctx, "unpaid message after the malformed payloads")
    ctx.check(
        state(after) == "input-required",
        f"after the malformed payloads an unpaid message's task is {state(after)!r}, not input-required",
    )


@case(
    "server.a2a.no-second-payment",
    "MUST",
    f"{SPEC} (task lifecycle); A2A (a terminal task takes no more messages); core spec 5",
    "A completed paid task cannot be paid again: a second payment on it is refused, settles nothing and "
    "moves nothing",
    kind="payment",
    transports=A2A,
)
async def no_second_payment(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await ctx.paid(offer)
    first = task_of(paid.response)
    ctx.check(
        is_task(paid.response) and state(first) == "completed" and paid.payee_delta == int(offer["amount"]),
        f"precondition: a valid payment's task is {state(first)!r}, payee {paid.payee_delta:+}",
    )
    link = ctx.a2a
    ctx.check(link is not None, "no A2A link to the agent (not an A2A run)")
    payer, payload = ctx.sign(offer)
    payment = ctx.complete(ctx.payment(offer, payload))
    skill = ctx.endpoint.path.removeprefix("/")
    meta = {SKILL_KEY: skill, PAYMENT_STATUS: "payment-submitted", PAYMENT_PAYLOAD: payment}
    before = ctx.snapshot()
    answer = await link.send(AgentMessage(GREETING, str(first["id"]), meta))
    ctx.note(f"a second payment on the completed task {first['id']}: {json.dumps(answer)[:400]}")
    task = answer.get("task")
    delta, transfers = ctx.moved_since(before, payer.address)
    ctx.fact("second.payee_delta", delta)
    ctx.transfer_facts("second.transfers", transfers)
    ctx.fact("second.authorization_used", ctx.harness.used(payer.address, payload["authorization"]["nonce"]))
    ctx.check(delta == 0 and not transfers, f"the completed task was paid again: payee {delta:+}")
    ctx.check(
        not (isinstance(task, dict) and metadata(task).get(PAYMENT_STATUS) == "payment-completed"),
        "the second payment on the completed task is reported payment-completed",
    )
