"""Writes the generated reference pages; run by the mkdocs-gen-files plugin at every build.

The repository root goes first on ``sys.path``, so the pages describe this checkout's x402sim.
"""

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docsgen.pages import GENERATED

for page, render in GENERATED.items():
    with mkdocs_gen_files.open(page, "w") as out:
        out.write(render())
    mkdocs_gen_files.set_edit_path(page, Path("docsgen") / "gen_pages.py")
