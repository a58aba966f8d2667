"""x402 over MCP as a product: a paid tool server and a paying MCP client, on the official SDK.

``mcp_tools`` declares tools and the role that sells them; ``mcp_carry`` translates a tool call to
the request the roles read and back; ``mcp_wire`` moves calls over MCP. This module wires them:

* ``PaidToolServer(role, tools, facilitator)`` answers each ``tools/call`` by running
  ``role.handle(tool_request(call), now)`` through the HTTP server's own driver
  (``x402sim.http.server_app.ServerDriver``): ``Verify``/``Settle`` go to the facilitator (an
  ``x402sim.http.FacilitatorClient`` or its URL, or any object with ``verify``/``settle``, sync or
  async, such as the testbed's), ``Handle`` runs the tool. Its ``server`` is the MCP server
  (``mcp_wire.tool_server``); ``http_app()`` serves it over streamable HTTP, ``run_stdio()`` on
  stdin/stdout, and ``channel_work(now)`` is one round of the role's batch-settlement cadence
  (``http_app(channel_work_every=...)`` runs it on the app's loop, as the HTTP server does).
* ``McpPayingClient`` is the HTTP paying client's set-up (``x402sim.http.client.PayingBase``: the
  same keyword arguments, governor, trust settings, chain, channels) with ``call_tool(target, name,
  arguments)``: the client role's ``fetch`` of ``POST /<name>`` carried as a tool call, so a
  payment-required result is paid once and the result comes back as a ``FetchResult`` whose
  ``settlement`` is ``_meta["x402/payment-response"]``.

Rules:

* Dispatch is by the exact tool name. A name the server does not list is an MCP error result
  (``isError``, "unknown tool") before the role sees anything: another spelling of a paid tool's
  name (another letter case) never runs it, paid or free.
* A malformed ``_meta["x402/payment"]`` for a paid tool is a JSON-RPC error (``-32602``) and nothing
  runs; a tool that raises is an error result and nothing is settled (the role's rules for a handler
  status >= 400).
* The governor of a paying client judges a tool call as a request for the resource the 402 names:
  host and path of ``mcp://tool/<name>`` (``tool/<name>``), or of the MCP endpoint URL.
* A JSON-RPC error or a broken connection on the paid call reaches the role as ``Unreachable``, so
  the payment is recorded with outcome ``unknown``; the SDK's error then reaches the caller.

Needs ``x402sim[agents]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Union

try:
    from mcp import ClientSession, types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import McpError
except ModuleNotFoundError as exc:  # pragma: no cover - the extra's absence is tested elsewhere
    from ..extras import missing

    raise missing("agents", "x402sim.transports.mcp") from exc

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

from ..actors.client import FetchResult, answer_with_approver
from ..actors.driver import BaseDriver, arun
from ..actors.messages import Approval, Approve, HttpRequest, HttpResponse, Send, Unreachable
from ..actors.server import ResourceServer
from ..actors.server_channels import ChannelWork
from ..http.client import DEFAULT_TIMEOUT, FacilitatorClient, PayingBase
from ..http.server_app import ServerDriver, channel_rounds
from .mcp_carry import (
    ToolCall,
    call_of_request,
    response_of_result,
    result_of_response,
    tool_request,
    tool_route_key,
)
from .mcp_tools import PaidTool, run_tool, tools_by_name
from .mcp_wire import call_tool, open_session, run_stdio, streamable_http_app, tool_server

__all__ = ["McpPayingClient", "PaidToolServer", "Target", "tool_declaration", "unknown_tool"]

Target = Union[str, Server, "FastMCP", ClientSession]


def tool_declaration(tool: PaidTool) -> types.Tool:
    """What ``tools/list`` says of ``tool`` (its example arguments in ``_meta["example"]``)."""
    return types.Tool(
        name=tool.name,
        description=tool.description or None,
        inputSchema=dict(tool.input_schema),
        outputSchema=dict(tool.output_schema) if tool.output_schema is not None else None,
        _meta={"example": dict(tool.example)} if tool.example is not None else None,
    )


def unknown_tool(name: str) -> dict[str, Any]:
    """The error result for a call naming no tool of the server."""
    return {"isError": True, "content": [{"type": "text", "text": f"unknown tool {name!r}"}]}


class _Awaited:
    """A facilitator with plain ``verify``/``settle`` methods (the testbed's), as ``ServerDriver``
    awaits them."""

    def __init__(self, facilitator: Any) -> None:
        self.facilitator = facilitator

    async def verify(self, payload, requirements):
        return self.facilitator.verify(payload, requirements)

    async def settle(self, payload, requirements):
        return self.facilitator.settle(payload, requirements)


def _facilitator(facilitator: Any, timeout: float) -> Any:
    if isinstance(facilitator, str):
        return FacilitatorClient(facilitator, timeout=timeout)
    if not (hasattr(facilitator, "verify") and hasattr(facilitator, "settle")):
        raise ValueError("facilitator: expected a URL, a FacilitatorClient or an object with verify/settle")
    if inspect.iscoroutinefunction(facilitator.verify):
        return facilitator
    return _Awaited(facilitator)


async def _no_application(request: HttpRequest) -> HttpResponse:
    raise AssertionError("channel work runs no tool")  # the role yields no Handle there


class PaidToolServer:
    """``tools`` sold by ``role`` (a ``ResourceServer``, e.g. ``mcp_tools.ToolSellingServer``, whose
    routes are the paid tools' ``tool_routes``), settled through ``facilitator``; ``clock`` is the
    time the role is given."""

    def __init__(
        self,
        role: ResourceServer,
        tools: Iterable[PaidTool],
        facilitator: Any,
        *,
        name: str = "x402sim-tools",
        clock: Callable[[], float] = time.time,
        facilitator_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.role = role
        self.tools = tools_by_name(tools)
        for tool in self.tools.values():
            key = tool_route_key(tool.name)
            route = role.routes.get(key)
            if tool.paid and route is None:
                raise ValueError(f"tool {tool.name!r} has a price but the role sells no route {key!r}")
            if not tool.paid and route is not None and route.price > 0:
                raise ValueError(f"tool {tool.name!r} is free but the role prices {key!r}")
        self.facilitator = _facilitator(facilitator, facilitator_timeout)
        self.clock = clock
        self.server: Server[Any, Any] = tool_server(
            name, [tool_declaration(t) for t in self.tools.values()], self.call
        )

    @property
    def pay_to(self) -> str:
        return self.role.pay_to

    async def call(self, call: ToolCall) -> dict[str, Any]:
        """The ``CallToolResult`` (a JSON object) for ``call``; raises ``McpProtocolError`` for a
        payment that cannot be read."""
        tool = self.tools.get(call.name)
        if tool is None:
            return unknown_tool(call.name)

        async def application(request: HttpRequest) -> HttpResponse:
            return await run_tool(tool, call.arguments)

        driver = ServerDriver(application, self.facilitator)
        answer = await arun(self.role.handle(tool_request(call), int(self.clock())), driver)
        return result_of_response(answer)

    async def channel_work(self, now: int | None = None) -> ChannelWork:
        """One round of the role's batch-settlement work due at ``now`` (default: the clock)."""
        when = int(self.clock()) if now is None else now
        return await arun(self.role.channel_work(when), ServerDriver(_no_application, self.facilitator))

    def http_app(self, *, channel_work_every: float | None = None):
        """The server over streamable HTTP at ``/mcp``; with ``channel_work_every`` seconds and
        batch-settlement tools, ``channel_work`` runs that often on the app's loop (what it did or
        failed goes to stderr)."""
        app = streamable_http_app(self.server)
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(the_app) -> AsyncIterator[None]:
            async with inner(the_app), self._serving(channel_work_every):
                yield

        app.router.lifespan_context = lifespan
        return app

    @contextlib.asynccontextmanager
    async def _serving(self, channel_work_every: float | None) -> AsyncIterator[None]:
        """The channel rounds while serving (``http.server_app.channel_rounds``), then the facilitator
        client closed."""
        try:
            async with channel_rounds(self.role, channel_work_every, self.channel_work):
                yield
        finally:
            if isinstance(self.facilitator, FacilitatorClient):
                await self.facilitator.aclose()

    async def run_stdio(self, *, channel_work_every: float | None = None) -> None:
        """Serve on this process's stdin and stdout until stdin closes (with ``channel_work_every``
        seconds and batch-settlement tools, running the channel work meanwhile)."""
        async with self._serving(channel_work_every):
            await run_stdio(self.server)


class _ToolCallDriver(BaseDriver):
    """The paying MCP client's answers: a request is the tool call it stands for, sent on
    ``session``; an approval is asked of the client's governor's approver at its clock."""

    world = "MCP client"

    def __init__(self, paying: McpPayingClient, session: ClientSession) -> None:
        self.paying, self.session = paying, session

    async def send(self, effect: Send) -> HttpResponse:
        call = call_of_request(effect.request)
        try:
            result = await call_tool(self.session, call)
        except McpError as exc:
            raise Unreachable("tool server", str(exc), may_have_landed=True, cause=exc) from exc
        except (TimeoutError, OSError) as exc:
            raise Unreachable(
                "tool server", str(exc) or type(exc).__name__, may_have_landed=True, cause=exc
            ) from exc
        return response_of_result(result)

    async def approve(self, effect: Approve) -> Approval:
        return answer_with_approver(self.paying.role, effect, int(self.paying.clock()))


class McpPayingClient(PayingBase):
    """A paying MCP client: ``await call_tool(target, name, arguments)`` pays a payment-required
    result once. ``target``: an open ``ClientSession``, an MCP ``Server`` (in memory), an
    ``http(s)://`` URL (streamable HTTP) or a command line (stdio, ``env`` its environment).
    Keyword arguments are the HTTP paying clients' (``networks`` required, ``policy``, ``governor``,
    ``agent``, ``seed``, ``clock``, trust settings, ``chain``, ``channel_store``, ``deposit_policy``);
    ``timeout`` bounds each MCP call."""

    def __init__(
        self,
        key: bytes | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(key, **kwargs)
        self.timeout = timeout
        self.env = env

    @contextlib.asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[ClientSession]:
        """An initialized session with ``target`` (itself when it is one already)."""
        if isinstance(target, ClientSession):
            yield target
            return
        async with open_session(target, timeout=self.timeout, env=self.env) as opened:
            yield opened

    async def call_tool(
        self, target: Target, name: str, arguments: dict[str, Any] | None = None
    ) -> FetchResult:
        """Call tool ``name`` with ``arguments``, paying once if it asks; the ``FetchResult``'s body
        is the ``CallToolResult`` without ``_meta`` (JSON), its ``settlement`` the payment response."""
        body = json.dumps(arguments or {}, separators=(",", ":")).encode()
        request = HttpRequest("POST", f"/{name}", (("Content-Type", "application/json"),), body)
        async with self.session(target) as session:
            try:
                return await arun(self.role.fetch(request, int(self.clock())), _ToolCallDriver(self, session))
            except Unreachable as exc:
                raise (exc.cause if exc.cause is not None else exc) from None

    def call_tool_sync(
        self, target: Target, name: str, arguments: dict[str, Any] | None = None
    ) -> FetchResult:
        """``call_tool`` for code without an event loop (a session opened for this call)."""
        return asyncio.run(self.call_tool(target, name, arguments))


def is_unknown_tool(result: FetchResult) -> bool:
    """Whether ``result`` is a server's answer that it lists no such tool."""
    try:
        body = result.json()
    except ValueError:
        return False
    content = body.get("content") if isinstance(body, dict) else None
    text = (
        content[0].get("text", "")
        if isinstance(content, list) and content and isinstance(content[0], dict)
        else ""
    )
    return bool(body.get("isError")) and isinstance(text, str) and text.startswith("unknown tool ")
