"""The harness over MCP: its HTTP-speaking cases carried as tool calls, and MCP server targets.

Job: the conformance world's MCP driver. The server cases talk to a target through an
``httpx.AsyncClient``; over MCP that client's transport is ``McpBridge``, which carries each request
as the tool call it stands for on one MCP client session (``mcp_wire``) and reads the tool result
back as the HTTP answer the cases judge (``mcp_carry``). A case written for what is paid (replay,
amounts, settlement) therefore runs unchanged over MCP; ``carriers`` says which.

Rules of the bridge (one request -> one ``tools/call``):

* The tool is the request's path without its leading slash (``/protected`` -> ``protected``); its
  query parameters are the arguments (strings), merged with a JSON object body, over arguments that
  satisfy the tool's listed input schema (``sample_arguments``: a tool that validates its input
  before its paywall must be reached); the first
  ``PAYMENT-SIGNATURE`` decoded (base64 of JSON) is ``_meta["x402/payment"]``; one that cannot be
  decoded travels as the string it is.
* The result reads back as ``mcp_carry.response_of_result`` reads it (a payment-required result: 402
  with ``PAYMENT-REQUIRED``; ``_meta["x402/payment-response"]``: ``PAYMENT-RESPONSE``; another error
  result: 500); a JSON-RPC error answer reads as a 400 whose JSON body holds it under ``jsonrpc_error``.
  The raw result is kept under the answer's ``mcp_result`` extension for the evidence.

MCP server targets (``mcp_session()`` opens a client session with the target; ``start`` and ``stop`` as
for HTTP targets):

* ``McpService``: an HTTP server app (the reference server, or a control: any ``build(env)`` ASGI app)
  as an MCP tool server in this process (``app_tool_server``), reached in memory. Each tool call is
  sent to the app as ``GET /<tool>?<arguments>`` with the payment as ``PAYMENT-SIGNATURE``, and its
  answer becomes the tool result (``mcp_carry.result_of_response``); the tools listed are the paid
  routes the environment names. ``hooks`` lets a control answer some calls itself.
* ``McpStdioCommand``: a command speaking MCP on stdin/stdout, started by the session (the harness's
  environment plus the caller's); ``McpHttpCommand``: a command serving MCP over streamable HTTP at
  ``MCP_PATH`` of ``PORT``, or over SSE at ``SSE_PATH`` as the official e2e MCP servers do (started
  and stopped as a ``ServiceCommand``); ``McpUrl``: an MCP endpoint already running.

For client targets: ``ClientFront`` serves the harness's (hostile) server app as a paid tool server
(streamable HTTP and SSE, ``both_wires``), and ``mcp_pay_from_env`` is the reference paying MCP client
(the client role, unchanged, its requests carried by an ``McpBridge``).

Needs ``x402sim[agents]`` (the ``mcp`` SDK).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.shared.exceptions import McpError

from ..actors.messages import HttpResponse
from ..http.guard import Asgi
from ..protocol import PAYMENT_SIGNATURE, ProtocolError
from ..transports.mcp_carry import (
    MCP_PAYMENT,
    TOOL_BASE_URL,
    McpProtocolError,
    ToolCall,
    response_of_result,
    result_of_response,
)
from ..transports.mcp_wire import MCP_PATH, call_tool, open_session, tool_server
from .catalog import MECHANISMS
from .results import Role, TargetInfo, TargetKind
from .targets import InProcessTarget, ServiceCommand, ServiceUrl, TargetError

MCP_RESULT = "mcp_result"  # the httpx response extension holding the raw tool result
JSONRPC_ERROR = "jsonrpc_error"  # the key of a JSON-RPC error in the bridge's 400 body
MCP_SESSION_TIMEOUT = 30.0
SSE_PATH = "/sse"  # where the official e2e MCP servers serve MCP's SSE transport
# The env variables naming the paid routes a reference tool server sells as tools
ROUTE_VARS = (
    "PROTECTED_PATH",
    "SECOND_PROTECTED_PATH",
    "FAILING_PATH",
    "PERMIT2_PATH",
    "UPTO_PATH",
    "BATCH_PATH",
)
MCP_SERVER_URL = "MCP_SERVER_URL"  # env (x402sim's): the streamable HTTP endpoint a client target calls
FREE_RESOURCE = "x402sim://about"  # the reference tool server's one (free) resource
REFERENCE_RESOURCES = {FREE_RESOURCE: "x402sim reference tools: each paid route of the environment as a tool"}
BRIDGE_BASE_URL = "mcp://tool"  # the base of the harness's requests over MCP (only the path is read)


def tool_name(path: str) -> str:
    """The tool a harness path names: the path without its query and leading slash."""
    return path.split("?", 1)[0].removeprefix("/")


def _payment_of(value: str) -> Any:
    """A ``PAYMENT-SIGNATURE`` value as the ``_meta`` payment it carries (the string itself when it is
    not base64 of JSON: a malformed payment travels as malformed)."""
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return value


def call_of(request: httpx.Request, body: bytes) -> ToolCall:
    """The tool call a harness request stands for (see the module docstring)."""
    arguments: dict[str, Any] = dict(parse_qsl(request.url.query.decode("ascii", "replace")))
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                arguments.update(parsed)
    payments = request.headers.get_list(PAYMENT_SIGNATURE)
    meta = {MCP_PAYMENT: _payment_of(payments[0])} if payments else None
    return ToolCall(tool_name(request.url.path), arguments, meta)


_SAMPLES: dict[str, Any] = {
    "string": "x402sim",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "array": [],
    "object": {},
}


def sample_arguments(schema: Any) -> dict[str, Any]:
    """Arguments that satisfy the required properties of a tool's ``inputSchema`` (its enum's first
    value, else a sample of its type), so that a tool validating its input reaches its paywall."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    arguments: dict[str, Any] = {}
    for name in schema.get("required") or ():
        spec = schema["properties"].get(name)
        if not isinstance(spec, dict):
            continue
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            arguments[name] = spec["enum"][0]
        elif "default" in spec:
            arguments[name] = spec["default"]
        else:
            kind = spec.get("type")
            arguments[name] = _SAMPLES.get(kind if isinstance(kind, str) else "string", "x402sim")
    return arguments


