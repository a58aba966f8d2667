"""Each command's --help ends with a link to its docs page, and every link names an existing page and
heading (x402sim/docs_links.py)."""

from __future__ import annotations

import re

import markdown
import pytest
from typer.testing import CliRunner

from docsgen.cli_page import commands
from docsgen.pages import GENERATED
from x402sim import docs_links
from x402sim.cli import app

from .blocks import ROOT

COMMANDS = {path: command for path, command, _ctx in commands()}


def anchors(page: str) -> set[str]:
    """The heading ids of a page under docs/ (a generated page is rendered first)."""
    source = GENERATED[page]() if page in GENERATED else (ROOT / "docs" / page).read_text(encoding="utf-8")
    html = markdown.markdown(
        source, extensions=["toc", "attr_list", "tables", "md_in_html", "admonition", "pymdownx.superfences"]
    )
    return set(re.findall(r'<h[1-6][^>]* id="([^"]+)"', html))


def test_every_command_has_a_page_and_no_page_names_a_command_that_is_gone():
    assert set(docs_links.PAGES) == set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: p or "x402sim")
def test_help_ends_with_the_docs_link(path):
    result = CliRunner().invoke(app, [*path.split(), "--help"], prog_name="x402sim", terminal_width=200)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1].strip()
    assert last == docs_links.epilog(path) == f"Docs: docs/{docs_links.PAGES[path]}"


@pytest.mark.parametrize("target", sorted(set(docs_links.PAGES.values())))
def test_link_names_an_existing_page_and_heading(target):
    page, _, anchor = target.partition("#")
    assert page in GENERATED or (ROOT / "docs" / page).is_file(), f"docs/{page} does not exist"
    if anchor:
        assert anchor in anchors(page), f"docs/{page} has no heading #{anchor}"


def test_published_links_point_at_html_pages(monkeypatch):
    monkeypatch.setattr(docs_links, "DOCS_BASE", "https://docs.example/x402sim/")
    assert docs_links.docs_link("reference/cli.md#x402sim-run") == (
        "https://docs.example/x402sim/reference/cli.html#x402sim-run"
    )
    assert (
        docs_links.docs_link("how-to/govern-spend.md")
        == "https://docs.example/x402sim/how-to/govern-spend.html"
    )


def test_help_leads_with_run():
    result = CliRunner().invoke(app, ["--help"], prog_name="x402sim", terminal_width=200)
    listed = re.findall(r"^│ (\w[\w-]*) ", result.output, re.M)  # the commands panel, options left out
    assert listed[0] == "run", result.output
