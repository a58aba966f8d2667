"""The generated pages: path under docs/ -> the function that renders its Markdown."""

from __future__ import annotations

from collections.abc import Callable

from . import api_page, catalog_page, cli_page, formats_page, reasons_page, summary_page

GENERATED: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page.render,
    "reference/scenario-format.md": formats_page.scenario,
    "reference/policy-format.md": formats_page.policy,
    "reference/conformance-catalog.md": catalog_page.render,
    "reference/api.md": api_page.render,
    "reference/summary-json.md": summary_page.render,
    "reference/reason-codes.md": reasons_page.render,
}