class McpBridge(httpx.AsyncBaseTransport):
    """The harness's HTTP requests as tool calls on ``session`` (an initialized MCP client session);
    ``defaults`` (tool -> arguments, ``sample_arguments`` of its schema) fill what a call lacks."""

    def __init__(self, session, defaults: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.session = session
        self.defaults = dict(defaults or {})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        call = call_of(request, body)
        if call.name in self.defaults:
            call = ToolCall(call.name, {**self.defaults[call.name], **call.arguments}, call.meta)
        try:
            result = await call_tool(self.session, call)
        except McpError as exc:
            error = {"code": exc.error.code, "message": exc.error.message}
            return httpx.Response(
                400, json={JSONRPC_ERROR: error}, request=request, extensions={MCP_RESULT: error}
            )
        answer = response_of_result(result)
        return httpx.Response(
            answer.status,
            headers=list(answer.headers),
            content=answer.body,
            request=request,
            extensions={MCP_RESULT: result},
        )


# -- the reference (or a control) as an MCP tool server ---------------------------------------------

Forward = Callable[[ToolCall], Awaitable[dict[str, Any]]]
# A control's hook: given a call and the way on to the app, its own result, or None to pass
Hook = Callable[[ToolCall, Forward], Awaitable[dict[str, Any] | None]]


def _argument_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _header_of(payment: Any) -> str:
    if isinstance(payment, str):
        return payment  # a payment that was not JSON travels as it came
    return base64.b64encode(json.dumps(payment, separators=(",", ":")).encode()).decode("ascii")


def paid_tools(env: Mapping[str, str]) -> list[str]:
    """The tools a reference tool server sells: the paths of ``ROUTE_VARS`` set in ``env``, as names."""
    return [tool_name(env[var]) for var in ROUTE_VARS if env.get(var, "").strip()]


def app_tool_server(
    app: Asgi,
    tools: Iterable[str] | Callable[[], Iterable[str]],
    *,
    name: str = "x402sim reference tools",
    hooks: Iterable[Hook] = (),
    resources: Mapping[str, str] | None = None,
) -> Server[Any, Any]:
    """An MCP server whose tools are ``app``'s paid routes (see ``McpService``). Each hook may answer a
    call first (a result, or None to pass), the app reachable through the ``Forward`` it is given;
    ``resources`` (URI -> text) are listed and read freely."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tool.app", timeout=60.0)
    hooks = tuple(hooks)

    async def on_call(call: ToolCall) -> dict[str, Any]:
        for hook in hooks:
            answer = await hook(call, forward)
            if answer is not None:
                return answer
        return await forward(call)

    async def forward(call: ToolCall) -> dict[str, Any]:
        query = urlencode({k: _argument_text(v) for k, v in call.arguments.items()})
        headers = {}
        if call.payment is not None:
            headers[PAYMENT_SIGNATURE] = _header_of(call.payment)
        reply = await http.get(f"/{call.name}" + (f"?{query}" if query else ""), headers=headers)
        response = HttpResponse(reply.status_code, tuple(reply.headers.items()), reply.content)
        try:
            return result_of_response(response)
        except ProtocolError as exc:  # the app wrote a header that cannot be read
            raise McpProtocolError(f"{exc.where}: {exc.problem}") from None

    fixed = None if callable(tools) else list(tools)

    def listed() -> list[types.Tool]:
        names = fixed if fixed is not None else tools()  # type: ignore[operator]
        return [types.Tool(name=tool, inputSchema={"type": "object"}) for tool in names]

    server = tool_server(name, listed, on_call)
    served = dict(resources or {})

    @server.list_resources()
    async def _list_resources() -> list[types.Resource]:
        return [types.Resource(uri=uri, name=uri.rsplit("/", 1)[-1] or uri) for uri in served]  # type: ignore[arg-type]

    @server.read_resource()
    async def _read_resource(uri) -> list[ReadResourceContents]:
        text = served.get(str(uri))
        if text is None:
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=f"no resource {uri}"))
        return [ReadResourceContents(text, "text/plain")]

    return server


def reference_tools(env: dict[str, str]) -> Asgi:
    """The from-env reference server, naming its routes' resources ``mcp://tool/<name>``."""
    from .reference import reference_server

    return reference_server(env, base_url=TOOL_BASE_URL)[1]


@dataclass
class McpService(InProcessTarget):
    """An HTTP server app (``build(env)``) as an MCP tool server in this process, reached in memory."""

    build: Callable[[dict[str, str]], Asgi] = reference_tools
    name: str = "x402sim reference (MCP)"
    kind: TargetKind = "reference"
    role: Role = "server"
    hooks: tuple[Hook, ...] = ()
    resources: Mapping[str, str] = field(default_factory=lambda: dict(REFERENCE_RESOURCES))
    mechanisms: tuple[str, ...] = MECHANISMS  # the reference speaks every mechanism
    server: Server[Any, Any] | None = field(default=None, init=False)

    def start(self, env: dict[str, str]) -> str:
        self.server = app_tool_server(
            self.build(env), paid_tools(env), name=self.name, hooks=self.hooks, resources=self.resources
        )
        return BRIDGE_BASE_URL

    def stop(self) -> None:
        self.server = None

    @contextlib.asynccontextmanager
    async def mcp_session(self) -> AsyncIterator[Any]:
        if self.server is None:
            raise TargetError(f"{self.name}: not started")
        async with open_session(self.server, timeout=MCP_SESSION_TIMEOUT) as session:
            yield session


@dataclass
class McpStdioCommand:
    """A server command speaking MCP on stdin/stdout; each session starts it anew."""

    cmd: str
    name: str | None = None
    cwd: str | None = None
    role: Role = "server"
    env: dict[str, str] = field(default_factory=dict, init=False)

    @property
    def info(self) -> TargetInfo:
        return TargetInfo(role=self.role, kind="command", spec=self.cmd, name=self.name or self.cmd)

    def transport(self):
        return None

    def alive(self) -> bool:
        return True

    def start(self, env: dict[str, str]) -> str:
        self.env = {**os.environ, **env}
        return BRIDGE_BASE_URL

    def stop(self) -> None:
        pass

    def log_tail(self, n: int = 15) -> str:
        return ""

    @contextlib.asynccontextmanager
    async def mcp_session(self) -> AsyncIterator[Any]:
        import shlex
        from datetime import timedelta

        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        command, *args = shlex.split(self.cmd)
        parameters = StdioServerParameters(command=command, args=args, env=self.env, cwd=self.cwd)
        async with (
            stdio_client(parameters) as (read, write),
            ClientSession(read, write, timedelta(seconds=MCP_SESSION_TIMEOUT)) as session,
        ):
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def sse_session(url: str) -> AsyncIterator[Any]:
    """An initialized client session over MCP's SSE transport (``url``: the ``/sse`` endpoint), the
    transport the official e2e MCP servers and clients speak."""
    from datetime import timedelta

    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async with (
        sse_client(url, timeout=MCP_SESSION_TIMEOUT) as (read, write),
        ClientSession(read, write, timedelta(seconds=MCP_SESSION_TIMEOUT)) as session,
    ):
        await session.initialize()
        yield session


class McpHttpCommand(ServiceCommand):
    """A server command serving MCP on its ``PORT``: streamable HTTP at ``MCP_PATH``, or (``sse``) the
    SSE transport at ``SSE_PATH``, as the official e2e MCP servers do."""

    sse: bool = False

    @contextlib.asynccontextmanager
    async def mcp_session(self) -> AsyncIterator[Any]:
        if self.sse:
            async with sse_session(self.base_url + SSE_PATH) as session:
                yield session
            return
        async with open_session(self.base_url + MCP_PATH, timeout=MCP_SESSION_TIMEOUT) as session:
            yield session


class McpUrl(ServiceUrl):
    """An MCP server already running at ``url``: its streamable HTTP endpoint, or its SSE endpoint
    when the URL ends in ``/sse``."""

    def __init__(self, url: str, name: str | None = None) -> None:
        super().__init__("server", url, name)

    def start(self, env: dict[str, str]) -> str:
        return self.url

    @contextlib.asynccontextmanager
    async def mcp_session(self) -> AsyncIterator[Any]:
        try:
            if self.url.rstrip("/").endswith(SSE_PATH):
                async with sse_session(self.url) as session:
                    yield session
                return
            async with open_session(self.url, timeout=MCP_SESSION_TIMEOUT) as session:
                yield session
        except (OSError, httpx.HTTPError) as exc:
            raise TargetError(f"MCP server at {self.url} cannot be reached: {exc}") from exc


# -- the harness's server side for client targets ---------------------------------------------------


@dataclass
class ClientFront:
    """The harness's (hostile) server app as a paid tool server on loopback, for an MCP client target:
    streamable HTTP at ``MCP_PATH`` and SSE at ``SSE_PATH`` (``both_wires``); ``tools`` are the names
    the cases have sent the client to (listed)."""

    app: Any  # an ASGI app (the hostile server's)
    tools: set[str] = field(default_factory=set)
    services: Any = None
    url: str = ""  # the streamable HTTP endpoint
    text_only: bool = False  # a case's choice: payment-required results without structuredContent

    def reset(self) -> None:
        self.text_only = False

    async def _hook(self, call: ToolCall, forward: Forward) -> dict[str, Any] | None:
        if not self.text_only:
            return None
        result = await forward(call)
        return (
            {k: v for k, v in result.items() if k != "structuredContent"} if result.get("isError") else result
        )

    def start(self) -> str:
        from ..http.runner import LOOPBACK, Services

        server = app_tool_server(
            self.app, lambda: sorted(self.tools), name="x402sim conformance harness", hooks=(self._hook,)
        )
        self.services = Services(LOOPBACK)
        base = self.services.add("mcp-front", both_wires(server))
        self.services.start()
        self.url = base + MCP_PATH
        return self.url

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None


def both_wires(server: Server[Any, Any]) -> Asgi:
    """``server`` over streamable HTTP at ``MCP_PATH`` and over SSE at ``SSE_PATH`` (messages posted to
    ``/messages/``), the transport the official e2e MCP clients connect with."""
    from mcp.server.sse import SseServerTransport
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    from ..transports.mcp_wire import streamable_http_app

    streamable = streamable_http_app(server)
    sse = SseServerTransport("/messages/")

    async def handle_sse(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return Response()

    legacy = Starlette(
        routes=[
            Route(SSE_PATH, handle_sse, methods=["GET"]),
            Mount("/messages/", app=sse.handle_post_message),
        ]
    )

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan" or scope.get("path", "").startswith(MCP_PATH):
            await streamable(scope, receive, send)
        else:
            await legacy(scope, receive, send)

    return app


async def _mcp_pay(env: Mapping[str, str], bridge_class: type[McpBridge]) -> dict:
    from ..actors.client import SpendPolicy
    from ..http.client import AsyncPayingClient
    from ..http.serve import client_env, client_verdict

    parsed = client_env(env)
    tool = env["ENDPOINT_PATH"].removeprefix("/")
    url = env.get(MCP_SERVER_URL) or env["RESOURCE_SERVER_URL"].rstrip("/") + MCP_PATH
    async with open_session(url, timeout=MCP_SESSION_TIMEOUT) as session:
        bridge = bridge_class(session)
        policy = SpendPolicy(max_price=parsed.max_amount)
        client = AsyncPayingClient(parsed.key, networks=(parsed.network,), policy=policy, transport=bridge)
        try:
            result = await client.get(f"{BRIDGE_BASE_URL}/{tool}")
        finally:
            await client.aclose()
    return client_verdict(result)


def mcp_pay_from_env(env: dict[str, str], bridge_class: type[McpBridge] | None = None) -> dict:
    """What a paying MCP client does with the e2e client environment: connect to the MCP server
    (``MCP_SERVER_URL``, else ``RESOURCE_SERVER_URL`` + ``/mcp``), call the tool ``ENDPOINT_PATH``,
    pay a payment-required result once (the reference client role, unchanged, its calls carried by
    ``bridge_class``, a control's ``McpBridge``), and return the e2e verdict."""
    import asyncio

    try:
        return asyncio.run(_mcp_pay(env, bridge_class or McpBridge))
    except Exception as exc:  # the verdict says what went wrong, as a client command would
        error = f"{type(exc).__name__}: {exc}"
        return {"success": False, "data": error, "status_code": None, "payment_response": None}


async def listed_tools(session) -> dict[str, dict[str, Any]]:
    """The tools ``session``'s server lists, each with the arguments the bridge sends it by default
    (``sample_arguments`` of its input schema)."""
    listing = await session.list_tools()
    return {tool.name: sample_arguments(tool.inputSchema) for tool in listing.tools}
