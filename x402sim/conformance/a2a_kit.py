"""The harness over A2A: its HTTP-speaking cases carried as agent messages, and A2A server targets.

Job: the conformance world's A2A driver, as ``mcp_kit`` is its MCP one. The server cases talk to a
target through an ``httpx.AsyncClient``; over A2A that client's transport is ``A2aBridge``, which
carries each request as the message(s) it stands for to the target agent (JSON-RPC ``message/send``
in the x402 specification's A2A 0.3 spelling, the extension activated with ``X-A2A-Extensions``) and
reads the task back as the HTTP answer the cases judge (``a2a_carry.response_of_task``). A case
written for what is paid (replay, amounts, settlement) therefore runs unchanged over A2A;
``carriers`` says which.

Rules of the bridge (one request -> one task):

* The skill is the request's path without its leading slash (``/protected`` -> ``protected``),
  named in the message's ``metadata["skill"]``; the message's text is the request's query (its
  arguments, as ``k=v&...``), else its body, else a fixed greeting.
* An unpaid request is one message opening a new task. A paid request is what a paying client
  does: the unpaid message opening the task, then, if the task waits for input, the payment on that
  task (``x402.payment.status: payment-submitted``, the ``PAYMENT-SIGNATURE`` decoded from base64 of
  JSON as ``x402.payment.payload``; one that cannot be decoded travels as the string it is).
* The final task reads back as ``response_of_task`` reads it (402 with ``PAYMENT-REQUIRED`` for a
  payment-required or payment-failed task, 200 with ``PAYMENT-RESPONSE`` for a completed one); a
  JSON-RPC error answer reads as a 400 whose JSON body holds it under ``jsonrpc_error`` (an internal
  error, -32603, as a 500: the analogue of a crash). A failed task with ``payment-failed``, no
  receipt and no new challenge reads by its ``x402.payment.error``: ``invalid_payload`` as a 400 (a
  payment that cannot be read), ``http_<status>`` as that status (x402sim's agents name an
  unreachable facilitator so), else a 500. The raw task
  (or error) is kept under the answer's ``a2a_task`` extension, the opening task under
  ``a2a_opening``, for the cases and the evidence.

A2A server targets (``a2a_link()`` opens an ``A2aLink`` to the agent; ``start`` and ``stop`` as for
HTTP targets):

* ``A2aService``: an HTTP server app (the reference server, or a control: any ``build(env)`` ASGI
  app) as a paid A2A agent in this process (``AppAgent``), reached through httpx's ASGI transport.
  Each message is sent to the app as ``GET /<skill>`` (with the text as its query when the text is
  one, ``k=v&...``) with the payment as ``PAYMENT-SIGNATURE``, and
  its answer becomes the task's status (``a2a_carry.update_of_response``); the skills listed are the
  paid routes the environment names. ``hooks`` lets a control answer some messages itself.
* ``A2aHttpCommand``: a command serving an A2A agent at ``/`` of ``PORT`` (a ``ServiceCommand``);
  ``A2aUrl``: an agent already running.

For client targets: ``A2aFront`` serves the harness's (hostile) server app as a paid agent on
loopback, and ``a2a_pay_from_env`` is the reference paying client agent (``A2aPayingClient``).

Needs ``x402sim[agents]`` (the ``a2a-sdk``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httpx

from ..actors.messages import HttpResponse
from ..http.guard import Asgi
from ..protocol import PAYMENT_SIGNATURE
from ..transports import a2a_carry as carry
from ..transports.a2a import AGENT_CARD_PATH, PaidAgent
from ..transports.a2a_carry import (
    A2A_X402_EXTENSION,
    PAYMENT_PAYLOAD,
    PAYMENT_STATUS,
    SKILL_KEY,
    AgentMessage,
    TaskUpdate,
    response_of_task,
    update_of_response,
)
from .catalog import MECHANISMS
from .mcp_kit import paid_tools, tool_name
from .results import Role, TargetKind
from .targets import InProcessTarget, ServiceCommand, ServiceUrl, TargetError

A2A_TASK = "a2a_task"  # the httpx response extension holding the final task (or JSON-RPC error)
A2A_OPENING = "a2a_opening"  # ... and the task the unpaid message opened, for a paid request
JSONRPC_ERROR = "jsonrpc_error"
A2A_BASE_URL = "http://agent.a2a"  # where an in-process agent is reached (and names its resources)
A2A_TIMEOUT = 30.0
_TERMINAL = {"completed", "failed", "rejected", "canceled"}
GREETING = "x402sim conformance"  # the text of a message for a request with no query and no body
INTERNAL_ERROR = -32603


def _payment_of(value: str) -> Any:
    """A ``PAYMENT-SIGNATURE`` value as the payload it carries (the string itself when it is not
    base64 of JSON: a malformed payment travels as malformed)."""
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return value


def _header_of(payment: Any) -> str:
    if isinstance(payment, str):
        return payment
    return base64.b64encode(json.dumps(payment, separators=(",", ":")).encode()).decode("ascii")


def task_state(task: Any) -> str:
    """The state of ``task`` (a task as JSON) in the specification's spelling, "" when it has none."""
    status = task.get("status") if isinstance(task, dict) else None
    return carry.state_of(status.get("state", "")) if isinstance(status, dict) else ""


