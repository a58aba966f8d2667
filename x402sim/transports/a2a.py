"""x402 over A2A on the official ``a2a-sdk`` (1.x): a paid agent and a paying client agent.

``a2a_carry`` says what an x402 message and task mean; this module moves them with the SDK:

* ``PaidAgent`` wraps a ``ResourceServer`` whose routes are ``POST /<skill>`` (priced like any route,
  through any mechanism) into an A2A agent: an ``AgentCard`` listing one skill per route and declaring
  the x402 extension (``required: true``), the SDK's request handler and task store, and an
  ``AgentExecutor`` that runs the server role on each message. Its ``app`` is an ASGI app (the SDK's
  JSON-RPC routes at ``/``, A2A 1.0 ``SendMessage`` and, for clients of the x402 specification's
  A2A 0.3 wire, ``message/send``; the card at ``/.well-known/agent-card.json``). A message that does
  not activate the extension (``X-A2A-Extensions`` or ``A2A-Extensions``, on either wire) is refused
  with A2A's extension-support-required error unless ``require_activation=False``. A skill that
  raises fails its task, unsettled. While a payment is verified and settled the task goes through
  ``working`` (``payment-submitted``, ``payment-verified``). The agent answers a task's first
  message (from the SDK's task history), whatever the paid message says.
  The facilitator is anything with ``verify`` and ``settle`` (plain or async): a ``FacilitatorClient``
  when served, the testbed's facilitator in process.
* ``send_paid_message(role, http, url, text)`` runs a ``Client`` role's ``fetch`` over the SDK's
  client: the unpaid message, the 402 read from ``payment-required``, the paid message on the same
  task. So the governor, the trust checks, the spend policy and ``payments`` apply unchanged. When
  the role refuses to pay, the task is closed with ``payment-rejected``.
  ``A2aPayingClient`` is the paying client agent (``x402sim.http.client``'s keyword arguments).
* Transport failures reach the role as ``Unreachable`` (a paid message with no answer is recorded
  ``unknown``); an A2A error answer (an unknown or finished task, a refused activation) becomes an
  HTTP-like answer: 404, 409, 412, 400, else 502.

Needs ``x402sim[agents]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

try:
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
    from a2a.client.errors import A2AClientError, A2AClientTimeoutError
    from a2a.extensions.common import get_requested_extensions
    from a2a.helpers.proto_helpers import get_message_text
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import (
        DefaultServerCallContextBuilder,
        create_agent_card_routes,
        create_jsonrpc_routes,
    )
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentExtension,
        AgentInterface,
        AgentSkill,
        Message,
        Part,
        Role,
        SendMessageRequest,
        Task,
        TaskState,
        TaskStatus,
    )
    from a2a.utils.errors import (
        A2AError,
        ExtensionSupportRequiredError,
        InvalidParamsError,
        InvalidRequestError,
        TaskNotFoundError,
        UnsupportedOperationError,
        VersionNotSupportedError,
    )
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from google.protobuf.struct_pb2 import Value  # type: ignore[import-untyped]
except ModuleNotFoundError as exc:  # pragma: no cover - the extra's absence is tested elsewhere
    from ..extras import missing

    raise missing("agents", "x402sim.transports.a2a") from exc

from ..actors.client import Client, FetchResult, answer_with_approver
from ..actors.driver import BaseDriver, arun
from ..actors.messages import (
    Approval,
    Approve,
    Handle,
    HttpRequest,
    HttpResponse,
    Send,
    Settle,
    Unreachable,
    Verify,
)
from ..actors.server import ResourceServer
from ..http.client import DEFAULT_TIMEOUT, NOT_SENT, PayingBase
from ..http.guard import service_app
from . import a2a_carry as carry
from .a2a_carry import (
    A2A_EXTENSION_HEADERS,
    A2A_X402_EXTENSION,
    PAYMENT_STATUS,
    AgentMessage,
    TaskUpdate,
    as_ints,
    message_of_request,
    response_of_task,
    skill_answer,
    skill_failure,
    skill_request,
    update_of_response,
)

__all__ = [
    "AGENT_CARD_PATH",
    "A2aPayingClient",
    "PaidAgent",
    "SkillHandler",
    "agent_http",
    "send_paid_message",
]

AGENT_CARD_PATH = "/.well-known/agent-card.json"
SkillHandler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
T = TypeVar("T")

_STATES = {
    "submitted": TaskState.TASK_STATE_SUBMITTED,
    "working": TaskState.TASK_STATE_WORKING,
    "input-required": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "rejected": TaskState.TASK_STATE_REJECTED,
}


def _part(spec: Mapping[str, Any]) -> Part:
    """An A2A 1.0 part from a part in the specification's spelling (text or data)."""
    if "data" in spec:
        value = Value()
        json_format.ParseDict(spec["data"], value)
        return Part(data=value)
    return Part(text=str(spec.get("text", "")))


