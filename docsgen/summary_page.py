"""reference/summary-json.md: every field of a run's summary.json, from ``summary_fields.FIELDS``.

The descriptions are written by hand (the summary is a dict built in ``x402sim/sim/summary.py``);
what keeps them true is ``field_paths``: tests/docs/test_summary_fields.py runs small scenarios that
between them produce every section and fails when a summary has a field the table does not describe,
or the table describes a field no summary has.

Field paths: keys joined by ``.``; ``<name>`` stands for keys that are names from the scenario or
the run (a facilitator, a server, an outcome); ``[]`` for the items of a list of tables.
"""

from __future__ import annotations

from typing import Any

from . import md
from .summary_fields import FIELDS, INTRO, SECTIONS


def field_paths(summary: dict, described: set[str] | frozenset[str] = frozenset(FIELDS)) -> set[str]:
    """The field paths of ``summary``, named as the table names them: a key is matched literally
    when the table has it, else by the ``<...>`` placeholder the table has at that place (else it is
    reported under its own name, undescribed, and not walked further)."""
    prefixes = {p.rsplit(".", i)[0] for p in described for i in range(p.count(".") + 1)}
    prefixes |= {p.removesuffix("[]") for p in prefixes}
    found: set[str] = set()

    def child(parent: str, key: str) -> str:
        literal = f"{parent}.{key}" if parent else key
        if literal in prefixes:
            return literal
        for p in sorted(prefixes):
            above, _, last = p.rpartition(".")
            if above == parent and last.startswith("<"):
                return p
        return literal

    def walk(value: Any, path: str) -> None:
        found.add(path)
        if path not in prefixes:
            return
        leaf = not any(p.startswith(path + ".") or p.startswith(path + "[]") for p in prefixes)
        if leaf:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, child(path, str(key)))
        elif isinstance(value, list):
            for item in value:
                walk(item, path + "[]")

    for key, value in summary.items():
        walk(value, child("", key))
    return found


def render() -> str:
    parts = [
        "# summary.json\n",
        md.GENERATED_NOTE.format(module="summary_page", source="docsgen/summary_fields.py"),
        INTRO,
    ]
    for section, (title, about) in SECTIONS.items():
        rows = [
            [md.code(path), md.text(text)]
            for path, text in FIELDS.items()
            if path == section or path.startswith((f"{section}.", f"{section}[]"))
        ]
        parts += [md.heading(2, title, section), md.text(about) + "\n", md.table(["Field", "Meaning"], rows)]
    return "\n".join(parts)
