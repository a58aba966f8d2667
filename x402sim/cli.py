"""The ``x402sim`` command line. Only this module imports every layer.

Exit codes: 0 success, 1 the run found a broken invariant, 2 bad usage or input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .demo import USDC, DemoReport, run_demo

app = typer.Typer(
    name="x402sim",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _usdc(atomic: int) -> str:
    return f"{atomic / USDC:,.6f}"


@app.callback()
def main() -> None:
    """x402sim: agents paying per request over HTTP 402, on an embedded EIP-3009 chain.

    Examples:

      x402sim demo                    # paid requests, balances, gas

      x402sim demo --seed 3 --json out/demo.json
    """


@app.command()
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
        raise typer.Exit(1)


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
            _usdc(before),
            _usdc(after),
            f"{(after - before) / USDC:+,.6f}",
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
    console.print(f"token supply: {_usdc(report.supply_before)} -> {_usdc(report.supply_after)} ({ok})")


def _write_json(path: Path, report: DemoReport) -> None:
    data = {
        "seed": report.seed,
        "events": report.events,
        "balances": [{"who": n, "address": a, "before": b, "after": af} for n, a, b, af in report.balances],
        "paid_requests": report.paid_requests,
        "settlements": report.settlements,
        "gas_used": report.gas_used,
        "transfers_on_chain": report.transfers_on_chain,
        "supply_before": report.supply_before,
        "supply_after": report.supply_after,
        "replay_reason": report.replay_reason,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # no half-written report if we are interrupted