def default_skill_handler(request: HttpRequest) -> HttpResponse:
    """A skill without a handler of its own: it answers what it was asked, by name."""
    skill = request.path.lstrip("/")
    asked = request.body.decode("utf-8", "replace")
    return skill_answer(f"{skill}: done", {"skill": skill, "request": asked})


# -- the paid agent --------------------------------------------------------------------------------


class _AgentDriver(BaseDriver):
    """The agent's answers to the server role: skills run its handlers, verify and settle go to its
    facilitator; a paid message's task is told ``payment-submitted`` / ``payment-verified``."""

    world = "A2A paid agent"

    def __init__(self, agent: PaidAgent, progress: Callable[[str], Awaitable[None]] | None) -> None:
        self.agent, self.progress = agent, progress

    async def verify(self, effect: Verify):
        if self.progress is not None:
            await self.progress(carry.SUBMITTED)
        verdict = await _settled_value(self.agent.facilitator.verify(effect.payload, effect.requirements))
        if self.progress is not None and verdict.is_valid:
            await self.progress(carry.VERIFIED)
        return verdict

    async def settle(self, effect: Settle):
        return await _settled_value(self.agent.facilitator.settle(effect.payload, effect.requirements))

    async def handle(self, effect: Handle) -> HttpResponse:
        try:
            answer: HttpResponse = await _settled_value(
                self.agent.handler_for(effect.request)(effect.request)
            )
        except Exception as exc:  # a skill that raises fails its task; nothing is settled
            return skill_failure(f"the skill failed: {type(exc).__name__}: {exc}")
        return answer


async def _settled_value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _message_of(sent: Message) -> AgentMessage:
    metadata = as_ints(json_format.MessageToDict(sent.metadata)) if sent.HasField("metadata") else None
    return AgentMessage(get_message_text(sent), sent.task_id or None, metadata or None)


class _Executor(AgentExecutor):
    """Runs the server role on each message and publishes what it answered as the task's status."""

    def __init__(self, agent: PaidAgent) -> None:
        self.agent = agent

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        sent = context.message if context.message is not None else Message()
        message = _message_of(sent)
        task = context.current_task
        first = _message_of(task.history[0]) if task is not None and task.history else message
        if context.current_task is None:
            status = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)
            await event_queue.enqueue_event(
                Task(id=task_id, context_id=context_id, status=status, history=[sent])
            )
        updater = TaskUpdater(event_queue, task_id, context_id)

        async def progress(payment_status: str) -> None:
            note = updater.new_agent_message(
                [Part(text=payment_status)], metadata={PAYMENT_STATUS: payment_status}
            )
            await updater.update_status(TaskState.TASK_STATE_WORKING, message=note)

        update = await self.agent.answer(message, first, progress)
        for artifact in update.artifacts:
            parts = [_part(p) for p in artifact.get("parts", []) if isinstance(p, Mapping)]
            await updater.add_artifact(parts, name=str(artifact.get("name", "result")))
        note = updater.new_agent_message([Part(text=update.text)], metadata=update.metadata or None)
        await updater.update_status(_STATES.get(update.state, TaskState.TASK_STATE_FAILED), message=note)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise UnsupportedOperationError(message="a paid task cannot be canceled; let it expire unpaid")