def metadata_of(task: Any) -> dict[str, Any]:
    """The x402 metadata of ``task`` (its status message's, else its own), integral numbers as ints."""
    return carry.task_metadata(task) if isinstance(task, dict) else {}


class A2aLink:
    """JSON-RPC to one agent at ``url`` over ``http`` (which activates the x402 extension)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url.rstrip("/") + "/"

    async def card(self) -> dict[str, Any]:
        answer = await self.http.get(self.url.rstrip("/") + AGENT_CARD_PATH)
        answer.raise_for_status()
        return answer.json()

    async def send(self, message: AgentMessage) -> dict[str, Any]:
        """``{"task": ...}`` or ``{"message": ...}`` the agent answered, or ``{"error": ...}`` (a
        JSON-RPC error, or an answer that is not JSON-RPC, with its HTTP status)."""
        body = {
            "jsonrpc": "2.0",
            "id": uuid.uuid4().hex,
            "method": "message/send",
            "params": {"message": message.to_json(uuid.uuid4().hex)},
        }
        answer = await self.http.post(self.url, json=body)
        try:
            data = answer.json()
        except ValueError:
            return {"error": {"code": None, "message": f"HTTP {answer.status_code}: {answer.text[:200]}"}}
        if not isinstance(data, dict):
            return {"error": {"code": None, "message": f"not a JSON-RPC answer: {str(data)[:200]}"}}
        if "error" in data:
            return {"error": data["error"]}
        result = data.get("result")
        if isinstance(result, dict) and result.get("kind") == "message":
            return {"message": result}
        if isinstance(result, dict):
            return {"task": result}
        return {"error": {"code": None, "message": f"result is {result!r}"}}


def agent_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport, timeout=A2A_TIMEOUT, headers={"X-A2A-Extensions": A2A_X402_EXTENSION}
    )


class A2aBridge(httpx.AsyncBaseTransport):
    """The harness's HTTP requests as messages to the agent ``link`` reaches (see the module docstring)."""

    def __init__(self, link: A2aLink) -> None:
        self.link = link

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        skill = unquote(tool_name(request.url.path))
        query = request.url.query.decode("ascii", "replace")
        text = query or body.decode("utf-8", "replace") or GREETING
        payments = request.headers.get_list(PAYMENT_SIGNATURE)
        opening = await self.link.send(AgentMessage(text, None, {SKILL_KEY: skill}))
        final = opening
        task = opening.get("task")
        if payments and task is not None and task_state(task) not in _TERMINAL:
            metadata = {
                SKILL_KEY: skill,
                PAYMENT_STATUS: carry.SUBMITTED,
                PAYMENT_PAYLOAD: _payment_of(payments[0]),
            }
            final = await self.link.send(AgentMessage(text, str(task.get("id")), metadata))
        return self.response(final, request, opening=opening if final is not opening else None)

    @staticmethod
    def response(answer: dict[str, Any], request: httpx.Request, *, opening=None) -> httpx.Response:
        """The HTTP answer the cases read for an agent's ``answer`` (of ``A2aLink.send``)."""
        extensions: dict[str, Any] = {A2A_TASK: answer.get("task", answer.get("error", answer))}
        if opening is not None:
            extensions[A2A_OPENING] = opening.get("task", opening)
        if "error" in answer:
            error = answer["error"]
            internal = isinstance(error, dict) and error.get("code") == INTERNAL_ERROR
            return httpx.Response(
                500 if internal else 400, json={JSONRPC_ERROR: error}, request=request, extensions=extensions
            )
        if "message" in answer:  # a direct message: served with no task (nothing to pay)
            return httpx.Response(200, json=answer["message"], request=request, extensions=extensions)
        reply = response_of_task(answer["task"])
        status = reply.status
        if status == 500:
            status = _failed_status(answer["task"])
        return httpx.Response(
            status, headers=list(reply.headers), content=reply.body, request=request, extensions=extensions
        )


