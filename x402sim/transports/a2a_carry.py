"""x402 over A2A, sans-IO: a message as the request the roles read, their answer as a task status.

The roles speak in ``HttpRequest`` / ``HttpResponse``; A2A carries the same payment in a message's
``metadata`` and the same challenge in a task's status (x402 ``specs/transports-v2/a2a.md``). This
module is the whole translation, both ways, with no A2A SDK and no I/O, so the paid agent, the paying
client agent and the tests share one reading of the transport.

Rules:

* A skill is a route: skill ``id`` is the route ``POST /<id>`` of a ``ResourceServer`` whose
  ``base_url`` is the agent's URL, so its 402s name the resource ``<agent URL>/<id>``. The message's
  text is the request body. A message names its skill in ``metadata["skill"]`` (x402sim's convention:
  A2A has no field for it); without one, the agent's first skill is meant. Skill ids are
  1-64 of ``[A-Za-z0-9_.-]``; any other id is refused before a request is made.
* A payment message continues a task (``taskId``): the request the roles read is the task's first
  request (its skill and text) with ``metadata["x402.payment.payload"]`` as the ``PAYMENT-SIGNATURE``
  header (base64 of its JSON), which is where the server role reads a payment. Whatever the payload
  holds is passed on as it is: the role judges it (a malformed one is its 400).
* The server's answer becomes a status update (``TaskUpdate``), as the specification's table says:
  - a challenge to an unpaid message (402, or 412 for a missing Permit2 allowance) is
    ``input-required`` with ``x402.payment.status: payment-required`` and the ``PaymentRequired`` in
    ``x402.payment.required``;
  - a 2xx to a paid message is ``completed`` with ``payment-completed`` and the settlement in
    ``x402.payment.receipts`` (a list); the skill's answer is the status text and the artifacts;
  - any other answer to a paid message is ``failed`` with ``payment-failed``, the reason in
    ``x402.payment.error``, and ``x402.payment.receipts``: the failed settlement the role returned, or,
    when verification refused the payment (a 402), a receipt saying nothing was settled. A 400 (a
    payment that cannot be read), a skill's failure and an unreachable facilitator carry no receipt:
    for a 5xx nobody can say the payment was not settled. A new challenge rides along in
    ``x402.payment.required`` (batch-settlement corrects a channel from it);
  - an unpaid message to a free skill is ``completed`` with no payment metadata; anything else is
    ``failed``.
* A2A's JSON numbers in metadata may come back as doubles (a2a-sdk 1.x keeps metadata in a protobuf
  ``Struct``: ``x402Version: 2.0``). Readers here turn every integral double back into an integer.
* Back on the client side, ``message_of_request`` reads the client role's request into the message it
  stands for (its payment, if any, as ``payment-submitted``), and ``response_of_task`` reads a task (as
  JSON, in the specification's spelling or a2a-sdk 1.x's ``TASK_STATE_*``) into the ``HttpResponse``
  the client role expects: ``payment-required`` is a 402 with its ``PAYMENT-REQUIRED`` header;
  ``completed`` a 200 whose body is the task; a ``payment-failed`` task with a receipt or a new
  challenge a 402; the last receipt becomes ``PAYMENT-RESPONSE``. Unfinished states are 202, other
  failures 500.
* A skill's handler answers the ``Handle`` effect with ``skill_answer(...)`` (a 200 carrying text and
  artifacts) or ``skill_failure(...)`` (a 500: nothing is settled for a skill's failure).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actors.messages import HttpRequest, HttpResponse
from ..protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    ProtocolError,
    decode_json_header,
)

__all__ = [
    "A2A_EXTENSION_HEADERS",
    "A2A_X402_EXTENSION",
    "PAYMENT_ERROR",
    "PAYMENT_PAYLOAD",
    "PAYMENT_RECEIPTS",
    "PAYMENT_REQUIRED_KEY",
    "PAYMENT_STATUS",
    "SKILL_KEY",
    "AgentMessage",
    "TaskUpdate",
    "as_ints",
    "message_of_request",
    "response_of_task",
    "skill_answer",
    "skill_failure",
    "skill_request",
    "skill_route_key",
    "state_of",
    "task_metadata",
    "update_of_response",
    "valid_skill_id",
]

A2A_X402_EXTENSION = "https://github.com/google-a2a/a2a-x402/v0.1"
# The activation header of the x402 spec (A2A 0.3), and A2A 1.0's name for it: a client sends both.
A2A_EXTENSION_HEADERS = ("X-A2A-Extensions", "A2A-Extensions")
PAYMENT_STATUS = "x402.payment.status"
PAYMENT_REQUIRED_KEY = "x402.payment.required"
PAYMENT_PAYLOAD = "x402.payment.payload"
PAYMENT_RECEIPTS = "x402.payment.receipts"
PAYMENT_ERROR = "x402.payment.error"
SKILL_KEY = "skill"

# x402.payment.status values
REQUIRED, REJECTED, SUBMITTED, VERIFIED, COMPLETED, FAILED = (
    "payment-required",
    "payment-rejected",
    "payment-submitted",
    "payment-verified",
    "payment-completed",
    "payment-failed",
)
# task states, in the specification's spelling
INPUT_REQUIRED, WORKING, DONE, TASK_FAILED = "input-required", "working", "completed", "failed"
_UNFINISHED = {"submitted", WORKING, INPUT_REQUIRED, "auth-required"}

_SKILL_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHALLENGES = (402, 412)


def valid_skill_id(skill: object) -> bool:
    return isinstance(skill, str) and _SKILL_ID.fullmatch(skill) is not None


def skill_route_key(skill: str) -> str:
    """The route a skill is sold as: ``POST /<skill>``."""
    if not valid_skill_id(skill):
        raise ValueError(f"A2A skill id {skill!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    return f"POST /{skill}"


def as_ints(value: Any) -> Any:
    """``value`` with every integral float (at any depth) turned into an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_ints(v) for v in value]
    return value


