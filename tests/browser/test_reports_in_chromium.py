"""Both HTML reports (a run's report.html, the conformance page) opened in headless Chromium.

Each page must render without a console error or a page error, fetch nothing from the network,
show the headline figures its JSON holds, load its pictures, and sort a table when a header is
clicked. Chromium is Debian's package at ``/usr/bin/chromium`` (``make browser`` installs it where
apt-get can); Playwright never downloads a browser here. Without Chromium the tests are skipped,
saying so.

With ``X402SIM_SCREENSHOTS=<folder>`` set, the two page tests also save the screenshots the docs show
(``report-html-run.png``, ``report-html-conformance.png``) into that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from x402sim.conformance.reports import load_report
from x402sim.conformance.tally import summary_line
from x402sim.sim import load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.report import fmt_num, fmt_usdc
from x402sim.sim.report_html import html_report

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
]
# markup in a scenario's name or description must stay text
EVIL = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2">'
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
SMALL = ["simulation.duration=20", "agents.agents.count=3"]

if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM}: the browser tests of the HTML reports are skipped "
        "(install it with `apt-get install -y --no-install-recommends chromium`, or run `make browser`)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (it is in requirements.lock)"
)


def _x402sim(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "x402sim", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"x402sim {' '.join(args)} exited {done.returncode}:\n{done.stderr}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


class Visit:
    """A page opened from a file with everything that is not file: or data: refused and recorded,
    and every console error and page error kept."""

    def __init__(self, browser, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on(
            "console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}")
        )
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("request", self._request)
        self.page.goto(path.as_uri(), wait_until="load")

    @staticmethod
    def _local(url: str) -> bool:
        return url.startswith(("file:", "data:"))

    def _request(self, request) -> None:
        if not self._local(request.url):
            self.outside.append(request.url)

    def _route(self, route) -> None:
        if self._local(route.request.url):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.outside, f"the page asked the network for {sorted(set(self.outside))}"

    def column(self, table, index: int) -> list[str]:
        return table.eval_on_selector_all(
            ":scope > tbody > tr",
            f"rows => rows.map(r => r.cells[{index}].dataset.sort ?? r.cells[{index}].innerText)",
        )

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("X402SIM_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(folder) / name))

    def close(self) -> None:
        self.context.close()


def _numbers(cells: list[str]) -> list[float]:
    return [float(c.replace(",", "").split()[0]) for c in cells]


def _sorts_by(visit: Visit, table, header: str) -> None:
    """Click ``header`` twice: its column must read ascending, then descending."""
    index = table.eval_on_selector_all(":scope > thead th", "ths => ths.map(t => t.innerText.trim())").index(
        header
    )
    th = table.query_selector_all(":scope > thead th")[index]
    th.click()
    up = _numbers(visit.column(table, index))
    assert th.get_attribute("aria-sort") == "ascending"
    th.click()
    down = _numbers(visit.column(table, index))
    assert th.get_attribute("aria-sort") == "descending"
    assert len(set(up)) > 1, f"the {header} column has one value only: sorting it proves nothing"
    assert up == sorted(up) and down == sorted(up, reverse=True)


def test_a_runs_report_html(browser, tmp_path):
    out = tmp_path / "run"
    # the docs' screenshot shows the quickstart as `make demo` runs it; the test itself runs it small
    small = () if os.environ.get("X402SIM_SCREENSHOTS") else SMALL
    _x402sim("run", str(QUICKSTART), "--out", str(out), *(arg for kv in small for arg in ("--set", kv)))
    summary = json.loads((out / "summary.json").read_text())
    visit = Visit(browser, out / "report.html")
    try:
        page = visit.page
        visit.assert_clean()
        assert page.title() == f"Simulation report: {summary['scenario']}"
        cards = page.inner_text(".cards")
        for figure in ("requests", "paid_requests", "settled_payments"):
            assert fmt_num(summary[figure]) in cards
        assert fmt_usdc(summary["volume_usdc"]) in cards
        assert summary["paid_requests"] > 0
        text = page.inner_text("body")
        assert "All invariants hold." in text
        sections = page.eval_on_selector_all("section > h2", "hs => hs.map(h => h.innerText)")
        assert sections[0] == "Headline"
        for title in ("Latency", "Gas", "Facilitators", "Servers", "Security", "Invariants", "x402scan"):
            assert any(s.startswith(title) for s in sections), title
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        assert len(images) == 3 and all(done and width > 0 for _, done, width in images), images
        visit.screenshot("report-html-run.png")
        latency = page.query_selector("section#latency-ms-warm-up-excluded table")
        _sorts_by(visit, latency, "p50")
        visit.assert_clean()
    finally:
        visit.close()


def test_the_conformance_report_html(browser, tmp_path):
    report_json, report_html = tmp_path / "report.json", tmp_path / "report.html"
    _x402sim(
        "conformance",
        "server",
        "--builtin",
        "reference",
        # three groups make a page of every kind of row (the trust cases skip): what is tested is
        # the page, the catalog is judged elsewhere
        "--cases",
        "server.payment",
        "--cases",
        "server.replay",
        "--cases",
        "server.trust",
        "--json",
        str(report_json),
        "--html",
        str(report_html),
    )
    report = load_report(report_json)
    visit = Visit(browser, report_html)
    try:
        page = visit.page
        visit.assert_clean()
        visit.screenshot("report-html-conformance.png")
        assert page.inner_text("p.summary") == summary_line(report)
        assert report.target.name in page.inner_text("h1")
        rows = page.query_selector_all("tr.case")
        assert len(rows) == len(report.results)
        counts = report.counts()
        assert counts["passed"] > 0 and counts["skipped"] > 0
        for outcome, n in counts.items():
            if n:
                assert page.locator(f"tr.case.o-{outcome}").count() == n
        table = page.query_selector("table:has(tr.case)")
        _sorts_by(visit, table, "duration")
        visit.assert_clean()
    finally:
        visit.close()


def test_markup_from_the_scenario_stays_text(browser, tmp_path):
    """A run's report.html built for a scenario named and described with markup: nothing runs."""
    scenario = load_scenario(QUICKSTART, {**parse_overrides(SMALL), "simulation.description": EVIL})
    result = run(scenario)
    summary = {**result.summary, "scenario": EVIL}
    path = tmp_path / "report.html"
    path.write_text(html_report(summary, scenario, daily=result.daily), encoding="utf-8")
    visit = Visit(browser, path)
    try:
        visit.assert_clean()
        assert visit.page.evaluate("window.injected") is None
        assert visit.page.title() == f"Simulation report: {EVIL}"
        assert visit.page.inner_text("h1") == f"Simulation report: {EVIL}"
        assert visit.page.inner_text("blockquote") == EVIL
    finally:
        visit.close()


def test_the_guard_sees_a_request_that_leaves_the_page(browser, tmp_path):
    """The network check above is real: a page that asks for a remote picture is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    visit = Visit(browser, page)
    try:
        assert set(visit.outside) == {"http://127.0.0.1:9/x.png"}
    finally:
        visit.close()
