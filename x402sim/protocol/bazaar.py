"""The ``bazaar`` extension (discovery): listings of paid HTTP endpoints and MCP tools, and the
discovery API's answers (no I/O).

A server puts ``extensions["bazaar"] = {info, schema, routeTemplate?}`` in its 402; a client echoes
it into its payment; the facilitator validates it and catalogs it, and answers
``GET /discovery/resources`` and ``GET /discovery/search``.

Rules:

* ``info`` must validate against ``schema`` (JSON Schema Draft 2020-12, ``$schema`` optional but, when
  given, that dialect). A schema that references anything outside itself (``$ref`` / ``$id`` not a
  ``#`` fragment) is refused before it is compiled: a facilitator never fetches what a payment names.
* Then the spec's invariants hold whatever the schema says: ``input.type`` is ``http`` or ``mcp``;
  an HTTP input names a method, GET/HEAD/DELETE without ``bodyType``, POST/PUT/PATCH with
  ``bodyType`` (json, form-data, text) and ``body``; an MCP input names its tool and carries an
  object ``inputSchema``, its ``transport`` (if any) is streamable-http or sse.
* The tool's name: the spec says ``input.tool``, both official SDKs write and read ``input.toolName``.
  Listings built here carry both (equal); a listing read here may carry either, or both when equal.
* ``routeTemplate`` (``/users/:id``) is kept only when it is non-empty, starts with ``/``, uses only
  ``[A-Za-z0-9_/:.\\-~%]`` and, percent-decoded until nothing changes (at most
  ``ROUTE_TEMPLATE_DECODE_PASSES`` passes), holds no ``..`` and no ``://``; otherwise it is ignored
  and the concrete URL path keys the listing (the spec's fallback).
* Every malformed input raises ``ProtocolError`` naming the field.
* The discovery answers use the SDK clients' wire names: a list is ``{x402Version, items,
  pagination: {limit, offset, total}}``, a search ``{x402Version, resources, partialResults,
  pagination: {limit, cursor}}`` (``cursor`` null on the last page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from . import _json
from .errors import ProtocolError, join_where
from .models import JsonObject, NonEmptyStr, WireModel

__all__ = [
    "BAZAAR",
    "BODY_METHODS",
    "QUERY_METHODS",
    "SCHEMA_DIALECT",
    "BazaarExtension",
    "DiscoveryInfo",
    "DiscoveryItem",
    "DiscoveryList",
    "DiscoverySearch",
    "HttpDeclaration",
    "HttpInput",
    "ListPagination",
    "ListQuery",
    "McpInput",
    "Output",
    "SearchPagination",
    "SearchQuery",
    "bazaar_status",
    "http_listing",
    "listing_of",
    "mcp_tool_listing",
    "parse_list_query",
    "parse_search_query",
    "read_listing",
    "schema_problem",
    "valid_route_template",
]

BAZAAR = "bazaar"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
QUERY_METHODS = ("GET", "HEAD", "DELETE")
BODY_METHODS = ("POST", "PUT", "PATCH")
BODY_TYPES = ("json", "form-data", "text")
MCP_TRANSPORTS = ("streamable-http", "sse")
RESOURCE_TYPES = ("http", "mcp")
ROUTE_TEMPLATE_DECODE_PASSES = 5
MAX_SCHEMA_BYTES = 32 * 1024  # a listing's schema, as compact JSON
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_ROUTE_TEMPLATE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/:.-~%")


# -- the listing ---------------------------------------------------------------------------------------------


class HttpInput(WireModel):
    """``info.input`` of an HTTP endpoint: query methods carry ``queryParams``, body methods
    ``bodyType`` and ``body``; dynamic routes add ``pathParams``."""

    type: Literal["http"]
    method: str
    query_params: JsonObject | None = None
    path_params: JsonObject | None = None
    headers: dict[str, str] | None = None
    body_type: str | None = None
    body: Any = None

    @model_validator(mode="after")
    def _method_rules(self) -> Self:
        if self.method in QUERY_METHODS:
            if self.body_type is not None:
                raise PydanticCustomError("bazaar", f"{self.method} takes no bodyType (a query method)")
        elif self.method in BODY_METHODS:
            if self.body_type not in BODY_TYPES:
                raise PydanticCustomError("bazaar", f"bodyType must be one of {', '.join(BODY_TYPES)}")
            if self.body is None:
                raise PydanticCustomError("bazaar", f"{self.method} needs a body example")
        else:
            methods = ", ".join(QUERY_METHODS + BODY_METHODS)
            raise PydanticCustomError("bazaar", f"method {self.method!r} is not one of {methods}")
        return self


class McpInput(WireModel):
    """``info.input`` of an MCP tool (see the module's rules on ``tool`` / ``toolName``)."""

    type: Literal["mcp"]
    tool: str | None = None
    tool_name: str | None = None
    description: str | None = None
    transport: str | None = None
    input_schema: JsonObject
    example: JsonObject | None = None

    @model_validator(mode="after")
    def _tool_rules(self) -> Self:
        names = {n for n in (self.tool, self.tool_name) if n is not None}
        if not names or "" in names:
            raise PydanticCustomError("bazaar", "an MCP listing names its tool (input.tool)")
        if len(names) > 1:
            raise PydanticCustomError("bazaar", "input.tool and input.toolName name different tools")
        if self.transport is not None and self.transport not in MCP_TRANSPORTS:
            raise PydanticCustomError("bazaar", f"transport must be one of {', '.join(MCP_TRANSPORTS)}")
        return self

    @property
    def name(self) -> str:
        return self.tool or self.tool_name or ""


class Output(WireModel):
    """``info.output``: the answer's type (``json``, ``text``...), an optional format and example."""

    type: NonEmptyStr
    format: str | None = None
    example: Any = None


class DiscoveryInfo(WireModel):
    input: Annotated[HttpInput | McpInput, Field(discriminator="type")]
    output: Output | None = None


class BazaarExtension(WireModel):
    """``extensions["bazaar"]``: ``info``, the JSON Schema that validates it, and (dynamic routes)
    the ``routeTemplate`` that keys it."""

    info: DiscoveryInfo
    schema_: JsonObject = Field(alias="schema")
    route_template: str | None = None

    @property
    def type(self) -> str:
        return self.info.input.type

    @property
    def tool(self) -> str | None:
        return self.info.input.name if isinstance(self.info.input, McpInput) else None

    @property
    def method(self) -> str:
        return self.info.input.method if isinstance(self.info.input, HttpInput) else ""


def _external_reference(node: Any) -> bool:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$id", "$dynamicRef") and not (
                isinstance(value, str) and value.startswith("#")
            ):
                return True
            if _external_reference(value):
                return True
    elif isinstance(node, list):
        return any(_external_reference(item) for item in node)
    return False


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot judge a listing (not an object, too large, another dialect, an
    external reference, not a valid schema), or None."""
    if not isinstance(schema, dict):
        return "expected a JSON Schema object"
    if len(json.dumps(schema, separators=(",", ":"))) > MAX_SCHEMA_BYTES:
        return f"larger than {MAX_SCHEMA_BYTES} bytes"
    dialect = schema.get("$schema")
    if dialect is not None and (not isinstance(dialect, str) or dialect.rstrip("#") != SCHEMA_DIALECT):
        return f"$schema must be {SCHEMA_DIALECT} (Draft 2020-12), got {str(dialect)[:80]!r}"
    if _external_reference(schema):
        return "references something outside itself ($ref/$id other than a #fragment)"
    import jsonschema  # here, not at the top: 60 ms that every process would pay at start-up

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid Draft 2020-12 schema: {exc.message}"
    return None


def read_listing(data: Any, where: str = "extensions.bazaar") -> BazaarExtension:
    """Validate a listing as a facilitator must before cataloging it (the module's rules);
    ``ProtocolError`` names what is wrong."""
    obj = _json.loads_object(_json.dumps(data, where), where) if isinstance(data, dict) else None
    if obj is None:
        raise ProtocolError(where, "expected a JSON object")
    for key in ("info", "schema"):
        if not isinstance(obj.get(key), dict):
            raise ProtocolError(join_where(where, key), "required object is missing")
    problem = schema_problem(obj["schema"])
    if problem is not None:
        raise ProtocolError(join_where(where, "schema"), problem)
    import jsonschema  # imported once schema_problem ran

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(obj["schema"]).iter_errors(obj["info"])
    )
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        raise ProtocolError(join_where(join_where(where, "info"), path), f"fails its schema: {error.message}")
    return BazaarExtension.from_wire(obj, where)


def _percent_decoded(text: str) -> str:
    """``text`` with each run of ``%XX`` escapes decoded as UTF-8 (bad bytes become U+FFFD), as URL
    decoders do; a ``%`` not followed by two hex digits stays."""
    return _ESCAPES.sub(
        lambda run: bytes.fromhex(run.group().replace("%", "")).decode("utf-8", "replace"), text
    )


def valid_route_template(value: Any) -> bool:
    """Whether ``value`` may key a catalog entry (see the module's rules)."""
    if not isinstance(value, str) or len(value) < 2 or not value.startswith("/"):
        return False
    if not set(value) <= _ROUTE_TEMPLATE_CHARS:
        return False
    decoded = value
    for _ in range(ROUTE_TEMPLATE_DECODE_PASSES):
        again = _percent_decoded(decoded)
        if again == decoded:
            return ".." not in decoded and "://" not in decoded
        decoded = again
    return False  # still changing: no canonical form to judge


# -- building listings ---------------------------------------------------------------------------------------


def _output(example: Any, schema: JsonObject | None, kind: str) -> tuple[Output, JsonObject]:
    example_schema: JsonObject = dict(schema or {})
    return (
        Output(type=kind, example=example),
        {
            "type": "object",
            "properties": {"type": {"type": "string"}, "example": example_schema},
            "required": ["type"],
        },
    )


def _extension(
    input_: JsonObject, input_schema: JsonObject, output: tuple[Output, JsonObject] | None
) -> BazaarExtension:
    properties: JsonObject = {"input": input_schema}
    info: JsonObject = {"input": input_}
    if output is not None:
        info["output"] = output[0].to_wire()
        properties["output"] = output[1]
    schema = {"$schema": SCHEMA_DIALECT, "type": "object", "properties": properties, "required": ["input"]}
    return read_listing({"info": info, "schema": schema})


def http_listing(
    method: str,
    *,
    example: JsonObject | None = None,
    input_schema: JsonObject | None = None,
    body_type: str = "json",
    headers: dict[str, str] | None = None,
    output: Any = None,
    output_schema: JsonObject | None = None,
    output_type: str = "json",
) -> BazaarExtension:
    """The listing of an HTTP endpoint called with ``method``: ``example`` is its query parameters
    (GET/HEAD/DELETE) or its body (POST/PUT/PATCH), ``input_schema`` the JSON Schema of those,
    ``output`` an example answer. ``ProtocolError`` when the pieces do not make a valid listing."""
    method = method.upper()
    properties: JsonObject = {
        "type": {"type": "string", "const": "http"},
        "method": {"type": "string", "enum": list(BODY_METHODS if method in BODY_METHODS else QUERY_METHODS)},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    input_: JsonObject = {"type": "http", "method": method}
    required = ["type", "method"]
    if method in BODY_METHODS:
        properties["bodyType"] = {"type": "string", "enum": list(BODY_TYPES)}
        properties["body"] = dict(input_schema or {})
        input_.update(bodyType=body_type, body=example if example is not None else {})
        required += ["bodyType", "body"]
    else:
        properties["queryParams"] = {"type": "object", **(input_schema or {})}
        if example:
            input_["queryParams"] = example
    if headers:
        input_["headers"] = headers
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return _extension(input_, schema, None if output is None else _output(output, output_schema, output_type))


def mcp_tool_listing(
    tool: str,
    input_schema: JsonObject,
    *,
    description: str | None = None,
    example: JsonObject | None = None,
    output: Any = None,
    output_schema: JsonObject | None = None,
    transport: str | None = "streamable-http",
) -> BazaarExtension:
    """The listing of the MCP tool ``tool``: ``input_schema`` is the schema its ``tools/list``
    declares, ``example`` example arguments, ``output`` an example answer (its JSON). The tool is
    named in ``input.tool`` (the spec) and ``input.toolName`` (the SDKs)."""
    properties: JsonObject = {
        "type": {"type": "string", "const": "mcp"},
        "tool": {"type": "string", "const": tool},
        "toolName": {"type": "string", "const": tool},
        "inputSchema": {"type": "object"},
    }
    input_: JsonObject = {"type": "mcp", "tool": tool, "toolName": tool, "inputSchema": input_schema}
    for key, value, kind in (
        ("description", description, {"type": "string"}),
        ("transport", transport, {"type": "string", "enum": list(MCP_TRANSPORTS)}),
        ("example", example, {"type": "object"}),
    ):
        if value is not None:
            input_[key] = value
            properties[key] = kind
    schema = {
        "type": "object",
        "properties": properties,
        "required": ["type", "tool", "inputSchema"],
        "additionalProperties": False,
    }
    return _extension(input_, schema, None if output is None else _output(output, output_schema, "json"))


@dataclass(frozen=True)
class HttpDeclaration:
    """What a route declares of itself for the Bazaar; its method comes from the route (see
    ``http_listing`` for the fields). Its listing is built and validated once per method."""

    example: JsonObject | None = None
    input_schema: JsonObject | None = None
    body_type: str = "json"
    headers: Mapping[str, str] | None = None
    output: Any = None
    output_schema: JsonObject | None = None
    output_type: str = "json"
    _built: dict[str, BazaarExtension] = field(default_factory=dict, init=False, repr=False, compare=False)

    def listing(self, method: str) -> BazaarExtension:
        method = method.upper()
        if method not in self._built:
            self._built[method] = self._build(method)
        return self._built[method]

    def _build(self, method: str) -> BazaarExtension:
        return http_listing(
            method,
            example=self.example,
            input_schema=self.input_schema,
            body_type=self.body_type,
            headers=dict(self.headers) if self.headers else None,
            output=self.output,
            output_schema=self.output_schema,
            output_type=self.output_type,
        )


def listing_of(declaration: HttpDeclaration | BazaarExtension, method: str) -> BazaarExtension:
    """The listing a route called with ``method`` declares: an ``HttpDeclaration`` built for that
    method, a ready listing (an MCP tool's) as it is."""
    return declaration if isinstance(declaration, BazaarExtension) else declaration.listing(method)


def bazaar_status(status: str, reason: str | None = None) -> JsonObject:
    """The ``bazaar`` entry of a facilitator's ``EXTENSION-RESPONSES``: ``success``, ``processing``
    or ``rejected`` (with ``rejectedReason``)."""
    entry: JsonObject = {"status": status}
    if reason:
        entry["rejectedReason"] = reason
    return {BAZAAR: entry}


# -- the discovery API ---------------------------------------------------------------------------------------


class DiscoveryItem(WireModel):
    """One catalog entry as ``/discovery/resources`` and ``/discovery/search`` list it."""

    resource: str
    type: str
    x402_version: int
    accepts: list[JsonObject]
    last_updated: str
    description: str | None = None
    mime_type: str | None = None
    service_name: str | None = None
    tags: list[str] | None = None
    icon_url: str | None = None
    extensions: JsonObject | None = None

    @property
    def listing(self) -> BazaarExtension | None:
        """Its bazaar listing, None when absent or malformed."""
        try:
            return BazaarExtension.from_wire((self.extensions or {})[BAZAAR])
        except (KeyError, ProtocolError):
            return None


class ListPagination(WireModel):
    limit: int
    offset: int
    total: int


class DiscoveryList(WireModel):
    """Answer of ``GET /discovery/resources``."""

    x402_version: int
    items: list[DiscoveryItem]
    pagination: ListPagination


class SearchPagination(WireModel):
    limit: int
    cursor: str | None = None


class DiscoverySearch(WireModel):
    """Answer of ``GET /discovery/search``."""

    x402_version: int
    resources: list[DiscoveryItem]
    partial_results: bool | None = None
    pagination: SearchPagination | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        if self.pagination is not None:
            wire["pagination"]["cursor"] = self.pagination.cursor  # null on the last page, not absent
        return wire


@dataclass(frozen=True)
class ListQuery:
    """Filters and a page of ``/discovery/resources`` (every filter None: not filtered)."""

    type: str | None = None
    pay_to: str | None = None
    scheme: str | None = None
    network: str | None = None
    extensions: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True)
class SearchQuery:
    """A ``/discovery/search``: the free-text ``query``, the list filters, a page size and the
    ``cursor`` a previous page gave (None: the first page)."""

    query: str
    filters: ListQuery = ListQuery()
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def _count(params: Mapping[str, str], name: str, default: int, least: int, most: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or not least <= int(raw) <= (
        most or int(raw)
    ):
        bound = f"{least}..{most}" if most else f"at least {least}"
        raise ProtocolError(f"query parameter {name}", f"expected an integer {bound}, got {raw[:40]!r}")
    return int(raw)


def _filters(params: Mapping[str, str], limit: int, offset: int) -> ListQuery:
    kind = params.get("type")
    if kind is not None and kind not in RESOURCE_TYPES:
        raise ProtocolError("query parameter type", f"expected http or mcp, got {kind[:40]!r}")
    for name in ("payTo", "scheme", "network", "extensions"):
        if params.get(name) == "":
            raise ProtocolError(f"query parameter {name}", "is empty")
    return ListQuery(
        kind,
        params.get("payTo"),
        params.get("scheme"),
        params.get("network"),
        params.get("extensions"),
        limit,
        offset,
    )


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """The query parameters of ``/discovery/resources`` (``type``, ``payTo``, ``scheme``,
    ``network``, ``extensions``, ``limit``, ``offset``); others are ignored."""
    limit = _count(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return _filters(params, limit, _count(params, "offset", 0, 0, None))


def parse_search_query(params: Mapping[str, str]) -> SearchQuery:
    """The query parameters of ``/discovery/search``: ``query`` (required), the list filters,
    ``limit`` and ``cursor`` (one this facilitator gave: a decimal offset)."""
    query = (params.get("query") or "").strip()
    if not query:
        raise ProtocolError("query parameter query", "required: the words to search for")
    cursor = params.get("cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 12):
        raise ProtocolError("query parameter cursor", f"not a cursor this facilitator gave: {cursor[:40]!r}")
    limit = _count(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return SearchQuery(query[:500], _filters(params, limit, 0), limit, cursor)
