"""The simulator's commands: ``x402sim run``, ``x402sim sweep``, ``x402sim schema``, ``x402sim scenarios``.

Exit codes: 0 success, 1 a run broke an invariant (a sweep: every run failed), 2 a bad scenario
file, override, grid or output folder (one message naming the file, the key path and the problem;
nothing is written), or a missing extra.

Extras: ``schema`` and ``scenarios`` run on a core install; ``run`` needs ``x402sim[sim]`` (with
``--shards``, ``x402sim[dask]``) and ``sweep`` needs ``x402sim[dask]``. The simulator is imported
inside those commands (``cli_errors.needs_extra``), so the commands register without it.

Rules: this is where override text enters. ``--set key.path=value`` options become a mapping of key
paths to values (``parse_overrides``) and ``--grid key.path=v1,v2`` options a grid of values
(``parse_grid``), each value read as TOML (``toml_text.toml_value``: a bare word is a string); the
library below takes values only.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import fail, needs_extra
from ..errors import OutputError
from .cluster import SweepError
from .headline import DEFAULT_PLOTS
from .records import PAYMENTS_MODES
from .scenario import ScenarioError, load_scenario, scenario_schema
from .shard_store import ShardFolderError
from .shipped import scenario_file, shipped_scenarios
from .toml_text import toml_literal, toml_value

if TYPE_CHECKING:
    from .sweep_output import SweepResult

out_console = Console()
err = Console(stderr=True)


# -- override text --------------------------------------------------------------------------------


def parse_overrides(options: Iterable[str]) -> dict[str, Any]:
    """``--set key.path=value`` options as ``{key.path: value}`` (each value read as TOML, a bare
    word as a string); a key given twice keeps its last value, applied in the place of its last
    option. ``ScenarioError`` for an option without ``=`` or key."""
    overrides: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScenarioError(f"--set {option}", "expected key.path=value")
        overrides.pop(key, None)
        overrides[key] = toml_value(raw)
    return overrides


def split_values(text: str) -> list[str]:
    """``text`` cut at the commas that are outside brackets, braces and quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote, escaped = 0, "", False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def parse_grid(options: Iterable[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,...`` options as ``{key: [values]}``, in the order given."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(f"--grid {option}: expected key.path=value1,value2,...")
        if key in grid:
            raise SweepError(f"--grid {key}: given twice; list all its values in one --grid")
        pieces = split_values(raw)
        if any(not piece for piece in pieces):
            raise SweepError(f"--grid {option}: an empty value (values are separated by commas)")
        grid[key] = [toml_value(piece) for piece in pieces]
    return grid


# -- x402sim run ------------------------------------------------------------------------------------


SCENARIO_HELP = "Scenario file (TOML), or the name of a shipped scenario (x402sim scenarios lists them)."


def run_command(
    file: Annotated[Path, typer.Argument(help=SCENARIO_HELP, show_default=False)],
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
    shard_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --shards: keep each finished shard in this folder, and take the shards "
            "already there (same scenario, settings, seed and --shards) instead of running them "
            "again, so a long run that stops goes on where it stopped.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Simulate a scenario in virtual time and write its results.

    Writes summary.json, payments.csv, timeline.csv, daily.csv, report.md, report.html (one
    self-contained page for a browser) and PNG plots into the output folder, all at once at the end
    (and audit.jsonl when agents pay under a governance policy). Exit code 1 when an invariant is
    violated, 2 for a bad file or option.

    Examples:

      x402sim run scenarios/quickstart.toml

      x402sim run quickstart      # a shipped scenario, by name

      x402sim run scenarios/toctou-race.toml --set facilitators.shop.dedupe=off --out runs/race-off

      x402sim run scenarios/fee-economics.toml --seed 3 --json --quiet > summary.json

      x402sim run scenarios/compromised-agent.toml --set 'policies.fleet.triggers.velocity.max="0.3"'
    """
    sharded = shards > 1
    with needs_extra("x402sim run --shards" if sharded else "x402sim run", "dask" if sharded else "sim"):
        from .run import run

        if sharded:
            import distributed  # noqa: F401  (the shards import it: a missing Dask is said before anything runs)
    try:
        scenario = load_scenario(scenario_file(file), parse_overrides(set_ or ()))
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    if payments is not None and payments not in PAYMENTS_MODES:
        raise fail(f"--payments {payments}: not one of {', '.join(PAYMENTS_MODES)}")
    if (workers is not None or scheduler is not None or shard_dir is not None) and shards == 1:
        raise fail("--workers, --scheduler and --shard-dir go with --shards N (N > 1)")
    if workers is not None and scheduler is not None:
        raise fail("--workers and --scheduler exclude each other: start a local cluster or join one")
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
            shard_dir=shard_dir,
        )
    # an output folder in the way, an unreachable or remote scheduler, a scenario that cannot run this
    # way (a shared counter in shards), a shard folder of another run
    except (OutputError, SweepError, ScenarioError, ShardFolderError) as exc:
        raise fail(str(exc)) from None
    summary = result.summary
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        from .report import terminal_summary

        out_console.print(terminal_summary(summary))
        out_console.print(f"full report: {target / 'report.md'}", highlight=False, soft_wrap=True)
        out_console.print(f"in a browser: {target / 'report.html'}", highlight=False, soft_wrap=True)
        audit = (summary.get("governance") or {}).get("audit")
        if audit and (target / "audit.jsonl").exists():
            head = f"{audit['entries']:,} entries, head {audit['head']}"
            out_console.print(f"audit log: {target / 'audit.jsonl'} ({head})", highlight=False)
    broken = [name for name, ok in summary["invariants"].items() if not ok]
    if broken:
        raise fail(f"invariant violated: {', '.join(broken)} (see {target / 'summary.json'})", code=1)


# -- x402sim sweep ----------------------------------------------------------------------------------


def sweep_command(
    file: Annotated[Path, typer.Argument(help=SCENARIO_HELP, show_default=False)],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="key.path=value1,value2,... (TOML values, as --set takes them; repeatable).",
            show_default=False,
        ),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs per combination, each with its own seed.")] = 5,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes of the local cluster (default: one per core).", show_default=False
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Use the Dask cluster at this address (tcp://host:port) instead.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: runs/sweep-<scenario name>/).", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    plot: Annotated[
        list[str] | None,
        typer.Option(
            "--plot",
            help=f"A metric to plot (repeatable; default: {', '.join(DEFAULT_PLOTS)}).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="No progress bar, no line per failed run, no table (a count stays)."),
    ] = False,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a --scheduler that is not on this machine.")
    ] = False,
) -> None:
    """Run every combination of --grid values --runs times on a Dask cluster, with confidence intervals.

    Writes sweep.csv (one row per run), sweep.json (mean, std and 95% interval of each metric per
    combination, tracebacks of failed runs) and plots into the output folder, all at once at the
    end. A failed run is reported and the sweep goes on. Exit code 1 when every run failed, 2 for
    a bad grid, file or option (before anything runs).

    Examples:

      x402sim sweep scenarios/quickstart.toml --grid agents.agents.count=10,20,40 --runs 5

      x402sim sweep scenarios/fee-economics.toml --grid chain.fee.l2_base_fee_gwei=0.0002,0.002,0.02 --runs 3

      x402sim sweep scenarios/toctou-race.toml --grid facilitators.shop.dedupe=refuse,share --scheduler tcp://127.0.0.1:8786
    """
    if workers is not None and scheduler is not None:
        raise fail("--workers and --scheduler exclude each other: start a local cluster or join one")
    with needs_extra("x402sim sweep", "dask"):
        import distributed  # noqa: F401  (the sweep imports it: a missing Dask is said before anything runs)

        from .sweep import sweep
    try:
        parsed = parse_grid(grid or [])
        path = scenario_file(file)
        name = load_scenario(path).simulation.name
        target = out or Path("runs") / f"sweep-{name}"
        result = sweep(
            path,
            parsed,
            runs,
            workers=workers,
            scheduler=scheduler,
            out=target,
            force=force,
            progress=not quiet,
            plots=plot,
            allow_remote=allow_remote,
        )
    except (ScenarioError, SweepError, OutputError) as exc:
        raise fail(str(exc)) from None
    if not quiet:
        _print_table(result)
    failed = len(result.failures)
    if failed:
        from rich.console import Console

        Console(stderr=True).print(
            f"{failed} of {len(result.rows)} runs failed; their tracebacks are in {target / 'sweep.json'}",
            highlight=False,
            markup=False,
        )
    if result.all_failed:
        raise fail("every run failed", code=1)


def _short(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits, in fixed notation unless it is very large or small."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    x = float(f"{x:.{digits - 1}e}")  # rounded first: 0.96 to one digit is 1, not 1.0
    magnitude = math.floor(math.log10(abs(x)))
    if -4 <= magnitude < 6:
        return f"{x:.{max(0, digits - 1 - magnitude)}f}"
    return f"{x:.{digits - 1}e}"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else toml_literal(value)


def _print_table(result: SweepResult) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    columns = {
        "success_rate": "success",
        "latency_p50_ms": "p50 ms",
        "break_even_price_usd": "break-even $",
        "margin_usd": "margin $",
    }
    varying = [key for key, values in result.grid.items() if len(values) > 1]
    last = [key.rsplit(".", 1)[-1] for key in varying]
    headers = last if len(set(last)) == len(last) else varying
    title = f"{result.scenario}: mean ± 95% half-width"
    table = Table(title=title, title_justify="left")
    for header in [*headers, "ok", *columns.values()]:
        table.add_column(Text(header))
    for s in result.stats:
        cells = [_shown(s["parameters"][key]) for key in varying]
        cells.append(f"{s['runs_ok']}/{s['runs_ok'] + s['runs_failed']}")
        for name in columns:
            d = s["metrics"][name]
            if d["mean"] is None:
                cells.append("-")
            elif d["ci95"] is None:
                cells.append(_short(d["mean"], 3))
            else:
                cells.append(f"{_short(d['mean'], 3)} ± {_short((d['ci95'][1] - d['ci95'][0]) / 2, 1)}")
        table.add_row(*(Text(cell) for cell in cells))
    console = Console()
    console.print(table)
    for line in result.break_even():
        if line["range_usd"] is None:
            continue
        where = " ".join(f"{k}={_shown(v)}" for k, v in line["parameters"].items())
        low = line["range_usd"][0]
        for price, gas in line["crossings"].items():
            if gas is not None:
                said = f"stops paying for its settlement at {result.gas_key} = {gas:.4g}"
            elif low > float(price):
                said = "never pays for its settlement inside the grid"
            else:
                said = "pays for its settlement everywhere in the grid"
            line_text = f"a ${price} request {said}" + (f" ({where})" if where else "")
            console.print(line_text, highlight=False, markup=False)
    if result.out is not None:
        where = f"{result.out / 'sweep.csv'}, {result.out / 'sweep.json'}"
        console.print(f"results: {where}", highlight=False, markup=False)


# -- x402sim schema, x402sim scenarios ----------------------------------------------------------------


def schema_command() -> None:
    """Print the JSON Schema of scenario files (for editors).

    Example: x402sim schema > scenario.schema.json
    """
    typer.echo(json.dumps(scenario_schema(), indent=2))


def scenarios_command(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of scenario files (default: the scenarios shipped with x402sim).", show_default=False
        ),
    ] = None,
) -> None:
    """List scenario files with what each one asks: the shipped ones (run one by name), or a folder's.

    Examples:

      x402sim scenarios

      x402sim scenarios scenarios/
    """
    if folder is None:
        files = list(shipped_scenarios().values())
        table = Table("name", "description", caption="run one: x402sim run NAME", caption_justify="left")
    else:
        files = sorted(folder.glob("*.toml"))
        if not files:
            raise fail(f"{folder}: no scenario files (*.toml)")
        table = Table("file", "name", "description")
    for path in files:
        shown = [] if folder is None else [str(path)]
        try:
            with path.open("rb") as f:
                sim = tomllib.load(f).get("simulation", {})
            table.add_row(*shown, str(sim.get("name", "?")), str(sim.get("description", "")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            table.add_row(*shown, "[red]unreadable[/red]", str(exc))
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("schema")(schema_command)
    app.command("scenarios")(scenarios_command)
    app.command("sweep")(sweep_command)
