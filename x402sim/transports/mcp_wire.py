"""MCP on the official ``mcp`` SDK: a server around one call handler, and a client session.

``mcp_carry`` says what an x402 tool call means; this module moves tool calls over MCP, with the SDK's
own transports (in memory, stdio, streamable HTTP). It knows nothing of payments:

* ``tool_server(name, tools, on_call)`` is an MCP server (``mcp.server.lowlevel.Server``) that lists
  ``tools`` and answers every ``tools/call`` with ``on_call(ToolCall)``, the call's ``_meta`` included.
  ``on_call`` returns the ``CallToolResult`` as a JSON object; raising ``McpProtocolError`` answers
  the call with that JSON-RPC error instead; any other exception is the SDK's (an error result).
  Arguments are not checked against the tool's input schema here: the handler sees what was sent.
* ``streamable_http_app(server)`` serves it over streamable HTTP at ``MCP_PATH`` (an ASGI app with
  its lifespan); ``run_stdio(server)`` serves it on stdin/stdout.
* ``open_session(target)`` opens a client session: ``target`` is an ``http(s)://`` URL (streamable
  HTTP), a command line (stdio, e.g. ``"python -m x402sim serve mcp --stdio ..."``), or a ``Server``
  (in memory). ``call_tool(session, call)`` sends one call, ``_meta`` included, and returns the
  result as a JSON object.

Needs ``x402sim[agents]``.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

try:
    from mcp import ClientSession, StdioServerParameters, types
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.shared.exceptions import McpError
    from mcp.shared.memory import create_connected_server_and_client_session
except ModuleNotFoundError as exc:  # pragma: no cover - the extra's absence is tested elsewhere
    from ..extras import missing

    raise missing("agents", "x402sim.transports.mcp_wire") from exc

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from .mcp_carry import McpProtocolError, ToolCall

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

__all__ = [
    "MCP_PATH",
    "CallHandler",
    "call_tool",
    "open_session",
    "run_stdio",
    "streamable_http_app",
    "tool_server",
]

MCP_PATH = "/mcp"
CallHandler = Callable[[ToolCall], Awaitable[dict[str, Any]]]


def _meta_of(params: types.CallToolRequestParams) -> dict[str, Any] | None:
    meta = params.meta
    if meta is None:
        return None
    return meta.model_dump(by_alias=True, exclude_none=True, mode="json")


def tool_server(
    name: str,
    tools: Sequence[types.Tool] | Callable[[], Sequence[types.Tool]],
    on_call: CallHandler,
    *,
    version: str | None = None,
) -> Server[Any, Any]:
    """An MCP server listing ``tools`` (or what a function of none gives, asked at each listing) and
    answering each ``tools/call`` with ``on_call``."""
    server: Server[Any, Any] = Server(name, version=version)

    @server.list_tools()
    async def _list_tools() -> list[types.Tool]:
        return list(tools() if callable(tools) else tools)

    async def _call(request: types.CallToolRequest) -> types.ServerResult:
        params = request.params
        call = ToolCall(params.name, dict(params.arguments or {}), _meta_of(params))
        try:
            result = await on_call(call)
        except McpProtocolError as exc:
            raise McpError(types.ErrorData(code=exc.code, message=str(exc))) from None
        return types.ServerResult(types.CallToolResult.model_validate(result))

    server.request_handlers[types.CallToolRequest] = _call
    return server


def streamable_http_app(server: Server[Any, Any], *, stateless: bool = True) -> Starlette:
    """``server`` over streamable HTTP at ``MCP_PATH`` (JSON answers; no session kept by default)."""
    manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=stateless)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    # A Route at exactly MCP_PATH: a Mount there answers every POST to ``/mcp`` with a 307 to ``/mcp/``,
    # which doubled each MCP exchange's round trips (benchmarks/paid_tool_calls.py).
    return Starlette(routes=[Route(MCP_PATH, endpoint=_AsgiEndpoint(manager))], lifespan=lifespan)


class _AsgiEndpoint:
    """The session manager as a plain ASGI app (Starlette treats a non-function endpoint as one)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope, receive, send) -> None:
        await self.manager.handle_request(scope, receive, send)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: building one reads the CA bundle, about 50 ms that
    every session over HTTP paid before (benchmarks/paid_tool_calls.py)."""
    return httpx.create_ssl_context()


async def run_stdio(server: Server[Any, Any]) -> None:
    """Serve ``server`` on this process's stdin and stdout until stdin closes."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


@contextlib.asynccontextmanager
async def open_session(
    target: str | Server[Any, Any] | FastMCP, *, timeout: float = 30.0, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized client session with ``target``: a URL (streamable HTTP), a command line
    (stdio; ``env`` its environment) or a ``Server`` (in memory; a ``FastMCP`` server too).
    ``timeout`` bounds each call."""
    read_timeout = timedelta(seconds=timeout)
    if not isinstance(target, str):  # a Server, or a FastMCP one
        async with create_connected_server_and_client_session(target, read_timeout_seconds=read_timeout) as s:
            yield s
        return
    async with contextlib.AsyncExitStack() as stack:
        if target.startswith(("http://", "https://")):
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, verify=_tls_context()))
            streams = await stack.enter_async_context(streamable_http_client(target, http_client=http))
        else:
            command, *args = shlex.split(target)
            params = StdioServerParameters(command=command, args=args, env=env)
            streams = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1], read_timeout))
        await session.initialize()
        yield session


async def call_tool(session: ClientSession, call: ToolCall) -> dict[str, Any]:
    """Send ``call`` (its ``_meta`` too) and return the ``CallToolResult`` as a JSON object. A
    JSON-RPC error answer raises the SDK's ``McpError``."""
    result = await session.call_tool(call.name, call.arguments, meta=call.meta)
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")
