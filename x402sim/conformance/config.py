"""A target's ``test.config.json`` in the official e2e harness's format, read for what the harness needs.

Fields used (the rest, ``description``, ``health``, ``close``..., are ignored):

* ``name``: the target's name in reports.
* ``extensions``: the extensions the server declares (strings), kept with the config.
* ``endpoints[]``: ``path``, ``method`` (default GET), ``requiresPayment`` (a paid route only when
  true, as in the e2e harness), ``protocolFamily`` (default ``evm``), ``transferMethod`` (default
  ``eip3009``), ``extensions`` (strings), and x402sim's own ``failing`` (true: the paid route whose
  handler fails, FAILING_PATH; the e2e format has no such field).

Which paid route does what: routes of another protocol family are not the harness's business. The
first paid ``eip3009`` route that is not ``failing`` is the one judged, the second one (if any) serves
cross-endpoint replay, the ``failing`` one the cases on a handler that fails after payment. Paid EVM
routes with another transfer method are judged by no case but still checked to be mounted. Problems
raise ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .context import Endpoint

JUDGED_TRANSFER_METHOD = "eip3009"  # the only way x402sim's harness pays


class ConfigError(InputError):
    pass


@dataclass
class TargetConfig:
    name: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)  # judged paid routes: main, then second
    failing: Endpoint | None = None
    unjudged: list[Endpoint] = field(default_factory=list)  # paid EVM routes with another transfer method
    extensions: tuple[str, ...] = ()


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
    if not entry["path"].startswith("/"):
        raise ConfigError(f"{where}.path: must start with /")
    method = _field(entry, "method", "GET", where)
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
        if endpoint.transfer_method != JUDGED_TRANSFER_METHOD:
            config.unjudged.append(endpoint)
        elif endpoint.failing:
            if config.failing is not None:
                raise ConfigError(f"{where}.failing: a second failing route (one is enough)")
            config.failing = endpoint
        else:
            config.endpoints.append(endpoint)
    if "endpoints" in document and not paid:
        raise ConfigError(f"{path}: endpoints: no endpoint with requiresPayment true")
    if "endpoints" in document and not config.endpoints:
        raise ConfigError(
            f"{path}: endpoints: no paid evm route with transferMethod {JUDGED_TRANSFER_METHOD} "
            "(the harness pays with EIP-3009 only)"
        )
    return config
