"""Hostile variants of valid inputs: one change at a time, drawn from a seeded ``random.Random``.

Job: the input space a service must survive, written once and used by both the Hypothesis suite
(which draws the mutation and the ``Random``, so failures shrink) and the ``x402sim fuzz`` campaign.

Rules: every function is pure given its ``rng``; a mutation of a JSON value changes exactly one place
(a value, a key, or the text around it) and says which in its label, so a failing input is easy to
read. Values are chosen from what broke services before: deep nesting, numbers past Python's
int-string limit, lone surrogates, addresses in every spelling, wrong types, oversized strings.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

JsonPath = tuple[str | int, ...]

UINT256_MAX = 2**256 - 1


def deep(depth: int, opener: str = "[") -> str:
    """JSON text nested ``depth`` levels deep (an array or object tower)."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _huge_digits(rng: random.Random) -> str:
    return "9" * rng.choice((4301, 5000, 20_000))


# Replacement values, as JSON text (so a value that Python cannot hold as an object can still be sent).
def _values(rng: random.Random) -> list[tuple[str, str]]:
    address = "0x" + rng.randbytes(20).hex()
    return [
        ("deep array", deep(rng.choice((101, 1000, 50_000)))),
        ("deep object", deep(rng.choice((101, 1000, 20_000)), "{")),
        ("huge number", _huge_digits(rng)),
        ("huge negative", "-" + _huge_digits(rng)),
        ("huge decimal string", json.dumps(_huge_digits(rng))),
        ("float overflow", "1e400"),
        ("float", "1.5"),
        ("negative", "-1"),
        ("uint256 max string", json.dumps(str(UINT256_MAX))),
        ("uint256 overflow string", json.dumps(str(UINT256_MAX + 1))),
        ("signed string", json.dumps("-10")),
        ("exponent string", json.dumps("1e3")),
        ("lone surrogate", '"\\ud800"'),
        ("lone low surrogate", '"x\\udfffy"'),
        ("non-ascii text", json.dumps("USD₮0 ✓ 東京", ensure_ascii=False)),
        ("control characters", json.dumps("\x00\x01\x7f")),
        ("null", "null"),
        ("true", "true"),
        ("zero", "0"),
        ("empty string", '""'),
        ("empty array", "[]"),
        ("empty object", "{}"),
        ("long string", json.dumps("A" * rng.choice((1000, 70_000)))),
        ("lower-case address", json.dumps(address.lower())),
        ("upper-case address", json.dumps("0x" + address[2:].upper())),
        ("bad-checksum address", json.dumps("0x" + "".join(rng.choice((c, c.upper())) for c in address[2:]))),
        ("short address", json.dumps("0x1234")),
        ("non-hex address", json.dumps("0xZZ" + "0" * 38)),
        ("address without 0x", json.dumps(address[2:])),
        ("31-byte hex", json.dumps("0x" + rng.randbytes(31).hex())),
        ("33-byte hex", json.dumps("0x" + rng.randbytes(33).hex())),
        ("high-s signature", json.dumps("0x" + "11" * 32 + "ff" * 32 + "1b")),
        ("caip-2 mainnet", json.dumps("eip155:1")),
        ("caip-2 garbage", json.dumps("eip155:")),
    ]


def value_names() -> list[str]:
    return [name for name, _ in _values(random.Random(0))]


def paths(value: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every place (object member or array item) in a parsed JSON value, outermost first."""
    found: list[JsonPath] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.append((*prefix, i))
            found.extend(paths(item, (*prefix, i)))
    return found


def _label(path: JsonPath) -> str:
    return ".".join(map(str, path)) or "(root)"


_MARK = "\x00x402sim-fuzz-slot\x00"


def replace_text(document: Any, path: JsonPath, text: str) -> str:
    """``document`` serialized with the value at ``path`` replaced by raw JSON ``text``."""
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = _MARK
    return json.dumps(copy, separators=(",", ":")).replace(json.dumps(_MARK), text, 1)


def mutate_json(rng: random.Random, document: Any, choice: str | None = None) -> tuple[str, str]:
    """One hostile change to ``document``; returns ``(label, json_text)``.

    ``choice`` names a value from ``value_names()``, or ``"drop"``, ``"unknown key"``, ``"duplicate
    key"``, ``"truncate"``, ``"whole"`` (the whole document replaced); None draws one."""
    places = paths(document)
    kinds = [*value_names(), "drop", "unknown key", "duplicate key", "truncate", "whole"]
    kind = choice or rng.choice(kinds)
    text = json.dumps(document, separators=(",", ":"))
    if kind == "truncate":
        cut = rng.randrange(len(text)) if text else 0
        return f"truncated at {cut}", text[:cut]
    members = [p for p in places if isinstance(p[-1], str)]
    if kind in ("drop", "duplicate key", "unknown key") and members:
        path = rng.choice(members)
        copy = json.loads(text)
        parent = copy
        for step in path[:-1]:
            parent = parent[step]
        if kind == "drop":
            del parent[path[-1]]
            return f"drop {_label(path)}", json.dumps(copy, separators=(",", ":"))
        if kind == "unknown key":
            parent["x402simUnknown"] = 1
            return f"unknown key beside {_label(path)}", json.dumps(copy, separators=(",", ":"))
        # Duplicate: the same key twice with another value; parsers keep the last one.
        value = json.dumps(parent[path[-1]], separators=(",", ":"))
        slot = json.dumps(path[-1]) + ":" + value
        return f"duplicate key {_label(path)}", text.replace(
            slot, slot + "," + json.dumps(path[-1]) + ":null", 1
        )
    values = dict(_values(rng))
    name = kind if kind in values else rng.choice(list(values))
    if kind == "whole" or not places:
        return f"whole document = {name}", values[name]
    path = rng.choice(places)
    return f"{_label(path)} = {name}", replace_text(document, path, values[name])


# -- header values --------------------------------------------------------------------------------


def b64(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def header_values(rng: random.Random, valid: str) -> list[tuple[str, str]]:
    """Broken spellings of a valid base64 header value."""
    raw = base64.b64decode(valid)
    return [
        ("unpadded base64", valid.rstrip("=") or "A"),
        ("url-safe base64", base64.urlsafe_b64encode(raw).decode().replace("=", "") + "-_"),
        ("not base64", "!!!not base64!!!"),
        ("base64 of invalid utf-8", b64(b"\xff\xfe" + raw)),
        ("base64 of non-json", b64("hello")),
        ("base64 of a json array", b64("[1,2,3]")),
        ("empty", ""),
        ("oversized", "A" * rng.choice((8193, 20_000))),
        ("truncated", valid[: rng.randrange(1, max(2, len(valid)))]),
        ("base64 of deep nesting", b64(deep(rng.choice((101, 50_000))))),
        ("base64 of huge number", b64(_huge_digits(rng))),
    ]


Mutator = Callable[[random.Random, Any], tuple[str, str]]
