"""reference/cli.md: every command of the ``x402sim`` typer app, with its usage, help and options.

Read from the click command typer builds (``typer.main.get_command``), walked through its groups, so
the page says exactly what ``--help`` says. Each command gets one heading whose anchor is
``x402sim-`` and its path joined by ``-`` (``#x402sim-conformance-server``): ``x402sim.docs_links``
links to these.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from . import md


def command_anchor(path: str) -> str:
    """The anchor of a command path (``"conformance server"``; "" for ``x402sim`` itself)."""
    return "-".join(["x402sim", *path.split()])


def commands() -> Iterator[tuple[str, Any, Any]]:
    """(path, click command, its context) for ``x402sim`` and every command under it, in help order."""
    import typer.main

    from x402sim.cli import app

    root = typer.main.get_command(app)
    context_class = root.context_class

    def walk(command: Any, ctx: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
        yield path, command, ctx
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(
                        sub, context_class(sub, parent=ctx, info_name=name), f"{path} {name}".strip()
                    )

    yield from walk(root, context_class(root, info_name="x402sim"), "")


def _help(text: str) -> str:
    """Help text as Markdown: paragraphs, with indented lines and ``Example: ...`` as console blocks."""
    out: list[str] = []
    console: list[str] = []

    def flush() -> None:
        if console:
            out.append(md.fenced("\n".join(console), "console"))
            console.clear()

    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.splitlines()
        example = re.match(r"Examples?:\s+(\S.*)", lines[0])
        if example:
            flush()
            out.append("Example:\n")
            console.extend([example.group(1), *(line.strip() for line in lines[1:])])
        elif all(line.startswith("  ") for line in lines):
            console.extend(line.strip() for line in lines)
        else:
            flush()
            out.append(md.text(" ".join(line.strip() for line in lines)) + "\n")
    flush()
    return "\n".join(out)


def _parameters(command: Any, ctx: Any) -> str:
    rows = []
    for param in command.params:
        record = param.get_help_record(ctx)
        if record is None:  # hidden
            continue
        names, help_text = record
        spelled = ", ".join(param.opts) + (
            " / " + ", ".join(param.secondary_opts) if param.secondary_opts else ""
        )
        if param.param_type_name == "argument":
            spelled = param.name
        kind = names[len(spelled) :].strip() if names.startswith(spelled) else ""
        details = re.match(r"(.*?)\s*\[([^\[\]]*)\]$", help_text, re.S)
        description, extra = (details.group(1), details.group(2)) if details else (help_text, "")
        rows.append(
            [
                md.code(spelled),
                md.code(kind.strip("<>")) if kind else "",
                md.text(extra),
                md.text(description),
            ]
        )
    if not rows:
        return ""
    return md.table(["Option", "Type", "Default, range", "Description"], rows)


def render() -> str:
    parts = [
        "# Command line\n",
        md.GENERATED_NOTE.format(module="cli_page", source="the x402sim typer app"),
        "Every command of `x402sim`, as its `--help` shows it. Exit codes are the same for every command: "
        "0 success, 1 the command's verdict is a failure (a broken invariant, a failed case, an HTTP "
        "error), 2 bad usage or input or a command that could not run, 3 a payment denied by "
        "`pay --policy`.\n",
    ]
    for path, command, ctx in commands():
        title = f"x402sim {path}".strip()
        parts.append(md.heading(2 if len(path.split()) < 2 else 3, f"`{title}`", command_anchor(path)))
        parts.append(md.fenced(command.get_usage(ctx).removeprefix("Usage: "), "text"))
        parts.append(_help(command.help or ""))
        parts.append(_parameters(command, ctx))
        if hasattr(command, "list_commands"):
            subs = [
                f"[`{title} {name}`](#{command_anchor(f'{path} {name}')})"
                for name in command.list_commands(ctx)
                if not command.get_command(ctx, name).hidden
            ]
            parts.append("Commands: " + ", ".join(subs) + ".\n")
    return "\n".join(part for part in parts if part)
