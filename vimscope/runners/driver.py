"""The batch loop, the same for local and cluster execution: decide what needs work, hand it to an executor,
follow the outcomes, wait for slides another run holds, and write the report.

An executor is anything with ``submit(task)``, ``wait(timeout) -> list[Outcome]``, ``pending``, ``cancel()``,
``close()``, ``describe()`` and optionally ``probe(out_root, inputs)``: ``LocalExecutor`` and ``ClusterExecutor``.
It is created only when there is work, so re-running a finished batch starts no worker and takes a second.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vimscope import __version__
from vimscope.runners.manifest import SlideJob
from vimscope.runners.report import build_report, write_report
from vimscope.runners.state import SlideState, StateStore
from vimscope.runners.task import Outcome, SlideTask, config_dict, lease_is_free, run_slide


@dataclass
class BatchResult:
    report: dict
    report_json: Path
    report_md: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return self.report["failures"]


def run_batch(
    jobs: list[SlideJob],
    config: Any,
    out_root: str | Path,
    make_executor: Callable[[int], Any],
    *,
    retry_failed: bool = False,
    run_id: str | None = None,
    poll_s: float = 2.0,
    on_outcome: Callable[[Outcome, int, int], None] | None = None,
    input_label: str = "",
) -> BatchResult:
    """Run every job once (skipping what is done), and report. ``make_executor(n)`` builds one for ``n`` slides."""
    out_root = Path(out_root).resolve()
    store = StateStore(out_root)
    store.ensure()
    run_id = run_id or uuid.uuid4().hex[:8]
    started = time.time()
    outcomes: dict[str, Outcome] = {}
    run = {
        "run_id": run_id,
        "host": socket.gethostname(),
        "input": input_label,
        "output": str(out_root),
        "vimscope": __version__,
        "started": started,
        "config": config_dict(config),
        "execution": "nothing to run",
        "interrupted": False,
    }

    def settle(outcome: Outcome) -> None:
        outcomes[outcome.name] = outcome
        if on_outcome is not None:
            on_outcome(outcome, len(outcomes), len(jobs))

    todo: list[SlideTask] = []
    for job in jobs:
        task = SlideTask(job, config, str(out_root), run_id, retry_failed=retry_failed)
        state = store.load(job.name)
        reason = task.settled(state)
        if reason:
            settle(Outcome(job.name, "skipped", reason))
        elif job.problem:
            settle(run_slide(task))  # fails at once, without a worker
        else:
            if state is None:
                store.save(SlideState(job.name, job.path), exclusive=True)
            todo.append(task)

    executor = None
    try:
        if todo:
            executor = make_executor(len(todo))
            run["execution"] = executor.describe()
            if hasattr(executor, "probe"):
                run["workers"] = executor.probe(out_root, [t.job.path for t in todo])
            _drive(executor, todo, store, settle, poll_s)
    except KeyboardInterrupt:
        run["interrupted"] = True
        if executor is not None:
            _cancel(executor, settle)
        raise
    finally:
        if executor is not None:
            executor.close()
        run["finished"] = time.time()
        run["seconds"] = round(run["finished"] - started, 3)
        report = build_report(store, jobs, outcomes, run)
        json_path, md_path = write_report(out_root, report)
    return BatchResult(report, json_path, md_path, outcomes)


def _drive(executor, todo: list[SlideTask], store: StateStore, settle, poll_s: float) -> None:
    """Submit everything; collect outcomes; a slide another live process holds ("busy") is re-checked every
    ``poll_s`` and resubmitted once its lease is free or stale (it then skips if the other run finished it)."""
    for task in todo:
        executor.submit(task)
    tasks = {t.name: t for t in todo}
    waiting: dict[str, SlideTask] = {}
    while executor.pending or waiting:
        if executor.pending:
            finished = executor.wait(timeout=poll_s)
        else:
            time.sleep(poll_s)
            finished = []
        for outcome in finished:
            if outcome.status == "busy":
                waiting[outcome.name] = tasks[outcome.name]
            else:
                settle(outcome)
        for name, task in list(waiting.items()):
            if not lease_is_free(task):
                continue
            del waiting[name]
            state = store.load(name)
            reason = task.settled(state)
            if reason and state is not None and state.status == "done":
                settle(Outcome(name, "skipped", "done by another run"))
            elif reason:
                settle(Outcome(name, "skipped", reason))
            else:
                executor.submit(task)


def _cancel(executor, settle, grace_s: float = 30.0) -> None:
    """Ctrl-C: ask running slides to flush and stop, and collect what they say within ``grace_s``."""
    executor.cancel()
    deadline = time.monotonic() + grace_s
    try:
        while executor.pending and time.monotonic() < deadline:
            for outcome in executor.wait(timeout=1.0):
                settle(outcome)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop waiting
