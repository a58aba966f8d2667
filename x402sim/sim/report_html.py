"""report.html: a run's report as one self-contained page to open in a browser.

Rules:

* The page says what report.md says: it renders the same blocks (``report.report_blocks``), so the
  two cannot disagree. Only the arrangement differs: the headline first, its figures as cards, a bar of links
  to the sections, each plot inside the section it illustrates (one with no such section goes to
  "Plots" at the end), and tables with every row (report.md stops at ``MAX_ROWS``, the page at
  ``PAGE_MAX_ROWS``), sortable by clicking a header.
* Self-contained (``html_page``): the PNGs are inlined as base64 ``data:`` URIs; no script, style,
  font or image is fetched from anywhere.
* Everything taken from the run or the scenario is escaped. The only markup read from the blocks
  is the report's own ``**strong**`` and ```code``` marks, applied after escaping, so no text can
  open a tag.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from pathlib import Path

from ..html_page import e, page
from .report import IMAGES, TRUST_IMAGES, Block, TableBlock, report_blocks

PAGE_MAX_ROWS = 2000
# the section (by the start of its title) each plot illustrates
PLOT_SECTIONS = {
    "throughput.png": "Headline",
    "latency_cdf.png": "Latency",
    "economics.png": "Facilitators",
    "reputation.png": "Reputation",
    "mandates.png": "Mandates",
    "crawl.png": "Crawl",
}

CSS = """
:root { --line: #d0d7de; --soft: #f6f8fa; --muted: #59636e; --accent: #0969da; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2em 1.5em 2em; }
h1 { font-size: 1.6em; margin: 0 0 .3em; }
h2 { font-size: 1.25em; margin: 0 0 .5em; }
h3 { font-size: 1.05em; margin: 1.2em 0 .4em; }
section { border-top: 1px solid var(--line); padding: 1em 0 .4em; scroll-margin-top: 2.5em; }
blockquote { margin: 0 0 .8em; padding: .2em .9em; border-left: 4px solid var(--line); color: var(--muted); }
nav { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line);
  padding: .45em max(1.5em, calc((100% - 1180px) / 2)); font-size: .92em; }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.1em; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; margin: .4em 0 1em; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .6em 1em; min-width: 9em;
  background: var(--soft); }
.card .v { font-size: 1.5em; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .k { color: var(--muted); font-size: .9em; }
.scroll { overflow-x: auto; margin: .3em 0 .8em; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid var(--line); padding: .3em .7em; text-align: left; vertical-align: top; }
th { background: var(--soft); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-family: ui-monospace, monospace; font-size: .92em; background: var(--soft); padding: 0 .25em;
  border-radius: 4px; overflow-wrap: anywhere; }
figure { margin: .8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .9em; }
.note { color: var(--muted); font-style: italic; }
footer { border-top: 1px solid var(--line); margin-top: 1em; padding-top: .6em; color: var(--muted); }
"""


def _inline(text: str) -> str:
    """``text`` escaped, then the report's ``**strong**`` and ```code``` marks as tags."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", e(text))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _slug(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _table(table: TableBlock) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i < len(table.align) and table.align[i] == "r" else ""

    head = "".join(f"<th{cls(i)}>{_inline(h)}</th>" for i, h in enumerate(table.headers))
    rows = [
        "<tr>" + "".join(f"<td{cls(i)}>{_inline(str(c))}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows[:PAGE_MAX_ROWS]
    ]
    grid = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    out = f'<div class="scroll">{grid}</div>'
    if len(table.rows) > PAGE_MAX_ROWS:
        out += f'<p class="note">{len(table.rows) - PAGE_MAX_ROWS:,} more rows in summary.json.</p>'
    return out


def _cards(table: TableBlock) -> str:
    """A one-row table as figure cards (the headline)."""
    cards = [
        f'<div class="card"><div class="v">{_inline(str(v))}</div><div class="k">{_inline(k)}</div></div>'
        for k, v in zip(table.headers, table.rows[0], strict=True)
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _figure(name: str, data: bytes) -> str:
    title = {**IMAGES, **TRUST_IMAGES}.get(name, name)
    size = _png_size(data)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="{uri}" alt="{e(title)}"{dims}>'
        f"<figcaption>{e(title)} ({e(name)} beside this page)</figcaption></figure>"
    )


def html_report(
    summary: dict, scenario=None, images: Mapping[str, bytes] | None = None, daily: list[dict] | None = None
) -> str:
    """The text of report.html for ``summary`` (``scenario`` and ``daily`` as for
    ``report.markdown_report``); ``images`` maps each plot's file name to its PNG bytes."""
    images = dict(images or {})
    title = f"Simulation report: {summary['scenario']}"
    header: list[str] = []
    sections: list[tuple[str, list[str]]] = []  # (title, HTML parts)
    footer: list[str] = []
    current = header
    blocks: list[Block] = report_blocks(summary, scenario, (), daily)
    for block in blocks:
        if isinstance(block, TableBlock):
            headline = bool(sections) and sections[-1][0] == "Headline" and not current
            current.append(_cards(block) if headline and len(block.rows) == 1 else _table(block))
        elif block.startswith("# "):
            current.append(f"<h1>{e(block[2:])}</h1>")
        elif block.startswith("## "):
            current = []
            sections.append((block[3:], current))
        elif block.startswith("### "):
            current.append(f"<h3>{_inline(block[4:])}</h3>")
        elif block.startswith("> "):
            current.append(f"<blockquote>{_inline(block[2:])}</blockquote>")
        elif block == "---":
            current = footer
        elif block:
            current.append(f"<p>{_inline(block)}</p>")

    # the headline first: it is what a reader opens the page for
    sections.sort(key=lambda section: section[0] != "Headline")
    placed = set()
    for name, data in images.items():
        where = PLOT_SECTIONS.get(name)
        for section_title, parts in sections:
            if where is not None and section_title.startswith(where):
                parts.append(_figure(name, data))
                placed.add(name)
                break
    rest = [_figure(name, data) for name, data in images.items() if name not in placed]
    if rest:
        sections.append(("Plots", rest))

    taken: set[str] = set()
    ids = [_slug(t, taken) for t, _ in sections]
    links = "".join(
        f'<a href="#{i}">{e(t.split(" (")[0])}</a>' for i, (t, _) in zip(ids, sections, strict=True)
    )
    body = [f"<nav>{links}</nav>", "<main>", "<header>", *header, "</header>"]
    for ident, (section_title, parts) in zip(ids, sections, strict=True):
        body += [f'<section id="{ident}">', f"<h2>{e(section_title)}</h2>", *parts, "</section>"]
    body += ["<footer>", *footer, "</footer>", "</main>"]
    return page(title, CSS, body)


def write_html_report(result, scenario, folder) -> Path:
    """Write ``folder/report.html`` for ``result`` (a ``SimResult``), inlining the plots already in
    ``folder``; returns its path."""
    folder = Path(folder)
    names = [name for name in (*IMAGES, *TRUST_IMAGES) if (folder / name).is_file()]
    images = {name: (folder / name).read_bytes() for name in names}
    path = folder / "report.html"
    text = html_report(result.summary, scenario, images, getattr(result, "daily", None))
    path.write_text(text, encoding="utf-8")
    return path
