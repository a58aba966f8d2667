"""Paid MCP tools, sans-IO: a tool's declaration, the route it is sold as, and the role that sells them.

A ``PaidTool`` says what a tool is (name, description, JSON Schemas, an example) and what it costs:
``price`` is None (free), an amount in the asset's atomic units (``exact`` / EIP-3009), or a ``Route``
naming any mechanism the resource server speaks (``scheme``, ``transfer_method``, ``usage`` for
``upto``, ``min_deposit`` and the cadence for ``batch-settlement``). Its ``run`` function takes the
arguments dict and returns the result (a string, a dict or a list; a coroutine is awaited), or
raises: a raised tool error is answered as an MCP error result and nothing is settled.

Rules:

* A tool is the route ``POST /<name>`` (``mcp_carry.tool_route_key``). A tool's ``Route`` is taken
  with its key replaced by that one: the name alone says which route it is.
* Tool names are MCP's (1-128 of ``[A-Za-z0-9_.-]``), and never ``.`` or ``..`` (a dot segment would
  name another path). Two tools with one name, or names differing only in letter case (the role
  matches a priced path whatever its case), are refused when the set is built.
* A paid tool lists itself for the Bazaar unless ``listed=False``: its route's ``discovery`` is
  ``protocol.bazaar.mcp_tool_listing`` of its name, input schema, description, example arguments
  and example answer (``output_example``, with ``output_schema``), transport ``streamable-http``.
  So its 402s carry ``extensions.bazaar`` and a settled call gets it cataloged by the facilitator,
  keyed by the resource URL and the tool. A tool whose ``price`` is a ``Route`` with its own
  ``discovery`` keeps that one. The listing is built (and validated) when the tool is made: a tool
  whose pieces do not make a valid listing is refused then.
* ``ToolSellingServer`` is the ``ResourceServer`` with two changes, the resource its 402s name and
  the transport its listings name: with ``base_url`` ``mcp://tool`` (in process, stdio) each tool's
  own ``mcp://tool/<name>``, as the SDKs name it, and the listings name no transport (the spec's
  are streamable-http and sse only); with any other base (a streamable HTTP endpoint ``U``) ``U``
  itself, one endpoint serving every tool (as the bazaar extension's MCP example does). Everything
  else is the role's.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actors.messages import HttpResponse
from ..actors.server import ResourceServer, Route
from ..protocol import ProtocolError
from ..protocol.bazaar import BAZAAR, BazaarExtension, mcp_tool_listing
from .mcp_carry import TOOL_BASE_URL, tool_answer, tool_failure, tool_route_key, valid_tool_name

__all__ = [
    "PaidTool",
    "ToolSellingServer",
    "run_tool",
    "tool_routes",
    "tools_by_name",
]

ToolFunction = Callable[[dict[str, Any]], Any]
OBJECT_SCHEMA: Mapping[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class PaidTool:
    """One tool: ``name``, what it costs (``price``: None free, atomic units, or a ``Route``), what it
    says of itself (``description``, ``input_schema``, ``output_schema``, ``example`` arguments, an
    ``output_example`` answer), whether a paid tool is ``listed`` in the Bazaar, and the function
    that runs it (``run(arguments)``, sync or async)."""

    name: str
    run: ToolFunction
    price: int | Route | None = None
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: dict(OBJECT_SCHEMA))
    output_schema: Mapping[str, Any] | None = None
    example: Mapping[str, Any] | None = None
    output_example: Any = None
    listed: bool = True
    _listing: BazaarExtension | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not valid_tool_name(self.name) or self.name in (".", ".."):
            raise ValueError(f"tool name {self.name!r}: expected 1-128 of A-Z a-z 0-9 _ . - (not . or ..)")
        if not callable(self.run):
            raise ValueError(f"tool {self.name!r}: run must be a function of the arguments dict")
        price = self.price
        if not (price is None or isinstance(price, Route)) and (
            isinstance(price, bool) or not isinstance(price, int) or price < 0
        ):
            raise ValueError(f"tool {self.name!r}: price must be atomic units (an integer >= 0) or a Route")
        if not isinstance(self.input_schema, Mapping) or self.input_schema.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: input_schema must be a JSON Schema of type 'object'")
        declared = self.price.price if isinstance(self.price, Route) else self.price
        if self.listed and declared:
            object.__setattr__(self, "_listing", self._build_listing())

    def _build_listing(self) -> BazaarExtension:
        try:
            return mcp_tool_listing(
                self.name,
                dict(self.input_schema),
                description=self.description or None,
                example=dict(self.example) if self.example is not None else None,
                output=self.output_example,
                output_schema=dict(self.output_schema) if self.output_schema is not None else None,
            )
        except ProtocolError as exc:
            raise ValueError(f"tool {self.name!r}: its Bazaar listing is not valid: {exc}") from None

    @property
    def listing(self) -> BazaarExtension | None:
        """The Bazaar listing its 402s declare (None: free, or unlisted)."""
        route = self.route
        discovery = route.discovery if route is not None else None
        return discovery if isinstance(discovery, BazaarExtension) else None

    @property
    def route(self) -> Route | None:
        """The route this tool is sold as (None: free)."""
        key = tool_route_key(self.name)
        if self.price is None:
            return None
        if isinstance(self.price, Route):
            route = dataclasses.replace(self.price, key=key)
            if not route.description and self.description:
                route = dataclasses.replace(route, description=self.description)
            if route.discovery is None and self._listing is not None:
                route = dataclasses.replace(route, discovery=self._listing)
            return route
        return Route(key, self.price, description=self.description, discovery=self._listing)

    @property
    def paid(self) -> bool:
        route = self.route
        return route is not None and route.price > 0


def tools_by_name(tools: Iterable[PaidTool]) -> dict[str, PaidTool]:
    """``tools`` by exact name; ``ValueError`` for a name given twice or differing only in case."""
    named: dict[str, PaidTool] = {}
    folded: dict[str, str] = {}
    for tool in tools:
        if not isinstance(tool, PaidTool):
            raise ValueError(f"expected PaidTool values, got {type(tool).__name__}")
        twin = folded.get(tool.name.casefold())
        if twin is not None:
            raise ValueError(f"tools {twin!r} and {tool.name!r}: names must differ in more than letter case")
        folded[tool.name.casefold()] = tool.name
        named[tool.name] = tool
    return named


def tool_routes(tools: Iterable[PaidTool]) -> dict[str, Route]:
    """The routes ``tools`` are sold as (free tools have none), by key."""
    routes = {}
    for tool in tools_by_name(tools).values():
        route = tool.route
        if route is not None:
            routes[route.key] = route
    return routes


@dataclass
class ToolSellingServer(ResourceServer):
    """A ``ResourceServer`` selling MCP tools: its 402s name ``mcp://tool/<name>``, or the MCP
    endpoint it is served at (see the module's rules)."""

    base_url: str = TOOL_BASE_URL

    def resource_url(self, route: Route) -> str:
        if self.base_url.startswith("mcp:"):
            return super().resource_url(route)
        return self.base_url

    def extensions(self, route: Route | None = None) -> dict[str, Any] | None:
        declared = super().extensions(route)
        listing = (declared or {}).get(BAZAAR)
        if self.base_url.startswith("mcp:") and isinstance(listing, dict):
            tool_input = {k: v for k, v in listing["info"]["input"].items() if k != "transport"}
            info = {**listing["info"], "input": tool_input}
            declared = {**(declared or {}), BAZAAR: {**listing, "info": info}}
        return declared


async def run_tool(tool: PaidTool, arguments: dict[str, Any]) -> HttpResponse:
    """``tool`` run on ``arguments``, as the answer to the role's ``Handle``: its result
    (``tool_answer``; a dict is also the structured content) or, when it raises, ``tool_failure``
    naming the error (a status the role does not settle)."""
    try:
        result = tool.run(arguments)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # any tool error is the tool's answer, never the server's crash
        return tool_failure(f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}")
    if isinstance(result, HttpResponse):
        return result
    if not isinstance(result, str | dict | list | int | float | bool) and result is not None:
        return tool_failure(f"tool {tool.name!r} returned a {type(result).__name__}, not str, dict or list")
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return tool_failure(f"tool {tool.name!r} returned what JSON cannot carry: {exc}")
    return tool_answer("" if result is None else result)
