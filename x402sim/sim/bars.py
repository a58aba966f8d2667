"""The progress bar that sweeps and sharded runs show on stderr while their tasks come back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def counting_bar(what: str) -> Progress:
    """A started rich bar on stderr: a task's description, the bar, done of total, ``what`` (a
    template that may read the task's fields) and the time elapsed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(what),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    bar.start()
    return bar
