"""Every ```python block of README.md and docs/**/*.md runs, as the docs promise.

The convention (docs layout): the blocks of one page run in order in one shared namespace, in a
temporary working directory that holds copies of the repository's ``scenarios/`` and ``examples/``
(so paths written from the repository root work, and nothing is written into it), with the
repository root importable. A block whose first line is ``# not run: <reason>`` is not run: it must
give its reason, which is printed and recorded as a property of the test. A page whose blocks are
all "not run" has no test here; such a block is exercised where its page's steps say (the conformance
tutorial's server: ``test_conformance_tutorial.py``).
"""

from __future__ import annotations

import ast
import shutil

import pytest

from .blocks import ROOT, doc_pages, python_blocks

BLOCKS = [block for page in doc_pages() for block in python_blocks(page)]
PAGES = [page for page in doc_pages() if any(b.not_run is None for b in python_blocks(page))]


def test_every_block_not_run_says_why():
    unexplained = [f"{b.page}:{b.line}" for b in BLOCKS if b.not_run == ""]
    assert not unexplained, f"'# not run:' needs a reason: {unexplained}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch, record_property):
    for folder in ("scenarios", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__docs_example__"}
    skipped = []
    ran = 0
    for block in python_blocks(page):
        if block.not_run is not None:
            skipped.append(f"{block.page}:{block.line}: {block.not_run}")
            continue
        # Line numbers in a traceback are those of the page.
        exec(compile("\n" * (block.line - 1) + block.code, block.page, "exec"), namespace)
        ran += 1
    for reason in skipped:
        print(f"not run: {reason}")
    record_property("not_run", "; ".join(skipped))
    assert ran  # PAGES holds the pages with a block to run


def _functions(source: str) -> dict[str, str]:
    return {
        node.name: ast.dump(node)
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_the_plugin_tutorials_tests_are_the_ones_the_suite_runs():
    """The pytest-plugin tutorial's tests need pytest's fixtures, so they are not run from the page:
    each is, statement for statement, a test of examples/test_paid_api.py, which the suite runs."""
    page = ROOT / "docs" / "tutorials" / "pytest-plugin.md"
    shown: dict[str, str] = {}
    for block in python_blocks(page):
        if block.not_run is not None:
            shown |= _functions(block.code)
    assert shown, f"{page.name} shows no test"
    ran = _functions((ROOT / "examples" / "test_paid_api.py").read_text())
    assert {name: ran.get(name) for name in shown} == shown