def state_of(name: object) -> str:
    """A task state in the specification's spelling (``input-required``), from it or from a2a-sdk
    1.x's protobuf enum name (``TASK_STATE_INPUT_REQUIRED``)."""
    text = str(name)
    if text.startswith("TASK_STATE_"):
        text = text.removeprefix("TASK_STATE_").lower().replace("_", "-")
    return text


@dataclass(frozen=True)
class AgentMessage:
    """One user message: its text, the task it continues (None: a new task) and its metadata."""

    text: str
    task_id: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def skill(self) -> str | None:
        named = (self.metadata or {}).get(SKILL_KEY)
        return named if isinstance(named, str) else None

    @property
    def payment(self) -> Any:
        """What ``x402.payment.payload`` holds (None: no payment)."""
        return None if self.metadata is None else self.metadata.get(PAYMENT_PAYLOAD)

    @property
    def payment_status(self) -> str | None:
        status = (self.metadata or {}).get(PAYMENT_STATUS)
        return status if isinstance(status, str) else None

    def to_json(self, message_id: str) -> dict[str, Any]:
        """The message in the specification's spelling (A2A 0.3 JSON)."""
        message: dict[str, Any] = {
            "kind": "message",
            "messageId": message_id,
            "role": "user",
            "parts": [{"kind": "text", "text": self.text}],
        }
        if self.task_id is not None:
            message["taskId"] = self.task_id
        if self.metadata:
            message["metadata"] = self.metadata
        return message


@dataclass(frozen=True)
class TaskUpdate:
    """A task's new status: ``state`` (specification spelling), the agent's ``text``, the status
    message's ``metadata`` and the ``artifacts`` (each ``{"name", "parts"}`` in the spec's spelling)."""

    state: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    artifacts: tuple[dict[str, Any], ...] = ()

    @property
    def payment_status(self) -> str | None:
        return self.metadata.get(PAYMENT_STATUS)

    def to_json(self, task_id: str, context_id: str) -> dict[str, Any]:
        """The task in the specification's spelling (A2A 0.3 JSON)."""
        message: dict[str, Any] = {
            "kind": "message",
            "role": "agent",
            "parts": [{"kind": "text", "text": self.text}],
        }
        if self.metadata:
            message["metadata"] = self.metadata
        task: dict[str, Any] = {
            "kind": "task",
            "id": task_id,
            "contextId": context_id,
            "status": {"state": self.state, "message": message},
        }
        if self.artifacts:
            task["artifacts"] = [dict(a) for a in self.artifacts]
        return task


