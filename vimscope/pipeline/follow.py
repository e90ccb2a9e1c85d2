"""Work that follows the tile loop down the output: instances and class regions, while the model runs.

Both read the stitched maps back in full-width row bands, top to bottom, and only ever need rows that are final.
So instead of waiting for the last tile they run in their own threads from the start of the loop: a job asks
``wait_rows(y)`` before it reads rows above ``y`` and blocks until every chunk of the maps there is written
(``FinalRows``, advanced by the writer thread when bands finish; a read waits for the writes of its chunks; in
blend mode a band's last chunk row waits for the band below). What they write is what the same steps write after
the loop (the same cells, in the same order: ids and bytes do not depend on the timing). A resumed run starts
them again from the top: the chunks written before are final at once. Slides wider than one stripe finish no row
before the last stripe starts, so there the jobs mostly run after the loop, as before.

Their work is numpy, scipy, scikit-image and shapely calls that release the GIL for most of their time. An error
in a job stops the tile loop at its next band; a cancelled or failed loop stops the jobs (``abort``), and each
drops its partial files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vimscope.errors import Cancelled

if TYPE_CHECKING:
    from vimscope.pipeline.runstate import Run


class FinalRows:
    """How far down the output is final: every chunk of the maps above row ``final`` is written (queued to the
    disk; reads wait for the writes of their chunks)."""

    def __init__(self, height: int, final: int) -> None:
        self.height = int(height)
        self.final = min(int(final), self.height)
        self._cond = threading.Condition()
        self._stopped = False

    def advance(self, final: int) -> None:
        """Rows above ``final`` are written (the loop's writer handed over their last chunks)."""
        with self._cond:
            self.final = max(self.final, min(int(final), self.height))
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake every waiter with ``Cancelled`` (the loop failed or was cancelled)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wait(self, y: int) -> None:
        """Block until rows [0, y) are final."""
        with self._cond:
            while not self._stopped and self.final < min(y, self.height):
                self._cond.wait()
            if self._stopped:
                raise Cancelled("the tile loop stopped")


class Followers:
    """Named jobs ``fn(wait_rows) -> result``, each in a thread; ``result(name)`` joins one."""

    def __init__(self, rows: FinalRows) -> None:
        self.rows = rows
        self._threads: dict[str, threading.Thread] = {}
        self._results: dict[str, object] = {}
        self._errors: dict[str, BaseException] = {}
        self.seconds: dict[str, float] = {}

    def start(self, name: str, fn: Callable[[Callable[[int], None]], object]) -> None:
        thread = threading.Thread(target=self._run, args=(name, fn), name=f"vimscope-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _run(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        waited = [0.0]

        def wait_rows(y: int) -> None:
            t = time.perf_counter()
            try:
                self.rows.wait(y)
            finally:
                waited[0] += time.perf_counter() - t

        try:
            self._results[name] = fn(wait_rows)
        except BaseException as e:  # noqa: BLE001 - handed to the loop or to result()
            self._errors[name] = e
        finally:
            self.seconds[name] = time.perf_counter() - t0 - waited[0]  # working, not waiting for rows

    def __contains__(self, name: str) -> bool:
        return name in self._threads

    def check(self) -> None:
        """Raise the error of a job that failed (not of one stopped by ``abort``)."""
        for e in self._errors.values():
            if not isinstance(e, Cancelled):
                raise e

    def result(self, name: str):
        """Wait for job ``name``; its result, or its error raised here."""
        self._threads[name].join()
        if name in self._errors:
            raise self._errors[name]
        return self._results[name]

    def abort(self) -> None:
        """Stop every job (they raise ``Cancelled`` at their next wait and drop their partial files)."""
        self.rows.stop()
        for thread in self._threads.values():
            thread.join()


def start_followers(run: Run) -> Followers:
    """The jobs this run has: instances for a nuclei model, class regions when GeoJSON or GeoPackage is asked for."""
    from vimscope.pipeline import exports

    followers = Followers(FinalRows(run.plan.tiling.out_shape[0], run.stitcher.final_rows()))
    if "nuclei" in run.writer.names:
        followers.start("instances", lambda wait: exports.instances(run, wait_rows=wait))
    if exports.wants_regions(run.plan):
        followers.start("geojson", lambda wait: exports.class_regions(run, wait_rows=wait))
    return followers
