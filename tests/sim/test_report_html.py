"""report.html: a run's report as one self-contained page that shows what report.md shows.

(Opened in a real browser by tests/browser; these tests read the page's text.)
"""

import base64
import copy
import html
import json
import re
from pathlib import Path

import pytest

from x402sim.html_page import SORT_SCRIPT
from x402sim.sim import load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.report import MAX_ROWS, markdown_report
from x402sim.sim.report_html import html_report

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# a shipped scenario per kind of section: the base sections, governance, a trust section
RUNS = {
    "quickstart": ["simulation.duration=20", "agents.agents.count=3"],
    "compromised-agent": ["simulation.duration=360"],
    "pay-per-crawl": ["simulation.duration=30"],
}
_EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module", params=sorted(RUNS))
def done(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "out"
    result = run(SCENARIOS / f"{name}.toml", out=out, overrides=parse_overrides(RUNS[name]))
    return result, out


def _text(page: str) -> str:
    """The page's text: tags dropped, entities decoded, blanks collapsed."""
    body = re.sub(r"<(script|style)>.*?</\1>", " ", page, flags=re.DOTALL)
    body = re.sub(r"</?(strong|code)>", "", body)  # inline: no break in the text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def _section(page: str, title: str) -> str:
    start = page.index(f"<h2>{html.escape(title)}")
    end = page.find("</section>", start)
    return page[start:end]


def test_a_run_writes_a_self_contained_page_beside_report_md(done):
    _, out = done
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not _EXTERNAL.search(page) and "@import" not in page and "url(" not in page
    assert page.count("<script") == 1 and f"<script>{SORT_SCRIPT}</script>" in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)


def test_the_page_shows_every_cell_and_heading_of_report_md(done):
    _, out = done
    report = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    text = _text(page)
    for line in report.splitlines():
        if line == "## Plots":  # the page puts each plot in its section instead
            continue
        if line.startswith("#"):
            assert line.lstrip("# ") in text, line
        elif line.startswith("| "):
            for cell in re.split(r"(?<!\\) \| ", line.strip("| ")):
                shown = cell.replace("\\|", "|").replace("**", "").replace("`", "")
                assert shown in text, f"{cell!r} of {line!r}"
        elif line and not line.startswith(("|", "![", "---", "Run:")):
            assert line.lstrip("> ").replace("**", "").replace("`", "") in text, line
    assert report.splitlines()[-1] in text  # the run line, as the page's footer


def test_each_plot_is_inlined_in_the_section_it_illustrates(done):
    result, out = done
    page = (out / "report.html").read_text(encoding="utf-8")
    places = {"latency_cdf.png": "Latency", "throughput.png": "Headline", "economics.png": "Facilitators"}
    if "crawl" in result.summary:
        places["crawl.png"] = "Crawl"
    assert sorted(places) == sorted(p.name for p in out.glob("*.png"))
    for name, title in places.items():
        uri = "data:image/png;base64," + base64.b64encode((out / name).read_bytes()).decode()
        assert page.count(uri) == 1
        assert uri in _section(page, title), f"{name} is not in the section {title}"


def test_the_headline_comes_first_as_figure_cards(done):
    result, out = done
    s = result.summary
    page = (out / "report.html").read_text(encoding="utf-8")
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles[0] == "Headline" and "Invariants" in titles
    cards = _text(page[page.index('<div class="cards">') : page.index("</div></div></div>")])
    assert f"{s['requests']:,} Requests" in cards and f"{s['paid_requests']:,} Paid requests" in cards
    for section in ("governance", "crawl"):
        assert (section.capitalize() in " ".join(titles)) == (section in s)


def test_markup_from_a_scenario_is_escaped(done):
    result, _ = done
    evil = '<script>alert("x")</script>'
    summary = copy.deepcopy(result.summary)
    summary["scenario"] = evil
    server = next(iter(summary["servers"]))
    summary["servers"] = {evil: summary["servers"][server]}
    scenario = load_scenario(SCENARIOS / "quickstart.toml", {"simulation.description": f"**{evil}**"})
    page = html_report(summary, scenario)
    assert evil not in page and "<script>alert" not in page
    escaped = html.escape(evil, quote=True)
    assert f"<title>Simulation report: {escaped}</title>" in page
    assert f"<blockquote><strong>{escaped}</strong></blockquote>" in page
    assert f"<td>{escaped}</td>" in page


def test_the_page_keeps_the_rows_report_md_leaves_to_summary_json(done):
    result, _ = done
    crowded = copy.deepcopy(result.summary)
    server = next(iter(crowded["servers"].values()))
    crowded["servers"] = {f"server-{i:03}": server for i in range(MAX_ROWS + 7)}
    assert "_7 more rows in summary.json._" in markdown_report(crowded)
    page = html_report(crowded)
    assert all(f"<td>server-{i:03}</td>" in page for i in range(MAX_ROWS + 7))
    assert "more rows" not in page


def test_without_plots_the_page_has_no_picture(tmp_path):
    result = run(
        SCENARIOS / "quickstart.toml",
        out=tmp_path / "out",
        overrides=parse_overrides(RUNS["quickstart"]),
        plots=False,
    )
    assert result.out is not None
    page = (result.out / "report.html").read_text(encoding="utf-8")
    assert "<img" not in page and "<h2>Plots</h2>" not in page
    assert json.loads((result.out / "summary.json").read_text())["scenario"] in page
