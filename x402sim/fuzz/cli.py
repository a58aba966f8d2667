"""``x402sim fuzz``: the command that runs a fuzzing campaign (``x402sim.fuzz.campaign``) and reports it.

Job: the command's options, and its exit code: 0 when everything held, 1 when anything failed, 2 when
the services could not start (``x402sim.cli_errors``).

Rules: the campaign (and the HTTP stack it drives) is imported when the command runs, so ``--help``
does not load it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ..cli_errors import EXIT_FAILED, err, fail_with

console = Console()


def fuzz(
    inputs: Annotated[int, typer.Option(min=1, help="How many inputs to send.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of every input: same seed, same inputs.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once.")] = 8,
) -> None:
    """Fuzz served x402sim processes (127.0.0.1 only) and reconcile what they served on chain.

    Starts `x402sim serve` and a paywall proxy, and sends seeded hostile inputs to every endpoint.

    Checks: no 5xx, every refusal names its problem, both processes survive, payee balance = served.

    Exit code 0 when all holds, 1 when anything failed, 2 when the services could not start.

    Example: x402sim fuzz --inputs 20000 --seed 7
    """
    from .campaign import CampaignError, report, run_campaign

    try:
        outcome = run_campaign(inputs, seed=seed, concurrency=concurrency, console=err)
    except CampaignError as exc:
        raise fail_with(exc) from None
    report(outcome, console)
    if not outcome.ok:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("fuzz")(fuzz)