def _header_of(value: Any) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode("ascii")


def skill_request(skill: str, text: str, payment: Any = None, *, host: str | None = None) -> HttpRequest:
    """The request the server role reads for ``text`` sent to ``skill``, paid with ``payment`` (any
    JSON value; None: unpaid). ``ValueError`` for an id that is not a skill id."""
    if not valid_skill_id(skill):
        raise ValueError(f"A2A skill id {skill!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain; charset=utf-8"),)
    if host is not None:
        headers = (("Host", host), *headers)
    if payment is not None:
        headers += ((PAYMENT_SIGNATURE, _header_of(as_ints(payment))),)
    return HttpRequest("POST", f"/{skill}", headers, text.encode())


def message_of_request(request: HttpRequest, task_id: str | None = None) -> AgentMessage:
    """The message the client role's ``request`` stands for (``POST /<skill>``, body the text), on
    task ``task_id``: its payment header, if any, as ``x402.payment.payload`` (``payment-submitted``).
    ``ValueError`` for a payment header that is not base64 of JSON."""
    skill = request.path.split("?", 1)[0].lstrip("/")
    metadata: dict[str, Any] = {}
    if skill:
        metadata[SKILL_KEY] = skill
    header = request.header(PAYMENT_SIGNATURE) or request.header(X_PAYMENT)
    if header is not None:
        metadata[PAYMENT_STATUS] = SUBMITTED
        metadata[PAYMENT_PAYLOAD] = json.loads(base64.b64decode(header, validate=True))
    return AgentMessage(request.body.decode("utf-8", "replace"), task_id, metadata or None)


def skill_answer(text: str, data: Any = None, *, name: str = "result") -> HttpResponse:
    """A skill's successful answer: ``text`` (the status message and a text artifact) and, when
    given, ``data`` (any JSON value) as a data part of that artifact."""
    parts: list[dict[str, Any]] = [{"kind": "text", "text": text}]
    if data is not None:
        parts.append({"kind": "data", "data": data})
    return HttpResponse.of_json(200, {"text": text, "artifacts": [{"name": name, "parts": parts}]})


def skill_failure(message: str) -> HttpResponse:
    """A skill's failure: the server role passes a status >= 400 through and settles nothing."""
    return HttpResponse.of_json(500, {"error": message})


def _json_or_none(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: HttpResponse) -> str:
    data = _json_or_none(response)
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return response.body.decode("utf-8", "replace") or f"HTTP {response.status}"


def _header_json(response: HttpResponse, name: str) -> dict[str, Any] | None:
    value = response.header(name)
    if value is None:
        return None
    try:
        return decode_json_header(value, where=name)
    except ProtocolError:
        return None


def _answer(response: HttpResponse) -> tuple[str, tuple[dict[str, Any], ...]]:
    """A skill's 2xx answer as (text, artifacts)."""
    data = _json_or_none(response)
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        artifacts = data.get("artifacts")
        kept = tuple(a for a in artifacts if isinstance(a, dict)) if isinstance(artifacts, list) else ()
        return data["text"], kept
    text = response.body.decode("utf-8", "replace")
    return text, ({"name": "result", "parts": [{"kind": "text", "text": text}]},)


