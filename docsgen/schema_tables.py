"""A JSON Schema (pydantic's, with ``$defs``) rendered as readable tables: one per table of the file.

The top-level keys come first, then every definition in the order a reader meets it walking the
schema from the top, each under a heading named after the first key path that leads to it
(``servers[].endpoints[]``, ``agents[].arrivals``: ``kind = "poisson"``) with a stable anchor
(the definition's name in lower case). Columns: key, type (with links to the tables it refers to),
default (or "required"), constraints, and the field's description where the schema has one.
"""

from __future__ import annotations

import json
from typing import Any

from . import md

_CONSTRAINTS = (
    ("exclusiveMinimum", "> {}"),
    ("minimum", ">= {}"),
    ("exclusiveMaximum", "< {}"),
    ("maximum", "<= {}"),
    ("minItems", "at least {} item(s)"),
    ("maxItems", "at most {} items"),
    ("minProperties", "at least {} entries"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("pattern", "matches {}"),
)


def anchor(ref_name: str) -> str:
    return ref_name.lower()


def _ref_name(schema: dict) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def toml_value(value: Any) -> str:
    """A default as it would be written in TOML (None: not set)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


class SchemaPage:
    """Renders one schema: ``render()`` gives the Markdown of every table of it."""

    def __init__(self, schema: dict, root: str = "the file") -> None:
        self.schema = schema
        self.defs: dict[str, dict] = schema.get("$defs", {})
        self.root = root
        self.paths: dict[str, list[str]] = {}  # def name -> the key paths reaching it
        self.order: list[str] = []
        self._discover(schema, "")

    # -- walking -------------------------------------------------------------------------------------

    def _discover(self, schema: dict, path: str) -> None:
        """Breadth-first over the definitions, so a table comes after the one that refers to it."""
        queue: list[tuple[dict, str]] = [(schema, path)]
        while queue:
            node, at = queue.pop(0)
            for key, prop in node.get("properties", {}).items():
                for name, sub in self._refs(prop, f"{at}.{key}" if at else key):
                    if name not in self.paths:
                        self.order.append(name)
                        queue.append((self.defs[name], sub))
                    self.paths.setdefault(name, [])
                    if sub not in self.paths[name]:
                        self.paths[name].append(sub)

    def _refs(self, schema: dict, path: str) -> list[tuple[str, str]]:
        """Definitions a property refers to, each with the key path that reaches it."""
        name = _ref_name(schema)
        if name:
            return [(name, path)]
        found: list[tuple[str, str]] = []
        for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("prefixItems", []):
            found += self._refs(option, path)
        if isinstance(schema.get("items"), dict):
            found += self._refs(schema["items"], f"{path}[]")
        for value in schema.get("patternProperties", {}).values():
            found += self._refs(value, f"{path}.<name>")
        if isinstance(schema.get("additionalProperties"), dict):
            found += self._refs(schema["additionalProperties"], f"{path}.<name>")
        return found

    def title(self, name: str) -> str:
        """Where a definition sits: its key path (and tag), or, for one used in several places
        (the distributions), its tag and name."""
        tag = self._tag(name)
        paths = self.paths[name]
        if len(paths) == 1:
            return md.code(f"{paths[0]}: {tag}" if tag else paths[0])
        return f"{self.defs[name].get('title', name)}: {md.code(tag)}" if tag else md.code(paths[0])

    def _tag(self, name: str) -> str:
        """``kind = "poisson"``: the constant that tells this definition from its siblings."""
        for key, prop in self.defs[name].get("properties", {}).items():
            if "const" in prop and key in ("kind", "model"):
                return f'{key} = "{prop["const"]}"'
        return ""

    # -- cells ---------------------------------------------------------------------------------------

    def type_of(self, schema: dict) -> str:
        name = _ref_name(schema)
        if name:
            label = self._tag(name) or self.paths[name][0]
            return f"[{md.code(label)}](#{anchor(name)})"
        if "const" in schema:
            return md.code(toml_value(schema["const"]))
        if "enum" in schema:
            return " or ".join(md.code(toml_value(v)) for v in schema["enum"])
        options = schema.get("anyOf", []) + schema.get("oneOf", [])
        if options:
            kinds = [self.type_of(option) for option in options if option.get("type") != "null"]
            return " or ".join(dict.fromkeys(kinds))
        kind = schema.get("type")
        if kind == "array":
            if "prefixItems" in schema:
                return "[" + ", ".join(self.type_of(item) for item in schema["prefixItems"]) + "]"
            items = schema.get("items")
            return "list of " + (self.type_of(items) if isinstance(items, dict) else "values")
        if kind == "object":
            values = list(schema.get("patternProperties", {}).values())
            if isinstance(schema.get("additionalProperties"), dict):
                values.append(schema["additionalProperties"])
            if values:
                return "table of name to " + self.type_of(values[0])
            return "table"
        return {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}.get(
            kind or "", "any"
        )

    def constraints(self, schema: dict) -> str:
        found: list[str] = []
        for option in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
            for key, spelling in _CONSTRAINTS:
                if key in option:
                    value = option[key]
                    found.append(spelling.format(md.code(value) if key == "pattern" else value))
            if isinstance(option.get("items"), dict) and option["items"].get("pattern"):
                found.append("each matches " + md.code(option["items"]["pattern"]))
        return ", ".join(dict.fromkeys(found))

    def table(self, schema: dict) -> str:
        required = set(schema.get("required", []))
        rows = []
        for key, prop in schema.get("properties", {}).items():
            if key in required:
                default = "required"
            elif prop.get("default") is not None:
                default = md.code(toml_value(prop["default"]))
            else:
                default = "empty" if prop.get("type") in ("array", "object") else "not set"
            rows.append(
                [
                    md.code(key),
                    self.type_of(prop),
                    default,
                    self.constraints(prop),
                    md.text(prop.get("description", "")),
                ]
            )
        if not rows:
            return "No keys besides its tag.\n"
        return md.table(["Key", "Type", "Default", "Constraints", "Description"], rows)

    # -- the page ------------------------------------------------------------------------------------

    def section(self, name: str, level: int = 3) -> str:
        schema = self.defs[name]
        parts = [md.heading(level, self.title(name), anchor(name))]
        if schema.get("description"):
            parts.append(md.text(" ".join(schema["description"].split())) + "\n")
        if len(self.paths[name]) > 1:
            parts.append("Used by " + ", ".join(md.code(p) for p in self.paths[name]) + ".\n")
        parts.append(self.table(schema))
        return "\n".join(parts)

    def render(self, level: int = 3) -> str:
        parts = [md.heading(level, f"Top level of {self.root}", "top-level"), self.table(self.schema)]
        parts += [self.section(name, level) for name in self.order]
        return "\n".join(parts)