def _failed_status(task: dict[str, Any]) -> int:
    """The HTTP status a failed task stands for (see the module docstring)."""
    metadata = metadata_of(task)
    if metadata.get(PAYMENT_STATUS) != carry.FAILED:
        return 500
    error = str(metadata.get(carry.PAYMENT_ERROR, ""))
    if error == "invalid_payload":
        return 400
    code = error.removeprefix("http_")
    return int(code) if error.startswith("http_") and code.isdigit() and 400 <= int(code) < 600 else 500


# -- the reference (or a control) as a paid agent ----------------------------------------------------

Forward = Callable[[str, str, Any], Awaitable[TaskUpdate]]
# A control's hook: given the message, the task's first message and the way on to the app, its
# own update, or None to pass
Hook = Callable[[AgentMessage, AgentMessage, Forward], Awaitable[TaskUpdate | None]]


@dataclass
class _Route:
    price: Any = "x402"
    description: str = ""


@dataclass
class _Skills:
    """What ``PaidAgent`` reads of a role: its routes (the skills), version and base URL."""

    routes: dict[str, _Route]
    x402_version: int = 2
    base_url: str = ""


class AppAgent(PaidAgent):
    """A paid A2A agent whose skills are ``app``'s paid routes: each message is answered by
    ``GET /<skill>`` on the app (the payment as ``PAYMENT-SIGNATURE``), any valid skill id being
    forwarded (``skills`` are the ones its card lists); ``hooks`` may answer first."""

    def __init__(
        self,
        app: Asgi,
        skills: Iterable[str],
        *,
        url: str,
        name: str = "x402sim reference (A2A)",
        hooks: Iterable[Hook] = (),
    ) -> None:
        listed = list(skills) or ["protected"]
        stand_in = _Skills({f"POST /{s}": _Route(description=f"{s} (paid with x402)") for s in listed})
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent.app")
        self.hooks = tuple(hooks)
        super().__init__(cast(Any, stand_in), None, url=url, name=name)

    async def forward(self, skill: str, text: str, payment: Any) -> TaskUpdate:
        headers = {PAYMENT_SIGNATURE: _header_of(payment)} if payment is not None else {}
        try:
            parse_qsl(text, strict_parsing=True)
            query = "?" + text
        except ValueError:
            query = ""
        reply = await self.http.get(f"/{skill}{query}", headers=headers)
        response = HttpResponse(reply.status_code, tuple(reply.headers.items()), reply.content)
        return update_of_response(response, paid=payment is not None)

    async def answer(self, message, first=None, progress=None) -> TaskUpdate:
        if message.payment_status == carry.REJECTED:
            return TaskUpdate(
                carry.TASK_FAILED, "Payment rejected by the client", {PAYMENT_STATUS: carry.REJECTED}
            )
        asked = first or message
        for hook in self.hooks:
            update = await hook(message, asked, self.forward)
            if update is not None:
                return update
        skill = asked.skill or self.default_skill
        if not carry.valid_skill_id(skill):
            return TaskUpdate(carry.TASK_FAILED, f"{skill!r} is not a skill id")
        return await self.forward(skill, asked.text, message.payment)


