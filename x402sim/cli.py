"""The ``x402sim`` command line: the root app, ``--version``, and the command groups of the packages.

Job: assemble the commands; each package owns its own (``register(app)`` in ``x402sim.sim.cli``,
``x402sim.demo_cli``, ``x402sim.http.cli``, ``x402sim.transports.mcp_cli``, ``x402sim.fuzz.cli``,
``x402sim.governance.cli``, ``x402sim.conformance.cli``).

Rules: nothing but assembly here. Exit codes are the same for every command (``x402sim.cli_errors``):
0 success, 1 the command's verdict is a failure (a broken invariant, a failed case, an HTTP error), 2 bad
usage or input or a command that could not run, 3 a payment denied by ``pay --policy``. The command
groups import what only their commands need inside those commands, so every command registers on a
core install; one whose extra is missing says which to install (``cli_errors.needs_extra``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .conformance.cli import register as register_conformance
from .demo_cli import register as register_demo
from .docs_links import add_docs_links
from .fuzz.cli import register as register_fuzz
from .governance.cli import register as register_governance
from .http.cli import register as register_http
from .sim.cli import register as register_sim
from .transports.a2a_cli import register as register_a2a
from .transports.mcp_cli import register as register_mcp
from .version import NAME, VERSION

app = typer.Typer(
    name="x402sim",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _print_version(value: bool) -> None:
    if value:
        console.print(f"{NAME} {VERSION}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """x402sim: agents paying per request over HTTP 402, on an embedded EIP-3009 chain.

    Examples:

      x402sim run scenarios/quickstart.toml     # simulate a scenario, write its report

      x402sim demo                    # paid requests, balances, gas

      x402sim demo --seed 3 --json out/demo.json
    """


register_sim(app)  # run first: simulating a scenario is where a new user starts
register_demo(app)
register_http(app)
register_a2a(app)  # serve a2a, pay --a2a
register_mcp(app)  # serve mcp, pay --mcp
register_fuzz(app)
register_governance(app)
register_conformance(app)
add_docs_links(app)  # after every group: each --help ends with its docs page
