"""A rich progress bar for ``vimscope train``: steps done, loss, learning rate, ETA; epoch lines above it.

On a terminal it redraws in place on stderr; elsewhere (logs, CI) it prints the epoch lines and a step line at
most every 30 seconds.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """``with TrainProgress() as bar: bar.update(event); bar.log(line)`` for the events of ``Trainer.iter_train``."""

    def __init__(self, *, console: Console | None = None, enabled: bool | None = None, log_every: float = 30.0):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if enabled is None else enabled
        self.log_every = log_every
        self._last = 0.0
        self._task = None
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  epoch {task.fields[epoch]}  loss {task.fields[loss]}  lr {task.fields[lr]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, event) -> None:
        fields = {
            "epoch": f"{event.epoch}/{event.epochs}",
            "loss": f"{event.loss:.4f}" if event.loss is not None else "-",
            "lr": f"{event.lr:.2e}" if event.lr is not None else "-",
        }
        if self._task is None:
            self._task = self._progress.add_task("train", total=event.total, completed=event.step, **fields)
        self._progress.update(self._task, completed=event.step, **fields)
        now = time.monotonic()
        if not self.live and event.kind == "step" and now - self._last >= self.log_every:
            self._last = now
            self.console.print(f"step {event.step}/{event.total} loss {fields['loss']} lr {fields['lr']}")

    def retotal(self, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=total)

    def log(self, line: str) -> None:
        self.console.print(line)