@dataclass
class A2aService(InProcessTarget):
    """An HTTP server app (``build(env)``) as a paid A2A agent in this process (``AppAgent``)."""

    build: Callable[[dict[str, str]], Asgi] | None = None
    name: str = "x402sim reference (A2A)"
    kind: TargetKind = "reference"
    role: Role = "server"
    hooks: tuple[Hook, ...] = ()
    agent_class: type[AppAgent] = AppAgent
    mechanisms: tuple[str, ...] = MECHANISMS
    agent: AppAgent | None = field(default=None, init=False)

    def start(self, env: dict[str, str]) -> str:
        build = self.build or reference_agent_app
        self.agent = self.agent_class(
            build(env), paid_tools(env), url=A2A_BASE_URL, name=self.name, hooks=self.hooks
        )
        return A2A_BASE_URL

    def stop(self) -> None:
        self.agent = None

    @contextlib.asynccontextmanager
    async def a2a_link(self) -> AsyncIterator[A2aLink]:
        if self.agent is None:
            raise TargetError(f"{self.name}: not started")
        agent = self.agent
        try:
            async with agent_client(agent.transport()) as http:
                yield A2aLink(http, A2A_BASE_URL)
        finally:  # tasks left waiting for payment end with the run's loop
            await agent.handler.aclose()


def reference_agent_app(env: dict[str, str], url: str = A2A_BASE_URL) -> Asgi:
    """The from-env reference server, naming its routes' resources ``<agent URL>/<skill>``."""
    from .reference import reference_server

    return reference_server(env, base_url=url)[1]


class A2aHttpCommand(ServiceCommand):
    """A server command serving an A2A agent (JSON-RPC at ``/``, its card at ``AGENT_CARD_PATH``) on
    its ``PORT``."""

    @contextlib.asynccontextmanager
    async def a2a_link(self) -> AsyncIterator[A2aLink]:
        async with agent_client() as http:
            yield A2aLink(http, self.base_url)


class A2aUrl(ServiceUrl):
    """An A2A agent already running at ``url``."""

    def __init__(self, url: str, name: str | None = None) -> None:
        super().__init__("server", url, name)

    def start(self, env: dict[str, str]) -> str:
        return self.url

    @contextlib.asynccontextmanager
    async def a2a_link(self) -> AsyncIterator[A2aLink]:
        async with agent_client() as http:
            yield A2aLink(http, self.url)


async def listed_skills(link: A2aLink) -> dict[str, dict]:
    """The skills the agent's card lists (id -> the skill's card entry)."""
    try:
        card = await link.card()
    except (httpx.HTTPError, ValueError) as exc:
        raise TargetError(f"the agent at {link.url} gives no card at {AGENT_CARD_PATH}: {exc}") from exc
    skills = card.get("skills") if isinstance(card, dict) else None
    return {s["id"]: s for s in skills or () if isinstance(s, dict) and isinstance(s.get("id"), str)}


# -- the harness's server side for client targets ---------------------------------------------------


@dataclass
class A2aFront:
    """The harness's (hostile) server app as a paid agent on loopback, for an A2A client target: every
    skill id is forwarded to the app as ``GET /<skill>``."""

    app: Any
    tools: set[str] = field(default_factory=set)
    services: Any = None
    url: str = ""

    def reset(self) -> None:
        pass

    def start(self) -> str:
        from ..http.runner import LOOPBACK, Services

        agent = AppAgent(self.app, ["resource"], url=A2A_BASE_URL, name="x402sim conformance harness")
        self.services = Services(LOOPBACK)
        self.url = self.services.add("a2a-front", agent.app)
        agent.url = self.url
        self.services.start()
        return self.url

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None


async def _a2a_pay(env: Mapping[str, str]) -> dict:
    from ..actors.client import SpendPolicy
    from ..http.serve import client_env, client_verdict
    from ..transports.a2a import A2aPayingClient

    parsed = client_env(env)
    skill = env["ENDPOINT_PATH"].removeprefix("/")
    policy = SpendPolicy(max_price=parsed.max_amount)
    async with A2aPayingClient(parsed.key, networks=(parsed.network,), policy=policy) as client:
        result = await client.send_message(env["RESOURCE_SERVER_URL"], "x402sim conformance", skill=skill)
    return client_verdict(result)


def a2a_pay_from_env(env: dict[str, str]) -> dict:
    """What a paying A2A client agent does with the e2e client environment: send a message to the
    agent at ``RESOURCE_SERVER_URL`` for the skill ``ENDPOINT_PATH``, pay a payment-required task
    once (the reference client role, unchanged, over ``A2aPayingClient``), and return the e2e
    verdict."""
    import asyncio

    try:
        return asyncio.run(_a2a_pay(env))
    except Exception as exc:  # the verdict says what went wrong, as a client command would
        error = f"{type(exc).__name__}: {exc}"
        return {"success": False, "data": error, "status_code": None, "payment_response": None}
