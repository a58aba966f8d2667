"""Where each command is documented: the link every ``--help`` ends with.

Job: one table, command path -> docs page (and anchor), and ``add_docs_links(app)``, which the
command line (``x402sim.cli``) calls once its command groups are registered, so no command module
carries a link of its own.

The site is not hosted: links point at the docs' source in the repository (``docs/...md``), which
reads well on a forge and in a checkout. Publishing the site means changing ``DOCS_BASE`` to its
address; pages then end in ``.html`` (the site is built with ``use_directory_urls: false``).
A command's page is the guide that explains it where one exists, else its entry in the command-line
reference (``reference/cli.md``, one heading per command: ``#x402sim-`` and the command path joined
by ``-``). tests/docs checks that every command has a link and that each one names an existing page
and heading.
"""

from __future__ import annotations

from typing import Any

DOCS_BASE = "docs/"

# Command path (the words after ``x402sim``; "" is ``x402sim`` itself) -> page under docs/, with the
# heading that explains the command where the page has one.
PAGES: dict[str, str] = {
    "": "index.md",
    "run": "tutorials/first-scenario.md",
    "schema": "reference/scenario-format.md",
    "scenarios": "how-to/write-a-scenario.md#the-shipped-scenarios",
    "sweep": "how-to/sweep-on-dask.md",
    "demo": "reference/cli.md#x402sim-demo",
    "pay": "how-to/serve-and-pay.md#start-the-stack-and-pay-once",
    "fuzz": "explanation/reliability.md#the-fuzz-campaign",
    "serve": "how-to/serve-and-pay.md",
    "serve chain": "how-to/serve-and-pay.md#run-only-the-parts-you-need",
    "serve facilitator": "how-to/serve-and-pay.md#run-only-the-parts-you-need",
    "serve server": "how-to/serve-and-pay.md#sell-your-own-routes",
    "serve a2a": "how-to/pay-an-agent-over-a2a.md",
    "serve mcp": "how-to/pay-for-mcp-tools.md#serve-paid-tools",
    "audit": "how-to/govern-spend.md#govern-x402sim-pay-on-the-command-line",
    "audit verify": "how-to/govern-spend.md#govern-x402sim-pay-on-the-command-line",
    "audit summary": "how-to/govern-spend.md#govern-x402sim-pay-on-the-command-line",
    "audit unfreeze": "how-to/govern-spend.md#govern-x402sim-pay-on-the-command-line",
    "conformance": "tutorials/conformance.md",
    "conformance server": "tutorials/conformance.md",
    "conformance facilitator": "tutorials/conformance.md#facilitators-and-clients",
    "conformance client": "tutorials/conformance.md#facilitators-and-clients",
    "conformance list": "reference/conformance-catalog.md",
    "conformance report": "how-to/read-a-conformance-report.md#compare-runs",
    "conformance diff": "how-to/read-a-conformance-report.md#compare-runs",
    "conformance trust-material": "how-to/add-trust.md#in-the-conformance-suite",
    "conformance schema": "reference/reports.md#a-conformance-run-x402sim-conformance",
}


def docs_link(page: str) -> str:
    """The address of ``page`` (``how-to/x.md#anchor``) under ``DOCS_BASE``."""
    if DOCS_BASE.startswith(("http://", "https://")):
        path, _, anchor = page.partition("#")
        page = path.removesuffix(".md") + ".html" + (f"#{anchor}" if anchor else "")
    return DOCS_BASE + page


def epilog(command_path: str) -> str:
    """The line a command's ``--help`` ends with; KeyError for a command without a page."""
    return f"Docs: {docs_link(PAGES[command_path])}"


def _name(info: Any) -> str:
    # typer keeps an unset name as a placeholder object: a sub-app then has its name in its own info,
    # and a command without one is named after its function (lower case, "_" as "-").
    if isinstance(info.name, str):
        return info.name
    sub = getattr(info, "typer_instance", None)
    if sub is not None and isinstance(sub.info.name, str):
        return str(sub.info.name)
    return str(info.callback.__name__).lower().replace("_", "-")


def add_docs_links(app: Any) -> None:
    """Set the epilog of ``app`` (a ``typer.Typer``) and of every command and group registered in it."""
    app.info.epilog = epilog("")

    def walk(typer_app: Any, prefix: str) -> None:
        for command in typer_app.registered_commands:
            command.epilog = epilog(f"{prefix}{_name(command)}")
        for group in typer_app.registered_groups:
            path = f"{prefix}{_name(group)}"
            group.epilog = epilog(path)
            walk(group.typer_instance, f"{path} ")

    walk(app, "")
