"""Markdown building blocks for the generated pages: escaped text, code, tables, headings."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence


def text(value: str) -> str:
    """Prose safe in Markdown and in a table cell: no HTML, emphasis or cell breaks come from it;
    spans in backticks become code."""
    parts = re.split(r"`([^`]*)`", value)
    out = [
        code(part) if i % 2 else html.escape(part, quote=False).replace("|", "&#124;").replace("*", r"\*")
        for i, part in enumerate(parts)
    ]
    return "".join(out).replace("\n", " ")


def code(value: object) -> str:
    """Inline code, safe in a table cell (pipes and angle brackets included)."""
    escaped = html.escape(str(value), quote=False)
    for char, entity in (
        ("|", "&#124;"),
        ("[", "&#91;"),
        ("]", "&#93;"),
        ("*", "&#42;"),
        ("_", "&#95;"),
        ("`", "&#96;"),
    ):
        escaped = escaped.replace(char, entity)
    return f"<code>{escaped}</code>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of cells already rendered (``text`` or ``code``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def heading(level: int, title: str, anchor: str) -> str:
    """A heading with a fixed anchor, so links to it survive a change of its title."""
    return f"{'#' * level} {title} {{#{anchor}}}\n"


def fenced(body: str, language: str = "") -> str:
    return f"```{language}\n{body.rstrip()}\n```\n"


GENERATED_NOTE = (
    "<!-- Generated at build time by docsgen/{module}.py from {source}: edit the code, not this page. -->\n"
)
