"""The documentation site builds with ``mkdocs build --strict``: every page of the nav exists, no
link or anchor is broken, and the generated reference pages render."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from .blocks import ROOT

# Quiet the plugins' banners about the future of MkDocs; they are not warnings about the site.
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}

# Builds with the docs folder given, the rest of mkdocs.yml as it is (mkdocs build has no option
# for it): what `mkdocs build --strict` does, in a fresh process.
_BUILD = """\
import sys
from mkdocs.commands.build import build
from mkdocs.config import load_config
cfg = load_config(sys.argv[1], docs_dir=sys.argv[2], site_dir=sys.argv[3], strict=True)
cfg.plugins.on_startup(command="build", dirty=False)
try:
    build(cfg)
finally:
    cfg.plugins.on_shutdown()
"""


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists (paths under docs/)."""
    return re.findall(r"^\s*- [^:\n]+:\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)


def generated_pages() -> set[str]:
    from docsgen.pages import GENERATED

    return set(GENERATED)


def check_site(site) -> None:
    cli = (site / "reference" / "cli.html").read_text()
    assert 'id="x402sim-run"' in cli and 'id="x402sim-conformance-server"' in cli
    assert "Testbed" in (site / "reference" / "api.html").read_text()
    assert (site / "search" / "search_index.js").exists() or (site / "search" / "search_index.json").exists()


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    check_site(site)


def test_site_machinery_builds_with_stub_pages(tmp_path):
    """Until every page of the nav is written, the machinery (config, generated pages, validation) is
    checked on a copy of docs/ where the missing pages are stubs and pages outside the nav are left
    out. Once none is missing this is test_site_builds_strict, and it skips."""
    missing = [p for p in nav_pages() if p not in generated_pages() and not (ROOT / "docs" / p).exists()]
    if not missing:
        pytest.skip("every page of the nav exists: test_site_builds_strict builds the real tree")
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    for page in docs.rglob("*.md"):
        if str(page.relative_to(docs)) not in nav_pages():
            page.unlink()
    for page in missing:
        (docs / page).parent.mkdir(parents=True, exist_ok=True)
        (docs / page).write_text(f"# {page}\n\nA stub for the build test.\n")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(ROOT / "mkdocs.yml"), str(docs), str(site)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    check_site(site)
