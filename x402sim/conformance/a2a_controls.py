"""The A2A controls: the reference paid agent with one A2A rule broken, each failing its case.

A control is ``a2a_kit.A2aService`` around the reference server with a hook that rewrites the task
status the agent publishes (or an agent class that reopens finished tasks). They run over A2A only
(``tests/conformance/test_a2a_cases.py`` calibrates them). The SDK is imported when a control is
built, so listing the controls needs no ``agents`` extra.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .controls import control

PAID_CONTENT = {"message": "paid content", "path": "/protected", "paid": True}
_CONTENT = ({"name": "result", "parts": [{"kind": "text", "text": json.dumps(PAID_CONTENT)}]},)


def _service(name: str, *hooks, agent_class=None):
    from .a2a_kit import A2aService, AppAgent

    return A2aService(name=name, kind="control", hooks=hooks, agent_class=agent_class or AppAgent)


def _rewrite(change):
    """A hook that publishes ``change(update, message)`` instead of what the reference answers."""

    async def hook(message, asked, forward):
        skill = asked.skill or "protected"
        update = await forward(skill, asked.text, message.payment)
        return change(update, message)

    return hook


@control(
    "server.a2a-challenge-not-input-required",
    "server",
    "The payment-required task is left working, not input-required",
    kills=("server.a2a.payment-required",),
)
def challenge_not_input_required():
    def change(update, message):
        return replace(update, state="working") if update.payment_status == "payment-required" else update

    return _service("server.a2a-challenge-not-input-required", _rewrite(change))


@control(
    "server.a2a-no-receipts",
    "server",
    "A completed paid task says payment-completed but carries no x402.payment.receipts",
    kills=("server.a2a.receipts",),
)
def no_receipts():
    def change(update, message):
        kept = {k: v for k, v in update.metadata.items() if k != "x402.payment.receipts"}
        return replace(update, metadata=kept)

    return _service("server.a2a-no-receipts", _rewrite(change))


@control(
    "server.a2a-delivers-on-failed-payment",
    "server",
    "A task whose payment failed still carries the skill's answer as an artifact",
    kills=("server.a2a.failed-payment",),
)
def delivers_on_failed_payment():
    def change(update, message):
        if update.payment_status == "payment-failed":
            return replace(update, artifacts=_CONTENT)
        return update

    return _service("server.a2a-delivers-on-failed-payment", _rewrite(change))


def _no_payment(payload: Any) -> bool:
    return payload is not None and not (
        isinstance(payload, dict) and isinstance(payload.get("payload"), dict)
    )


@control(
    "server.a2a-serves-malformed-payload",
    "server",
    "An x402.payment.payload that is no payment object is taken for a free call: the task completes",
    kills=("server.a2a.malformed-payload",),
)
def serves_malformed_payload():
    from ..transports.a2a_carry import TaskUpdate

    async def hook(message, asked, forward):
        if _no_payment(message.payment):
            return TaskUpdate("completed", json.dumps(PAID_CONTENT), {}, _CONTENT)
        return None

    return _service("server.a2a-serves-malformed-payload", hook)


@control(
    "server.a2a-crashes-on-malformed-payload",
    "server",
    "The agent raises on an x402.payment.payload that is no payment object (its task fails unexplained)",
    kills=("server.a2a.malformed-payload",),
)
def crashes_on_malformed_payload():
    async def hook(message, asked, forward):
        if _no_payment(message.payment):
            raise TypeError("payload['payload'] is not a dict")
        return None

    return _service("server.a2a-crashes-on-malformed-payload", hook)


@control(
    "server.a2a-reopens-completed-task",
    "server",
    "A payment sent to a completed task reopens it and is settled again",
    kills=("server.a2a.no-second-payment",),
)
def reopens_completed_task():
    from a2a.types import TaskState

    from .a2a_kit import AppAgent

    class Reopening(AppAgent):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            handler = self.handler
            plain = handler.on_message_send
            store: Any = handler.task_store

            async def on_message_send(params, context):
                task_id = params.message.task_id
                task = await store.get(task_id, context) if task_id else None
                if task is not None and task.status.state == TaskState.TASK_STATE_COMPLETED:
                    task.status.state = TaskState.TASK_STATE_INPUT_REQUIRED
                    await store.save(task, context)
                return await plain(params, context)

            handler.on_message_send = on_message_send  # type: ignore[method-assign]

    return _service("server.a2a-reopens-completed-task", agent_class=Reopening)
