"""The simulator's commands: ``x402sim run``, ``x402sim schema``, ``x402sim scenarios``.

Exit codes: 0 success, 1 a run broke an invariant, 2 a bad scenario file, override or output
folder (one message naming the file, the key path and the problem; nothing is written).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import fail
from .records import PAYMENTS_MODES
from .run import OutputExists, run
from .scenario import ScenarioError, load_scenario, scenario_schema
from .sweep import SweepError, sweep_command

out_console = Console()
err = Console(stderr=True)


_fail = fail  # the one printer of errors of the command line (x402sim.cli_errors)


def run_command(
    file: Annotated[Path, typer.Argument(help="Scenario file (TOML).", show_default=False)],
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/<scenario name>/).", show_default=False)
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a value: key.path=value (repeatable).", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress bar and no report on the terminal.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print summary.json on stdout instead of the report.")
    ] = False,
    plots: Annotated[bool, typer.Option(help="Draw the PNG plots.")] = True,
    payments: Annotated[
        str | None,
        typer.Option(
            help="payments.csv: all rows, a sample (the first 1,000, then 1 %) or none "
            "(default: the scenario's simulation.payments, else all).",
            show_default=False,
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            min=1,
            help="Split the agents into N worlds simulated in parallel on Dask, metrics merged "
            "(for populations of independent agents; no payments.csv).",
        ),
    ] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --shards: local Dask worker processes (default: one per core).",
            show_default=False,
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="With --shards: an existing Dask scheduler on this machine (tcp://127.0.0.1:PORT).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Simulate a scenario in virtual time and write its results.

    Writes summary.json, payments.csv, timeline.csv, daily.csv, report.md and PNG plots into the
    output folder, all at once at the end (and audit.jsonl when agents pay under a governance
    policy). Exit code 1 when an invariant is violated, 2 for a bad
    file or option.

    Examples:

      x402sim run scenarios/quickstart.toml

      x402sim run scenarios/toctou-race.toml --set facilitators.shop.dedupe=off --out runs/race-off

      x402sim run scenarios/fee-economics.toml --seed 3 --json --quiet > summary.json

      x402sim run scenarios/compromised-agent.toml --set 'policies.fleet.triggers.velocity.max="0.3"'
    """
    try:
        scenario = load_scenario(file, set_ or ())
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    if payments is not None and payments not in PAYMENTS_MODES:
        raise _fail(f"--payments {payments}: not one of {', '.join(PAYMENTS_MODES)}")
    if (workers is not None or scheduler is not None) and shards == 1:
        raise _fail("--workers and --scheduler go with --shards N (N > 1)")
    if workers is not None and scheduler is not None:
        raise _fail("--workers and --scheduler exclude each other: start a local cluster or join one")
    target = out or Path("runs") / scenario.simulation.name
    try:
        result = run(
            scenario,
            seed=seed,
            out=target,
            force=force,
            keep_rows=False,
            progress=not quiet,
            plots=plots,
            payments=payments,
            shards=shards,
            workers=workers,
            scheduler=scheduler,
        )
    except OutputExists as exc:
        raise _fail(str(exc)) from None
    except SweepError as exc:  # an unreachable or remote scheduler
        raise _fail(str(exc)) from None
    except ScenarioError as exc:  # a scenario that cannot run this way (a shared counter in shards)
        raise _fail(str(exc)) from None
    summary = result.summary
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        from .report import terminal_summary

        out_console.print(terminal_summary(summary))
        out_console.print(f"full report: {target / 'report.md'}", highlight=False)
        audit = (summary.get("governance") or {}).get("audit")
        if audit and (target / "audit.jsonl").exists():
            head = f"{audit['entries']:,} entries, head {audit['head']}"
            out_console.print(f"audit log: {target / 'audit.jsonl'} ({head})", highlight=False)
    broken = [name for name, ok in summary["invariants"].items() if not ok]
    if broken:
        raise _fail(f"invariant violated: {', '.join(broken)} (see {target / 'summary.json'})", code=1)


def schema_command() -> None:
    """Print the JSON Schema of scenario files (for editors).

    Example: x402sim schema > scenario.schema.json
    """
    typer.echo(json.dumps(scenario_schema(), indent=2))


def scenarios_command(
    folder: Annotated[Path, typer.Argument(help="Folder of scenario files.")] = Path("scenarios"),
) -> None:
    """List the scenario files of a folder with what each one asks.

    Example: x402sim scenarios
    """
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise _fail(f"{folder}: no scenario files (*.toml)")
    table = Table("file", "name", "description")
    for path in files:
        try:
            with path.open("rb") as f:
                sim = tomllib.load(f).get("simulation", {})
            table.add_row(str(path), str(sim.get("name", "?")), str(sim.get("description", "")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            table.add_row(str(path), "[red]unreadable[/red]", str(exc))
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("schema")(schema_command)
    app.command("scenarios")(scenarios_command)
    app.command("sweep")(sweep_command)
