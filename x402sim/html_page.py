"""The shell shared by x402sim's HTML reports (a run's report.html, the conformance pages): escaping,
the page around a body, and the small script that sorts a table by the header clicked.

Rules:

* A page is one self-contained document: inline CSS and script, no external URL, font or image
  (pictures go in as ``data:`` URIs). It works without the script; the script only adds sorting.
* Every piece of text goes through ``e`` (``html.escape``, quotes included), whatever its origin.
* A table with a ``<thead>`` sorts by any header: a click (or Enter) sorts ascending, the next one
  descending. Cells compare as numbers when both read as one (thousands separators, units and
  ``%`` ignored; ``data-sort`` on a cell gives its value outright), else as text; empty and "–"
  cells go last either way.
"""

from __future__ import annotations

from html import escape
from typing import Any

SORT_CSS = """
thead th { cursor: pointer; user-select: none; white-space: nowrap; }
thead th::after { content: " \\2195"; color: #afb8c1; font-size: .8em; }
thead th[aria-sort=ascending]::after { content: " \\2191"; color: inherit; }
thead th[aria-sort=descending]::after { content: " \\2193"; color: inherit; }
"""

SORT_SCRIPT = r"""
(function () {
  function key(cell) {
    var text = (cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent).trim();
    if (text === "" || text === "\u2013") return null;
    var m = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?/i.exec(text.replace(/[,\s]/g, ""));
    return m ? parseFloat(m[0]) : text;
  }
  function compare(a, b) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  function sort(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var down = th.getAttribute("aria-sort") === "ascending";
    th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(body.rows).map(function (row) {
      return {row: row, key: row.cells[col] ? key(row.cells[col]) : null};
    });
    rows.sort(function (x, y) {
      if (x.key === null || y.key === null) return compare(x.key, y.key);
      return down ? compare(y.key, x.key) : compare(x.key, y.key);
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  document.querySelectorAll("table > thead th").forEach(function (th) {
    if (!th.closest("table").tBodies.length) return;
    th.tabIndex = 0;
    th.title = "sort by this column";
    th.addEventListener("click", function () { sort(th); });
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") sort(th); });
  });
})();
"""


def e(value: Any) -> str:
    """``value`` as HTML text (``str`` of it, escaped, quotes included)."""
    return escape(str(value), quote=True)


def page(title: str, css: str, body: list[str]) -> str:
    """The whole document: ``title`` (escaped here), ``css`` then the sorting styles, ``body`` (HTML
    already), then the sorting script."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title>",
            f"<style>{css}{SORT_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            f"<script>{SORT_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
