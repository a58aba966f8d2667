"""The progress bars that sweeps and sharded runs show on stderr while their tasks come back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import Progress

    from .shards import ShardResult


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


class ShardProgress:
    """A rich progress bar on stderr (shards done of all, time elapsed) and a line per shard done."""

    def __init__(
        self, name: str, total: int, kept: list[ShardResult], folder: Path | None, show: bool
    ) -> None:
        self.name, self.total, self.kept, self.folder, self.show = name, total, kept, folder, show
        self.bar: Progress | None = None

    def __enter__(self) -> ShardProgress:
        if self.show:
            self.bar = counting_bar("shards")
            self.task = self.bar.add_task(self.name, total=self.total, completed=len(self.kept))
            if self.kept:
                taken = ", ".join(str(r.index) for r in self.kept)
                self._say(f"taken from {self.folder}: shard{'s' * (len(self.kept) > 1)} {taken}")
        return self

    def _say(self, line: str) -> None:
        assert self.bar is not None
        self.bar.console.print(f"{self.name}: {line}", highlight=False, markup=False, soft_wrap=True)

    def done(self, result: ShardResult) -> None:
        if self.bar is None:
            return
        self._say(
            f"shard {result.index} of {self.total} done in {_duration(result.wall_seconds)}, "
            f"{result.peak_rss_mb:,.0f} MB"
        )
        self.bar.update(self.task, advance=1)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds: float) -> str:
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
