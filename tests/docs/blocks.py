"""The ```python blocks of the docs pages and the README, as the docs' examples convention reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = re.compile(r"#\s*not run:\s*(.*)")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the block's first line of code
    code: str

    @property
    def not_run(self) -> str | None:
        """The reason given on a first line ``# not run: <reason>`` ("" when none is), else None."""
        first = self.code.lstrip("\n").split("\n", 1)[0].strip()
        match = NOT_RUN.fullmatch(first)
        return match.group(1).strip() if match else None


def doc_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(
            str(page.relative_to(ROOT)),
            text.count("\n", 0, match.start("body")) + 1,
            dedent(match.group("body")),
        )
        for match in _FENCE.finditer(text)
    ]
