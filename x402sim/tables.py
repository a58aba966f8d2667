"""TOML files validated with pydantic (scenarios, policy files): shared value types, and one error
that names the file, the key path and the problem.

Rules:

* Money is written as decimal USDC strings (``"0.001"``) and held in atomic units (6 decimals).
* Tables forbid unknown keys; ``first_error`` turns pydantic's errors into one ``TableError`` with a
  "did you mean" suggestion for a misspelt key, taken from the file type's JSON Schema.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from .errors import InputError
from .money import format_usdc, parse_usdc


class TableError(InputError):
    """A file that cannot be used: ``where`` (file and key path) and ``problem``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


Usdc = Annotated[
    int,
    BeforeValidator(parse_usdc),
    PlainSerializer(format_usdc, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,6})?$", "description": 'USDC, e.g. "0.001"'}),
]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


def read_toml(path: str | Path, label: str, error: type[TableError] = TableError) -> dict:
    """The parsed TOML file at ``path``; ``error`` (named ``label``) when it is missing or unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(label, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(label, f"cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(label, f"TOML syntax: {exc}") from None


def vocabulary(schema: dict) -> list[str]:
    """Every key a JSON Schema's objects may have (for "did you mean" suggestions)."""
    words: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            words.update(node.get("properties", {}))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return sorted(words)


def first_error(
    exc: ValidationError, data: Any, label: str, words: list[str], error: type[TableError] = TableError
) -> TableError:
    """The first problem of ``exc`` as one ``error`` naming ``label``, the key path and the problem
    (a misspelt key first: it explains the "missing" error of the key it was meant to be)."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _data_path(first["loc"], data, missing=first["type"] == "missing")
    path = key_path(loc)
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
        known = [w for w in words if w != loc[-1]]  # a key known elsewhere is no suggestion
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        if close:
            problem += f" (did you mean {close[0]!r}?)"
    elif first["type"] == "missing":
        problem = "required key is missing"
    elif first["type"] == "union_tag_invalid":
        ctx = first["ctx"]
        discriminator = ctx["discriminator"].removeprefix("_price_").removesuffix("()")
        problem = f"{discriminator} {ctx['tag']!r} is not one of {ctx['expected_tags']}"
    elif first["type"] == "union_tag_not_found":
        problem = "a table here needs a kind"
    return error(f"{label}: {path}" if path else label, problem)


def _data_path(loc: tuple, data: Any, missing: bool = True) -> list:
    """``loc`` without the parts pydantic adds for the member of a union it tried (its tag or a
    validator's name): only keys and indexes that exist in the input, plus a ``missing`` last key."""
    out, node = [], data
    for i, part in enumerate(loc):
        present = part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)
        if isinstance(node, dict | list) and present:
            node = node[part]
        elif i < len(loc) - 1 or not isinstance(node, dict) or not missing:
            continue
        out.append(part)
    return out


def key_path(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def unknown_name(kind: str, name: str, known: set[str]) -> str:
    """Why ``name`` is not a known ``kind``, with the closest known name or a listing."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    shown = sorted(known)
    listing = ", ".join(shown[:12]) + (f", ... ({len(shown) - 12} more)" if len(shown) > 12 else "")
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {listing})"
    return f"no {kind} named {name!r}{hint}"
