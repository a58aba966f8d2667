"""report.md, the plots and the terminal summary of a run: they say what summary.json says."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console

from x402sim.sim import load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.report import (
    IMAGES,
    MAX_BARS,
    MAX_ROWS,
    economics_figure,
    fmt_usd,
    fmt_usdc,
    markdown_report,
    terminal_summary,
    throughput_figure,
)

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.toml"
SMALL = ["simulation.duration=20", "agents.agents.count=3"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    result = run(QUICKSTART, out=out, overrides=parse_overrides(SMALL))
    summary = json.loads((out / "summary.json").read_text())
    return result, out, summary


def rendered(renderable) -> str:
    console = Console(record=True, width=100)
    console.print(renderable)
    return console.export_text()


def test_report_states_the_headline_numbers_of_summary_json(done):
    _, out, s = done
    text = (out / "report.md").read_text()
    assert s["paid_requests"] > 0
    assert text.startswith("# Simulation report: quickstart\n")
    assert f"| {s['requests']:,} | {s['paid_requests']:,} | {s['settled_payments']:,} |" in text
    assert f"| facilitator | {s['facilitators']['facilitator']['settlements']:,} |" in text
    for name, server in s["servers"].items():
        assert f"| {name} | {server['requests']:,} | {server['paid']:,} |" in text
    assert f"| end_to_end | {s['latency_ms']['end_to_end']['p50']:,.1f} |" in text
    assert "| Seed | 1 |" in text
    assert "All invariants hold." in text
    for name in s["invariants"]:
        assert f"| {name} | yes |" in text
    assert "VIOLATED" not in text


def test_wall_clock_figures_only_in_the_last_line(done):
    _, out, s = done
    lines = (out / "report.md").read_text().splitlines()
    assert lines[-1].startswith(f"Run: {s['resources']['wall_seconds']:g} wall seconds")
    assert "peak RSS" in lines[-1]
    assert not any("wall" in line for line in lines[:-1])


def test_three_small_valid_pngs_are_written_and_embedded(done):
    _, out, _ = done
    text = (out / "report.md").read_text()
    for name in IMAGES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert 0 < len(data) < 150_000
        height, width, _ = matplotlib.image.imread(out / name).shape
        assert height > 0 and width > 0
        assert f"]({name})" in text


def test_no_plots_writes_no_png(tmp_path):
    result = run(QUICKSTART, out=tmp_path / "out", overrides=parse_overrides(SMALL), plots=False)
    assert result.out is not None
    assert not list(result.out.glob("*.png"))
    text = (result.out / "report.md").read_text()
    assert "## Plots" not in text and ".png" not in text


def test_terminal_summary_renders_the_counts(done):
    _, _, s = done
    text = rendered(terminal_summary(s))
    assert f"{s['requests']:,} / {s['paid_requests']:,} / {s['settled_payments']:,}" in text
    assert "all hold" in text
    assert "full report" not in text  # the caller prints where the report is


def test_a_broken_invariant_is_marked_violated(done):
    _, _, s = done
    broken = copy.deepcopy(s)
    broken["invariants"]["supply_conserved"] = False
    text = markdown_report(broken, load_scenario(QUICKSTART, parse_overrides(SMALL)), [])
    assert "| supply_conserved | **VIOLATED** |" in text
    assert "**VIOLATED: supply_conserved**" in text
    assert "| transfers_match_payments | yes |" in text
    assert "VIOLATED: supply_conserved" in rendered(terminal_summary(broken))


def test_security_counters_and_failures_appear_when_not_zero(done):
    _, _, s = done
    attacked = copy.deepcopy(s)
    attacked["security"]["replays_served"] = 3
    attacked["failures"] = {"nonce_used": 2, "amount": 5}
    text = markdown_report(attacked)
    assert "| replays served | 3 |" in text
    assert text.index("| amount | 5 |") < text.index("| nonce used | 2 |")
    terminal = rendered(terminal_summary(attacked))
    assert "replays served 3" in terminal and "failed" in terminal


def test_money_keeps_its_precision():
    assert fmt_usdc(1.626) == "1.626"
    assert fmt_usdc(0.000001) == "0.000001"
    assert fmt_usdc(1234.5) == "1,234.5"
    assert fmt_usdc(0.0) == "0"
    assert fmt_usd(5.5023e-05) == "5.502e-05"
    assert fmt_usd(-0.026301) == "-0.0263"
    assert fmt_usd(1234.567) == "1,234.57"
    assert fmt_usd(None) == "–"


def test_many_servers_are_capped_in_tables_and_charts(done):
    _, _, s = done
    crowded = copy.deepcopy(s)
    server = next(iter(s["servers"].values()))
    crowded["servers"] = {f"server-{i:03}": {**server, "revenue_usdc": i / 10} for i in range(MAX_ROWS + 7)}
    crowded["facilitators"] = {f"fac-{i}": s["facilitators"]["facilitator"] for i in range(MAX_BARS + 5)}
    assert "_7 more rows in summary.json._" in markdown_report(crowded)
    left, right = economics_figure(crowded).axes
    labels = [t.get_text() for t in right.get_xticklabels()]
    assert len(labels) == MAX_BARS and labels[-1] == f"{MAX_ROWS + 7 - MAX_BARS + 1} others"
    assert len(left.get_xticklabels()) == MAX_BARS


def test_throughput_stops_at_the_end_of_the_run(done):
    result, _, s = done
    assert float(result.timeline[-1][0]) < s["virtual_seconds"] <= float(result.timeline[-1][1])
    top, _ = throughput_figure(result.timeline, 20, s["virtual_seconds"]).axes
    assert max(max(line.get_xdata()) for line in top.get_lines()) <= s["virtual_seconds"] + 10


def test_plotting_never_loads_pyplot(tmp_path):
    code = (
        "import sys; from x402sim.sim import run; from x402sim.sim.cli import parse_overrides; "
        f"run({str(QUICKSTART)!r}, out={str(tmp_path / 'out')!r}, overrides=parse_overrides({SMALL!r})); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "out" / "latency_cdf.png").exists()


def test_the_report_lists_what_each_payee_received_on_chain(done):
    _, _, s = done
    text = markdown_report(s)
    assert "Received on chain, by payee" in text
    for name in s["payees"]:
        assert f"| {name} |" in text
