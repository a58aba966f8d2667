"""Values as TOML text: how an override value is read from a ``--set`` option (``toml_value``) and
written back (``toml_literal``).

Rules: inside the library an override is a value (``Mapping[str, Any]``: dotted key path -> parsed
value); TOML text is read only where it enters (``x402sim run --set``, ``x402sim sweep --grid``,
scenario files) and written only to show or record a value (messages, sweep.csv and sweep.json).
``toml_value(toml_literal(v)) == v`` for every value of TOML's types.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from typing import Any


def toml_value(raw: str) -> Any:
    """``raw`` read as ``--set`` reads a value: a TOML value, else (a bare word) the stripped text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def toml_literal(value: Any) -> str:
    """``value`` written as a TOML value (the inverse of ``toml_value`` for TOML's types)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"TOML table keys are strings, not {key!r}")
            name = key if key and set(key) <= _BARE_KEY else toml_literal(key)
            items.append(f"{name} = {toml_literal(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"{value!r} has no TOML form")
