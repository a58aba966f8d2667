"""``x402sim demo``: run the demonstration of ``x402sim.demo`` and render its report.

Job: the command's options, the terminal rendering of a ``DemoReport`` and its JSON file.

Rules: ``x402sim.demo`` computes the facts and stays free of typer and rich; this module only renders
them. Exit code 1 when the demo's on-chain invariants do not hold (see ``x402sim.cli_errors``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .cli_errors import EXIT_FAILED
from .demo import DemoReport, run_demo
from .money import format_usdc_fixed

console = Console()


def demo(
    seed: Annotated[int, typer.Option(help="Seed of every key, nonce and block: same seed, same run.")] = 7,
    requests: Annotated[int, typer.Option(min=1, max=1000, help="Rounds of paid requests per agent.")] = 5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")
    ] = None,
) -> None:
    """Run agents paying resource servers on the embedded chain and report what happened.

    Example: x402sim demo --requests 10
    """
    with console.status("starting the embedded chain and paying…"):
        report = run_demo(seed=seed, requests=requests)
    _render(report)
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"report written to {json_out}")
    if not report.supply_constant or report.transfers_on_chain != report.settlements:
        console.print("[red]invariant broken: supply changed or transfers do not match settlements[/red]")
        raise typer.Exit(EXIT_FAILED)


def _render(report: DemoReport) -> None:
    console.rule(f"x402sim demo (seed {report.seed})")
    for event in report.events:
        console.print("  " + event)
    table = Table(title="USDC balances (on chain)")
    for col in ("who", "address", "before", "after", "change"):
        table.add_column(col, justify="right" if col in ("before", "after", "change") else "left")
    for name, address, before, after in report.balances:
        table.add_row(
            name,
            address[:10] + "…" + address[-4:],
            format_usdc_fixed(before),
            format_usdc_fixed(after),
            format_usdc_fixed(after - before, plus=True),
        )
    console.print(table)
    gas = report.gas_used
    mean_gas = sum(gas) / len(gas) if gas else 0
    console.print(
        f"paid requests: {report.paid_requests}   settlements: {report.settlements}   "
        f"Transfer logs on chain: {report.transfers_on_chain}"
    )
    console.print(
        f"gas per settlement: mean {mean_gas:,.0f}, "
        f"first {gas[0] if gas else 0:,}, last {gas[-1] if gas else 0:,}"
    )
    console.print(
        f"replayed payment refused with [bold]{report.replay_reason}[/bold] (class {report.replay_class})"
    )
    ok = "[green]constant[/green]" if report.supply_constant else "[red]CHANGED[/red]"
    supply = f"{format_usdc_fixed(report.supply_before)} -> {format_usdc_fixed(report.supply_after)}"
    console.print(f"token supply: {supply} ({ok})")


def _write_json(path: Path, report: DemoReport) -> None:
    data = dataclasses.asdict(report)
    data["balances"] = [
        dict(zip(("who", "address", "before", "after"), row, strict=True)) for row in report.balances
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # no half-written report if we are interrupted


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
