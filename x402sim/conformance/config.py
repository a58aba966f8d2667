"""A target's ``test.config.json`` in the official e2e harness's format, read for what the harness needs.

Fields used: ``name`` (the target's name in reports) and ``endpoints`` (``path``, ``method``,
``requiresPayment``): the first paid endpoint is the one judged, a second paid one (if any) is used
for cross-endpoint replay. Other fields are ignored. Problems raise ``ConfigError`` naming the file
and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .context import Endpoint


class ConfigError(InputError):
    pass


@dataclass
class TargetConfig:
    name: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)


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
    endpoints = []
    for i, entry in enumerate(document.get("endpoints") or []):
        where = f"{path}: endpoints[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ConfigError(f"{where}: expected an object with a string path")
        if not entry["path"].startswith("/"):
            raise ConfigError(f"{where}.path: must start with /")
        method = entry.get("method", "GET")
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigError(f"{where}.method: expected an HTTP method")
        if entry.get("requiresPayment", True) is True:
            endpoints.append(Endpoint(entry["path"], method.upper()))
    if "endpoints" in document and not endpoints:
        raise ConfigError(f"{path}: endpoints: no endpoint with requiresPayment true")
    return TargetConfig(name, endpoints)
