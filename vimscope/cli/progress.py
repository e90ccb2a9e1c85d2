"""A rich progress bar fed by ``Progress`` events: tiles done, tiles/s and an ETA; reusable by ``vimscope batch``.

On a terminal it redraws in place on stderr; elsewhere (logs, CI) it prints a line per finished band at most
every few seconds, so long runs still show life without flooding the log.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vimscope.types import Progress as Event


class RateColumn(ProgressColumn):
    """Tiles per second over the run so far."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} tiles/s" if speed else "- tiles/s", style="progress.data.speed")


class RunProgress:
    """``with RunProgress(label) as bar: bar.update(event)`` for every event of ``iter_run``."""

    def __init__(
        self,
        label: str = "",
        *,
        enabled: bool | None = None,
        quiet: bool = False,
        console: Console | None = None,
        log_every: float = 10.0,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet  # no bar and no progress lines; the run's notes (e.g. an untrained model) still show
        self.live = (self.console.is_terminal if enabled is None else enabled) and not quiet
        self.label = label
        self.log_every = log_every
        self._last_log = 0.0
        self._task = None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tiles"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.live,
        )

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start(self, label: str, total: int) -> None:
        """A new bar (one per slide)."""
        self.label = label
        self._task = self._progress.add_task(label, total=max(total, 0))

    def message(self, text: str) -> None:
        if text:
            self.console.print(text, highlight=False)

    def update(self, event: Event) -> None:
        if event.stage == "plan":
            self.start(self.label, event.total)
            # the first line describes the plan; the others are notes every run shows (quiet or not)
            lines = event.message.splitlines()
            self.message("\n".join(lines[1:] if self.quiet else lines))
        elif event.stage == "tiles" and self._task is not None:
            self._progress.update(self._task, completed=event.done, total=event.total)
            due = time.monotonic() - self._last_log > self.log_every or event.done == event.total
            if not self.live and not self.quiet and due:
                self._last_log = time.monotonic()
                task = self._progress.tasks[self._task]
                speed = task.speed or 0.0
                eta = f"{(event.total - event.done) / speed:.0f} s" if speed else "unknown"
                self.console.print(
                    f"{self.label}: {event.done}/{event.total} tiles, {speed:.2f} tiles/s, ETA {eta}",
                    highlight=False,
                )
        elif event.stage == "write" and self._task is not None:
            self._progress.update(self._task, description=f"{self.label}: {event.message}")
        elif event.stage == "done" and self._task is not None:
            self._progress.update(self._task, description=f"{self.label}: done")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
