"""The documentation site builds with ``mkdocs build --strict``: every page of the nav exists, no
link or anchor is broken, and the generated reference pages render."""

from __future__ import annotations

import os
import subprocess
import sys

from .blocks import ROOT

# Quiet the plugins' banners about the future of MkDocs; they are not warnings about the site.
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


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
