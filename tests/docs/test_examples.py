"""Every ```python block of README.md and docs/**/*.md runs, as the docs promise.

The convention (docs layout): the blocks of one page run in order in one shared namespace, in a
temporary working directory that holds copies of the repository's ``scenarios/`` and ``examples/``
(so paths written from the repository root work, and nothing is written into it), with the
repository root importable. A block whose first line is ``# not run: <reason>`` is not run; its
reason is printed, recorded as a property of the test, and a page whose blocks are all "not run" is
skipped with those reasons.
"""

from __future__ import annotations

import shutil

import pytest

from .blocks import ROOT, doc_pages, python_blocks

PAGES = [page for page in doc_pages() if python_blocks(page)]


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
            assert block.not_run, f"{block.page}:{block.line}: '# not run:' needs a reason"
            skipped.append(f"{block.page}:{block.line}: {block.not_run}")
            continue
        # Line numbers in a traceback are those of the page.
        exec(compile("\n" * (block.line - 1) + block.code, block.page, "exec"), namespace)
        ran += 1
    for reason in skipped:
        print(f"not run: {reason}")
    record_property("not_run", "; ".join(skipped))
    if not ran:
        pytest.skip("every block is marked not run: " + "; ".join(skipped))
