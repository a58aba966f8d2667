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


def _address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _mixed_case(rng: random.Random) -> str:
    return "0x" + "".join(rng.choice((c, c.upper())) for c in _address(rng)[2:])


# Replacement values by name, each made as JSON text when drawn (so a value Python cannot hold as an
# object, such as 1e400 or a lone surrogate, can still be sent).
_VALUES: dict[str, Callable[[random.Random], str]] = {
    "deep array": lambda rng: deep(rng.choice((101, 1000, 50_000))),
    "deep object": lambda rng: deep(rng.choice((101, 1000, 20_000)), "{"),
    "huge number": _huge_digits,
    "huge negative": lambda rng: "-" + _huge_digits(rng),
    "huge decimal string": lambda rng: json.dumps(_huge_digits(rng)),
    "float overflow": lambda rng: "1e400",
    "float": lambda rng: "1.5",
    "negative": lambda rng: "-1",
    "uint256 max string": lambda rng: json.dumps(str(UINT256_MAX)),
    "uint256 overflow string": lambda rng: json.dumps(str(UINT256_MAX + 1)),
    "signed string": lambda rng: json.dumps("-10"),
    "exponent string": lambda rng: json.dumps("1e3"),
    "lone surrogate": lambda rng: '"\\ud800"',
    "lone low surrogate": lambda rng: '"x\\udfffy"',
    "non-ascii text": lambda rng: json.dumps("USD₮0 ✓ 東京", ensure_ascii=False),
    "control characters": lambda rng: json.dumps("\x00\x01\x7f"),
    "null": lambda rng: "null",
    "true": lambda rng: "true",
    "zero": lambda rng: "0",
    "empty string": lambda rng: '""',
    "empty array": lambda rng: "[]",
    "empty object": lambda rng: "{}",
    "long string": lambda rng: json.dumps("A" * rng.choice((1000, 70_000))),
    "lower-case address": lambda rng: json.dumps(_address(rng).lower()),
    "upper-case address": lambda rng: json.dumps("0x" + _address(rng)[2:].upper()),
    "bad-checksum address": lambda rng: json.dumps(_mixed_case(rng)),
    "short address": lambda rng: json.dumps("0x1234"),
    "non-hex address": lambda rng: json.dumps("0xZZ" + "0" * 38),
    "address without 0x": lambda rng: json.dumps(_address(rng)[2:]),
    "31-byte hex": lambda rng: json.dumps("0x" + rng.randbytes(31).hex()),
    "33-byte hex": lambda rng: json.dumps("0x" + rng.randbytes(33).hex()),
    "high-s signature": lambda rng: json.dumps("0x" + "11" * 32 + "ff" * 32 + "1b"),
    "caip-2 mainnet": lambda rng: json.dumps("eip155:1"),
    "caip-2 garbage": lambda rng: json.dumps("eip155:"),
}
_KINDS = [*_VALUES, "drop", "unknown key", "duplicate key", "truncate", "whole"]


def value_names() -> list[str]:
    return list(_VALUES)


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
    kind = choice or rng.choice(_KINDS)
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
    name = kind if kind in _VALUES else rng.choice(list(_VALUES))
    value = _VALUES[name](rng)
    if kind == "whole" or not places:
        return f"whole document = {name}", value
    path = rng.choice(places)
    return f"{_label(path)} = {name}", replace_text(document, path, value)


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
