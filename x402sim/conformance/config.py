"""A target's ``test.config.json`` in the official e2e harness's format, read for what the harness needs.

Fields used (the rest, ``description``, ``health``, ``close``..., are ignored):

* ``name``: the target's name in reports.
* ``transport``: ``http`` or ``mcp`` (the official MCP servers' configs say ``mcp``): what
  ``--transport`` is when not given. An endpoint whose ``method`` is ``tool`` is an MCP tool: its
  ``path`` is the tool's name (``get_weather``), judged as the route ``/get_weather``.
* ``extensions``: the extensions the server declares (strings), kept with the config.
* ``endpoints[]``: ``path``, ``method`` (default GET), ``requiresPayment`` (a paid route only when
  true, as in the e2e harness), ``protocolFamily`` (default ``evm``), ``transferMethod`` (default
  ``eip3009``), ``extensions`` (strings), and x402sim's own ``failing`` (true: the paid route whose
  handler fails, FAILING_PATH; the e2e format has no such field).

* ``schemes`` and ``evm.transferMethods`` (a facilitator's or a client's config): the mechanisms it
  speaks.

Which paid route does what: routes of another protocol family are not the harness's business. The
first paid ``eip3009`` route that is not ``failing`` is the one judged, the second one (if any) serves
cross-endpoint replay, the ``failing`` one the cases on a handler that fails after payment. The first
paid ``permit2`` route is the one the ``exact-permit2`` cases pay, the first ``upto`` one (the e2e
format names the upto scheme by ``transferMethod: "upto"``) the one the ``upto`` cases pay, the first
``batch-settlement`` one (x402sim's own value: the e2e format has no channel routes yet) the one the
``batch-settlement`` cases pay; further ones are only checked to be mounted.

Which mechanisms a target speaks (the cases ``--mechanism`` would select, when it is not given): a
server's are those of its paid EVM routes; a facilitator's or a client's, ``exact-eip3009`` and
``exact-permit2`` for each ``evm.transferMethods`` entry ``eip3009`` / ``permit2`` (when ``schemes``
is absent or names ``exact``), ``upto`` when ``schemes`` or ``evm.transferMethods`` names it, and
``batch-settlement`` when ``schemes`` names it.
Problems raise ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .catalog import TRANSPORTS
from .context import Endpoint

JUDGED_TRANSFER_METHOD = "eip3009"  # what a route without transferMethod is paid by
# transferMethod of an e2e route -> the mechanism whose cases pay it
MECHANISM_OF_METHOD = {
    "eip3009": "exact-eip3009",
    "permit2": "exact-permit2",
    "upto": "upto",
    "batch-settlement": "batch-settlement",
}


TOOL_METHOD = "tool"  # an MCP server's endpoint: its path is a tool name


class ConfigError(InputError):
    pass


@dataclass
class TargetConfig:
    name: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)  # judged paid routes: main, then second
    failing: Endpoint | None = None
    unjudged: list[Endpoint] = field(default_factory=list)  # further paid EVM routes, only checked
    extensions: tuple[str, ...] = ()
    mechanism_routes: dict[str, Endpoint] = field(default_factory=dict)  # exact-permit2 / upto routes
    mechanisms: tuple[str, ...] = ()  # the mechanisms the target speaks (empty: it does not say)
    transport: str | None = None  # "transport" (http, mcp); None: the config does not say


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _field(entry: dict, name: str, default: str, where: str) -> str:
    value = entry.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{name}: expected a non-empty string")
    return value


def _flag(entry: dict, name: str, where: str) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{name}: expected true or false")
    return value


def _endpoint(entry: Any, where: str) -> tuple[Endpoint, str] | None:
    """The paid route ``entry`` declares and its protocol family, or None for an unpaid one."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise ConfigError(f"{where}: expected an object with a string path")
    method = _field(entry, "method", "GET", where)
    if method == TOOL_METHOD and not entry["path"].startswith("/"):
        entry = {**entry, "path": "/" + entry["path"]}  # a tool is judged as the route /<name>
    if not entry["path"].startswith("/"):
        raise ConfigError(f"{where}.path: must start with /")
    if not method.isalpha():
        raise ConfigError(f"{where}.method: expected an HTTP method")
    if not _flag(entry, "requiresPayment", where):
        return None
    endpoint = Endpoint(
        entry["path"],
        method.upper(),
        transfer_method=_field(entry, "transferMethod", JUDGED_TRANSFER_METHOD, where),
        extensions=_strings(entry.get("extensions", []), f"{where}.extensions"),
        failing=_flag(entry, "failing", where),
    )
    return endpoint, _field(entry, "protocolFamily", "evm", where)


def load_config(path: Path) -> TargetConfig:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    name = document.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{path}: name: expected a string")
    config = TargetConfig(name, extensions=_strings(document.get("extensions", []), f"{path}: extensions"))
    transport = document.get("transport")
    if transport is not None and transport not in TRANSPORTS:
        raise ConfigError(f"{path}: transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
    config.transport = transport
    entries = document.get("endpoints") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: endpoints: expected a list")
    paid = 0
    for i, entry in enumerate(entries):
        where = f"{path}: endpoints[{i}]"
        found = _endpoint(entry, where)
        if found is None:
            continue
        paid += 1
        endpoint, family = found
        if family != "evm":
            continue
        mechanism = MECHANISM_OF_METHOD.get(endpoint.transfer_method)
        if mechanism is not None and mechanism not in config.mechanisms:
            config.mechanisms = (*config.mechanisms, mechanism)
        if endpoint.transfer_method != JUDGED_TRANSFER_METHOD:
            if mechanism is not None and mechanism not in config.mechanism_routes and not endpoint.failing:
                config.mechanism_routes[mechanism] = endpoint
            else:
                config.unjudged.append(endpoint)
        elif endpoint.failing:
            if config.failing is not None:
                raise ConfigError(f"{where}.failing: a second failing route (one is enough)")
            config.failing = endpoint
        else:
            config.endpoints.append(endpoint)
    if "endpoints" not in document:
        config.mechanisms = _spoken(document, path)
    if "endpoints" in document and not paid:
        raise ConfigError(f"{path}: endpoints: no endpoint with requiresPayment true")
    if "endpoints" in document and not config.endpoints:
        raise ConfigError(
            f"{path}: endpoints: no paid evm route with transferMethod {JUDGED_TRANSFER_METHOD} "
            "(the harness pays with EIP-3009 only)"
        )
    return config


def _spoken(document: dict, path: Path) -> tuple[str, ...]:
    """The mechanisms a facilitator's or client's config says it speaks (see the module docstring)."""
    schemes = _strings(document.get("schemes", []), f"{path}: schemes")
    evm = document.get("evm", {})
    if not isinstance(evm, dict):
        raise ConfigError(f"{path}: evm: expected an object")
    methods = _strings(evm.get("transferMethods", []), f"{path}: evm.transferMethods")
    exact = not schemes or "exact" in schemes
    spoken = {MECHANISM_OF_METHOD[m] for m in methods if m in ("eip3009", "permit2") and exact}
    if "upto" in schemes or "upto" in methods:
        spoken.add("upto")
    if "batch-settlement" in schemes:
        spoken.add("batch-settlement")
    from .catalog import MECHANISMS

    return tuple(m for m in MECHANISMS if m in spoken)
