"""Tools files for ``x402sim serve mcp``: which tools a reference server offers, what each costs and
answers, in TOML or JSON; and the demo tools served without a file.

TOML example (JSON has the same shape)::

    # what is sold, and for which token, as in a routes file (the CLI fills network and asset from
    # the chain it serves, or from --rpc-url); scheme, transfer_method and charge are defaults
    pay_to = "0x..."

    [[tools]]
    name = "weather"                 # MCP tool name: 1-128 of A-Z a-z 0-9 _ . -
    description = "Weather now in a city"
    price = 1000                     # atomic units; leave it out for a free tool
    input_schema = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
    output_schema = { type = "object" }          # optional
    example = { city = "Oslo" }                  # optional: example arguments, told in tools/list
    answer = { sky = "clear", celsius = 12 }     # what it answers: a fixed JSON value ...
    listed = true                    # in the Bazaar (the default for a priced tool): its 402s carry
                                     # a listing (schemas, example, a fixed answer as example output)

    [[tools]]
    name = "echo"
    echo = true                      # ... or its arguments, echoed ...

    [[tools]]
    name = "report"
    price = 5000
    scheme = "upto"                  # any key of a routes-file route: scheme, transfer_method,
    charge = "40%"                   # charge, pay_to, max_timeout_seconds, min_deposit, ...
    function = "mypackage.tools:report"          # ... or a Python function of the arguments dict

A tool says exactly one of ``answer``, ``echo = true`` and ``function``. ``listed = false`` keeps a
priced tool out of the Bazaar (``PaidTool.listed``); a listing that does not validate is refused
here. A ``function`` is imported when the file is loaded (sync or async; it returns a string, a
dict or a list, or raises for a tool error, which is not settled). The price keys are a routes-file
route's (``x402sim.http.routes_file``), checked by the same code: the tool is the route
``POST /<name>``.

Every problem is one ``ToolsFileError`` naming the file, the tool and the key.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..http.routes_file import RoutesConfig, RoutesFileError, parse_routes, read_data_file
from .mcp_carry import valid_tool_name
from .mcp_tools import PaidTool

__all__ = ["DEMO_TOOLS", "ToolsConfig", "ToolsFileError", "demo_tools", "load_tools", "parse_tools"]

_TOOL_KEYS = {
    "name",
    "description",
    "input_schema",
    "output_schema",
    "example",
    "answer",
    "echo",
    "function",
    "listed",
}
_ROUTE_KEYS = {
    "price",
    "pay_to",
    "mime_type",
    "max_timeout_seconds",
    "service_name",
    "tags",
    "icon_url",
    "scheme",
    "transfer_method",
    "charge",
    "min_deposit",
    "withdraw_delay",
    "claim_interval",
    "settle_interval",
}
_TOP_KEYS = {
    "network",
    "asset",
    "asset_name",
    "asset_version",
    "pay_to",
    "scheme",
    "transfer_method",
    "charge",
}
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ToolsFileError(InputError, ValueError):
    """A tools file that cannot be used; the message names file, tool and problem."""


@dataclass
class ToolsConfig:
    """The tools and the token settings of a tools file (``routes``: the paid tools' routes, with the
    file's network, asset and payee, for ``x402sim.http.serve.resource_server``)."""

    tools: list[PaidTool]
    routes: RoutesConfig
    source: str = ""
    answers: dict[str, str] = field(default_factory=dict)  # tool -> how it answers, for printing


def load_tools(path: str | Path) -> ToolsConfig:
    return parse_tools(*read_data_file(path, ToolsFileError))


def _answer(here: str, entry: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], Any], str]:
    given = [k for k in ("answer", "echo", "function") if k in entry]
    if len(given) != 1:
        raise ToolsFileError(
            f"{here}: say exactly one of answer, echo = true, function (got {given or 'none'})"
        )
    if "answer" in entry:
        fixed = entry["answer"]
        return (lambda arguments: fixed), "answer"
    if "echo" in entry:
        if entry["echo"] is not True:
            raise ToolsFileError(f"{here}: echo: expected true")
        return (lambda arguments: dict(arguments)), "echo"
    spec = entry["function"]
    if not isinstance(spec, str) or not _FUNCTION.match(spec):
        raise ToolsFileError(f"{here}: function: expected 'module:function', got {spec!r}")
    module_name, _, attribute = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        raise ToolsFileError(f"{here}: function: cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise ToolsFileError(f"{here}: function: {module_name!r} has no {attribute!r}") from None
    if not callable(function):
        raise ToolsFileError(f"{here}: function: {spec} is not callable")
    return function, spec


def _schema(here: str, entry: dict[str, Any], key: str, default: Any) -> Any:
    value = entry.get(key, default)
    if value is not None and not isinstance(value, dict):
        raise ToolsFileError(f"{here}: {key}: expected a table (a JSON object)")
    return value


def parse_tools(data: object, where: str = "tools") -> ToolsConfig:
    if not isinstance(data, dict):
        raise ToolsFileError(f"{where}: expected a table of settings with a 'tools' list")
    unknown = sorted(set(data) - _TOP_KEYS - {"tools"})
    if unknown:
        raise ToolsFileError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS | {'tools'}))})"
        )
    entries = data.get("tools")
    if not isinstance(entries, list) or not entries:
        raise ToolsFileError(f"{where}: tools: expected a non-empty list of tools")
    routes: list[dict[str, Any]] = []
    paid_index: list[int] = []  # routes[j] is tools[paid_index[j]]
    drafts = []
    for i, entry in enumerate(entries):
        here = f"{where}: tools[{i}]"
        if not isinstance(entry, dict):
            raise ToolsFileError(f"{here}: expected a table with a name")
        unknown = sorted(set(entry) - _TOOL_KEYS - _ROUTE_KEYS)
        if unknown:
            raise ToolsFileError(f"{here}: unknown key {unknown[0]!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not valid_tool_name(name) or name in (".", ".."):
            raise ToolsFileError(
                f"{here}: name: expected 1-128 of A-Z a-z 0-9 _ . - (not . or ..), got {name!r}"
            )
        here = f"{where}: tool {name!r}"
        run, how = _answer(here, entry)
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise ToolsFileError(f"{here}: description: expected a string")
        input_schema = _schema(here, entry, "input_schema", {"type": "object"})
        if not isinstance(entry.get("listed", True), bool):
            raise ToolsFileError(f"{here}: listed: expected true or false")
        if input_schema.get("type") != "object":
            raise ToolsFileError(f"{here}: input_schema: expected type = 'object'")
        priced = {k: entry[k] for k in _ROUTE_KEYS if k in entry}
        if priced and "price" not in priced:
            raise ToolsFileError(f"{here}: {sorted(priced)[0]}: only a priced tool takes it (add price)")
        if "price" in priced:
            routes.append({"method": "POST", "path": f"/{name}", "description": description, **priced})
            paid_index.append(i)
        drafts.append((name, run, how, description, input_schema, entry))
    top = {k: data[k] for k in _TOP_KEYS if k in data}
    try:
        config = parse_routes(
            {**top, "routes": routes or [{"method": "POST", "path": "/-", "price": 0}]}, where
        )
    except RoutesFileError as exc:
        message = str(exc)
        for j, i in enumerate(paid_index):
            message = message.replace(f"routes[{j}]", f"tool {entries[i]['name']!r}")
        raise ToolsFileError(message) from None
    if not routes:
        config.routes.clear()
    tools = []
    answers = {}
    for name, run, how, description, input_schema, entry in drafts:
        route = config.routes.get(f"POST /{name}")
        try:
            tool = PaidTool(
                name,
                run,
                route,
                description=description,
                input_schema=input_schema,
                output_schema=_schema(f"{where}: tool {name!r}", entry, "output_schema", None),
                example=_schema(f"{where}: tool {name!r}", entry, "example", None),
                output_example=entry.get("answer"),
                listed=entry.get("listed", True),
            )
        except ValueError as exc:
            raise ToolsFileError(f"{where}: {exc}") from None
        tools.append(tool)
        answers[name] = how
    names = [t.name.casefold() for t in tools]
    twice = next((t.name for t in tools if names.count(t.name.casefold()) > 1), None)
    if twice is not None:
        raise ToolsFileError(f"{where}: tool {twice!r} is listed twice (tool names differ in more than case)")
    return ToolsConfig(tools, config, where, answers)


# -- the demo tools ---------------------------------------------------------------------------------

CITIES = {"lisbon": (21, "clear"), "oslo": (4, "snow"), "nairobi": (24, "showers"), "lima": (18, "fog")}


def weather(arguments: dict[str, Any]) -> dict[str, Any]:
    """The demo's paid tool: the (made-up) weather in ``arguments["city"]``."""
    city = arguments.get("city")
    if not isinstance(city, str) or not city.strip():
        raise ValueError("argument 'city' must be a non-empty string")
    celsius, sky = CITIES.get(city.strip().lower(), (15, "cloudy"))
    return {"city": city.strip(), "temperature_c": celsius, "sky": sky}


def forecast(arguments: dict[str, Any]) -> dict[str, Any]:
    """The demo's dearer tool: ``arguments["days"]`` (1-7) days of weather."""
    now = weather(arguments)
    days = arguments.get("days", 3)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 7:
        raise ValueError("argument 'days' must be an integer 1..7")
    return {
        "city": now["city"],
        "days": [{"day": d + 1, **now, "temperature_c": now["temperature_c"] + d % 3} for d in range(days)],
    }


CITY = {"type": "string", "description": "A city name"}
CITY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"city": CITY}, "required": ["city"]}
DEMO_TOOLS = ("weather: 1000 atomic units", "forecast: 2500 atomic units", "echo: free")


def demo_tools() -> list[PaidTool]:
    """What ``x402sim serve mcp`` offers without a tools file."""
    return [
        PaidTool(
            "weather",
            weather,
            1_000,
            description="Current weather in a city (demo)",
            input_schema=CITY_SCHEMA,
            example={"city": "Lisbon"},
            output_example=weather({"city": "Lisbon"}),
        ),
        PaidTool(
            "forecast",
            forecast,
            2_500,
            description="A few days of weather in a city (demo)",
            input_schema={
                **CITY_SCHEMA,
                "properties": {"city": CITY, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            },
            example={"city": "Oslo", "days": 3},
            output_example=forecast({"city": "Oslo", "days": 1}),
        ),
        PaidTool("echo", lambda arguments: dict(arguments), description="Echoes its arguments (free)"),
    ]