class _ActivationContext(DefaultServerCallContextBuilder):
    """The SDK's call context, with the extensions named in ``X-A2A-Extensions`` (the x402 spec's
    header, A2A 0.3's name) as requested as those named in ``A2A-Extensions``."""

    def build(self, request: Any) -> Any:
        context = super().build(request)
        context.requested_extensions |= get_requested_extensions(
            request.headers.getlist(A2A_EXTENSION_HEADERS[0])
        )
        return context


class _Handler(DefaultRequestHandler):
    """The SDK's request handler, refusing messages that do not activate the x402 extension."""

    def __init__(self, *args: Any, require_activation: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.require_activation = require_activation

    def _check(self, context: Any) -> None:
        if self.require_activation and A2A_X402_EXTENSION not in context.requested_extensions:
            raise ExtensionSupportRequiredError(
                message=f"this agent requires the x402 extension: send X-A2A-Extensions: {A2A_X402_EXTENSION}"
            )

    async def on_message_send(self, params: Any, context: Any) -> Any:
        self._check(context)
        return await super().on_message_send(params, context)

    async def on_message_send_stream(self, params: Any, context: Any) -> AsyncGenerator[Any, None]:
        self._check(context)
        async for event in super().on_message_send_stream(params, context):
            yield event


class PaidAgent:
    """An A2A agent selling ``role``'s ``POST /<skill>`` routes as skills, settling through
    ``facilitator``; ``handlers`` answer skills by id (default: ``default_skill_handler``), at
    ``clock`` time. ``url`` is where it is served (set it once known: the card and the role's
    ``base_url`` follow)."""

    def __init__(
        self,
        role: ResourceServer,
        facilitator: Any,
        *,
        url: str,
        handlers: Mapping[str, SkillHandler] | None = None,
        name: str = "x402sim paid agent",
        description: str = "An agent selling skills paid with x402 (exact, upto, batch-settlement, ...)",
        clock: Callable[[], float] = time.time,
        require_activation: bool = True,
    ) -> None:
        skills = [key.split(" ", 1)[1].lstrip("/") for key in role.routes if key.startswith("POST /")]
        if not skills or len(skills) != len(role.routes):
            raise ValueError("an A2A agent's routes are its skills: name each as 'POST /<skill>'")
        for skill in skills:
            carry.skill_route_key(skill)  # ValueError for an id A2A clients could not name
        if role.x402_version != 2:
            raise ValueError(
                "x402 over A2A is specified for x402 v2: give the agent an x402_version=2 server"
            )
        self.role, self.facilitator, self.clock = role, facilitator, clock
        self.skills = skills
        self.handlers = dict(handlers or {})
        self.card = AgentCard(
            name=name,
            description=description,
            version="1.0.0",
            capabilities=AgentCapabilities(
                streaming=False,
                extensions=[
                    AgentExtension(
                        uri=A2A_X402_EXTENSION,
                        description="Supports payments using the x402 protocol for on-chain settlement.",
                        required=True,
                    )
                ],
            ),
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain", "application/json"],
            skills=[self._skill_card(s) for s in skills],
        )
        self.url = url
        self.handler = _Handler(
            agent_executor=_Executor(self),
            task_store=InMemoryTaskStore(),
            agent_card=self.card,
            require_activation=require_activation,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = self._app()

    def _skill_card(self, skill: str) -> AgentSkill:
        route = self.role.routes[f"POST /{skill}"]
        price = f"{route.price} atomic units" if isinstance(route.price, int) else str(route.price)
        return AgentSkill(
            id=skill,
            name=skill,
            description=route.description or f"{skill} (paid with x402: {price})",
            tags=["x402", "paid"],
        )

    @property
    def url(self) -> str:
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        self._url = value.rstrip("/")
        self.role.base_url = self._url
        del self.card.supported_interfaces[:]
        for version in ("1.0", "0.3"):  # both wires are served at one endpoint
            self.card.supported_interfaces.append(
                AgentInterface(url=self._url + "/", protocol_binding="JSONRPC", protocol_version=version)
            )

    def handler_for(self, request: HttpRequest) -> SkillHandler:
        route = self.role.route_for(request)
        key = route.key if route is not None else request.canonical_key
        return self.handlers.get(key.split(" ", 1)[1].lstrip("/"), default_skill_handler)

    @property
    def default_skill(self) -> str:
        return self.skills[0]

    async def answer(
        self,
        message: AgentMessage,
        first: AgentMessage | None = None,
        progress: Callable[[str], Awaitable[None]] | None = None,
    ) -> TaskUpdate:
        """The status ``message`` brings its task to: the server role's answer to the task's
        ``first`` message (default: this one), paid with what ``message`` carries. (A finished task
        never gets here: the SDK refuses messages to a task in a terminal state.)"""
        if message.payment_status == carry.REJECTED:
            return TaskUpdate(
                carry.TASK_FAILED, "Payment rejected by the client", {PAYMENT_STATUS: carry.REJECTED}
            )
        asked = first or message
        skill, paid = asked.skill or self.default_skill, message.payment is not None
        if skill not in self.skills:
            return TaskUpdate(
                carry.TASK_FAILED, f"no skill {skill!r} here (skills: {', '.join(self.skills)})"
            )
        request = skill_request(skill, asked.text, message.payment, host=urlsplit(self.url).netloc)
        driver = _AgentDriver(self, progress if paid else None)
        response = await arun(self.role.handle(request, int(self.clock())), driver)
        return update_of_response(response, paid=paid)

    def _app(self):
        routes = [
            *create_agent_card_routes(self.card, card_url=AGENT_CARD_PATH),
            *create_jsonrpc_routes(
                self.handler,
                "/",
                # the x402 spec's X-A2A-Extensions activates the extension on both wires
                context_builder=_ActivationContext(),
                enable_v0_3_compat=True,
            ),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            yield
            await self.handler.aclose()
            close = getattr(self.facilitator, "aclose", None)
            if close is not None:
                await close()

        return service_app("A2A agent", routes, lifespan=lifespan)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on this agent's own event loop (in process: the SDK keeps tasks waiting for
        input alive on the loop that started them, so every exchange with it uses one loop)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(work)

    def transport(self) -> httpx.ASGITransport:
        """An httpx transport reaching this agent's app in process."""
        return httpx.ASGITransport(app=self.app)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.handler.aclose())
            self._loop.close()


# -- the paying client -----------------------------------------------------------------------------

_ERROR_STATUS: tuple[tuple[type[A2AError], int], ...] = (
    (TaskNotFoundError, 404),
    (UnsupportedOperationError, 409),
    (ExtensionSupportRequiredError, 412),
    (InvalidParamsError, 400),
    (InvalidRequestError, 400),
    (VersionNotSupportedError, 400),
)


_TERMINAL = {"completed", "failed", "rejected", "canceled"}


def _error_answer(exc: A2AError) -> HttpResponse:
    status = next((s for kind, s in _ERROR_STATUS if isinstance(exc, kind)), 502)
    return HttpResponse.of_json(status, {"error": f"{type(exc).__name__}: {exc}"})


class _ClientDriver(BaseDriver):
    """The client role's answers: each request is a message to the agent (on the task the first
    answer opened), approvals go to the role's governor's approver."""

    world = "A2A client"

    def __init__(self, role: Client, client: Any, clock: Callable[[], float]) -> None:
        self.role, self.client, self.clock = role, client, clock
        self.task_id: str | None = None
        self.context_id = ""

    async def send(self, effect: Send) -> HttpResponse:
        return await self.message(message_of_request(effect.request, self.task_id))

    async def message(self, message: AgentMessage) -> HttpResponse:
        sent = Message(
            message_id=uuid.uuid4().hex,
            role=Role.ROLE_USER,
            parts=[Part(text=message.text)],
            task_id=message.task_id or "",
            context_id=self.context_id if message.task_id else "",
            metadata=message.metadata,
        )
        task = None
        try:
            async for event in self.client.send_message(SendMessageRequest(message=sent)):
                if event.HasField("task"):
                    task = json_format.MessageToDict(event.task)
                elif event.HasField("message"):
                    return HttpResponse.of_json(200, json_format.MessageToDict(event.message))
        except A2AClientError as exc:
            cause = exc.__cause__
            if isinstance(exc, A2AClientTimeoutError) or isinstance(cause, httpx.HTTPError):
                landed = not isinstance(cause, NOT_SENT)
                raise Unreachable("server", str(exc), may_have_landed=landed, cause=cause or exc) from exc
            return _error_answer(exc)
        except A2AError as exc:
            return _error_answer(exc)
        if task is None:
            return HttpResponse.of_json(
                502, {"error": "the agent answered with neither a task nor a message"}
            )
        answer = response_of_task(task)
        status = task.get("status")
        state = carry.state_of(status.get("state") if isinstance(status, dict) else "")
        if state in _TERMINAL:  # a finished task takes no more messages: a retry opens a new one
            self.task_id, self.context_id = None, ""
        else:
            self.task_id = str(task.get("id") or self.task_id or "") or None
            self.context_id = str(task.get("contextId") or self.context_id)
        return answer

    async def approve(self, effect: Approve) -> Approval:
        return answer_with_approver(self.role, effect, int(self.clock()))


def agent_http(
    *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An httpx client that activates the x402 extension on every request (both header names)."""
    headers = dict.fromkeys(A2A_EXTENSION_HEADERS, A2A_X402_EXTENSION)
    return httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers)


async def send_paid_message(
    role: Client,
    http: httpx.AsyncClient,
    agent_url: str,
    text: str,
    *,
    skill: str | None = None,
    clock: Callable[[], float] = time.time,
) -> FetchResult:
    """Send ``text`` to the agent at ``agent_url`` (its card read from ``AGENT_CARD_PATH``) for
    ``skill`` (default: its first), paying once with ``role`` when the task asks for payment."""
    card = await A2ACardResolver(http, agent_url).get_agent_card(relative_card_path=AGENT_CARD_PATH)
    if skill is None:
        if not card.skills:
            raise ValueError(f"the agent at {agent_url} lists no skills; name one")
        skill = card.skills[0].id
    host = urlsplit(agent_url).netloc
    request = HttpRequest("POST", f"/{skill}", (("Host", host),), text.encode())
    carry.skill_route_key(skill)  # ValueError for an id that cannot be a route
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
    driver = _ClientDriver(role, client, clock)
    try:
        result = await arun(role.fetch(request, int(clock())), driver)
        if result.refused is not None and result.first_status == 402 and driver.task_id is not None:
            with contextlib.suppress(Unreachable):  # closing the task is a courtesy
                await driver.message(
                    AgentMessage(
                        f"payment rejected: {result.refused}",
                        driver.task_id,
                        {PAYMENT_STATUS: carry.REJECTED},
                    )
                )
        return result
    finally:
        await client.close()


class A2aPayingClient(PayingBase):
    """A paying client agent over A2A: ``send_message(url, text)`` pays once when the agent's task
    asks for payment and returns a ``FetchResult`` (its body: the final task as JSON). It takes
    ``PayingClient``'s keyword arguments; ``transport`` (e.g. ``httpx.ASGITransport(agent.app)``)
    replaces the network."""

    def __init__(
        self,
        key: bytes | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(key, **kwargs)
        self._http = agent_http(timeout=timeout, transport=transport)

    async def send_message(self, agent_url: str, text: str, *, skill: str | None = None) -> FetchResult:
        try:
            return await send_paid_message(
                self.role, self._http, agent_url, text, skill=skill, clock=self.clock
            )
        except Unreachable as exc:
            raise (exc.cause if exc.cause is not None else exc) from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> A2aPayingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