def update_of_response(response: HttpResponse, *, paid: bool, network: str | None = None) -> TaskUpdate:
    """The status update for the server role's ``response`` to a message that carried a payment
    (``paid``) or not; ``network`` names the chain of a receipt made for a refused payment (else the
    challenge's first offer's)."""
    required = _header_json(response, PAYMENT_REQUIRED)
    settlement = _header_json(response, PAYMENT_RESPONSE)
    metadata: dict[str, Any]
    if not paid:
        if response.status in _CHALLENGES and required is not None:
            why = str(required.get("error") or "payment required")
            metadata = {PAYMENT_STATUS: REQUIRED, PAYMENT_REQUIRED_KEY: required}
            return TaskUpdate(INPUT_REQUIRED, f"Payment is required: {why}", metadata)
        if 200 <= response.status < 300:
            text, artifacts = _answer(response)
            return TaskUpdate(DONE, text, {}, artifacts)
        return TaskUpdate(TASK_FAILED, _error_text(response))
    if 200 <= response.status < 300:
        text, artifacts = _answer(response)
        if settlement is not None and settlement.get("success") is True:
            return TaskUpdate(
                DONE, text, {PAYMENT_STATUS: COMPLETED, PAYMENT_RECEIPTS: [settlement]}, artifacts
            )
        metadata = {PAYMENT_STATUS: FAILED, PAYMENT_ERROR: "settlement_failed"}
        if settlement is not None:
            metadata[PAYMENT_ERROR] = str(settlement.get("errorReason") or "settlement_failed")
            metadata[PAYMENT_RECEIPTS] = [settlement]
        return TaskUpdate(DONE, text, metadata, artifacts)  # served unsettled: the server's choice
    if response.status in _CHALLENGES and (required is not None or settlement is not None):
        reason = settlement.get("errorReason") if settlement is not None else None
        reason = reason or (required or {}).get("error") or "payment refused"
        if settlement is None:
            accepts = (required or {}).get("accepts")
            first = (
                accepts[0] if isinstance(accepts, list) and accepts and isinstance(accepts[0], dict) else {}
            )
            settlement = {
                "success": False,
                "errorReason": str(reason),
                "transaction": "",
                "network": network or str(first.get("network", "")),
            }
        metadata = {PAYMENT_STATUS: FAILED, PAYMENT_ERROR: str(reason), PAYMENT_RECEIPTS: [settlement]}
        if required is not None:
            metadata[PAYMENT_REQUIRED_KEY] = required
        return TaskUpdate(TASK_FAILED, f"Payment failed: {reason}", metadata)
    problem = _error_text(response)
    code = "invalid_payload" if response.status == 400 else f"http_{response.status}"
    return TaskUpdate(
        TASK_FAILED, f"Payment failed: {problem}", {PAYMENT_STATUS: FAILED, PAYMENT_ERROR: code}
    )


def _status_message(task: Mapping[str, Any]) -> Mapping[str, Any]:
    status = task.get("status")
    message = status.get("message") if isinstance(status, Mapping) else None
    return message if isinstance(message, Mapping) else {}


def task_metadata(task: Mapping[str, Any]) -> dict[str, Any]:
    """The x402 metadata of ``task``: its status message's, else the task's own."""
    for holder in (_status_message(task), task):
        metadata = holder.get("metadata")
        if isinstance(metadata, Mapping) and any(str(k).startswith("x402.") for k in metadata):
            return dict(as_ints(dict(metadata)))
    return {}


def response_of_task(task: Mapping[str, Any]) -> HttpResponse:
    """The ``HttpResponse`` the client role reads for ``task`` (a JSON object, either spelling); its
    body is the task itself."""
    status = task.get("status")
    state = state_of(status.get("state") if isinstance(status, Mapping) else "")
    metadata = task_metadata(task)
    payment_status = metadata.get(PAYMENT_STATUS)
    required = metadata.get(PAYMENT_REQUIRED_KEY)
    receipts = metadata.get(PAYMENT_RECEIPTS)
    receipt = (
        receipts[-1] if isinstance(receipts, list) and receipts and isinstance(receipts[-1], dict) else None
    )
    headers: tuple[tuple[str, str], ...] = ()
    if receipt is not None:
        headers += ((PAYMENT_RESPONSE, _header_of(receipt)),)
    challenge = isinstance(required, dict) and payment_status in (REQUIRED, FAILED)
    if challenge:
        headers += ((PAYMENT_REQUIRED, _header_of(required)),)
    body = dict(task)
    if state == INPUT_REQUIRED and payment_status == REQUIRED and challenge:
        return HttpResponse.of_json(402, body, headers)
    if state == DONE:
        return HttpResponse.of_json(200, body, headers)
    if payment_status == FAILED and (receipt is not None or challenge):
        return HttpResponse.of_json(402, body, headers)
    if state in _UNFINISHED:
        return HttpResponse.of_json(202, body, headers)
    return HttpResponse.of_json(500, body, headers)
