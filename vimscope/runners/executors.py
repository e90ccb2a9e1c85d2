"""Which executor runs a batch: local worker processes (one per visible GPU, else CPU processes, or N) or a
dask.distributed cluster. Faces pass the user's choice; ``run_batch`` calls the factory only when there is work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vimscope.errors import ConfigError


def parse_workers(value: str | int) -> int | None:
    """``local`` (None: one process per visible GPU, else CPU processes) or a number of local processes."""
    if value == "local":
        return None
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--workers takes 'local' or a number of processes, not {value!r}") from None
    if n < 1:
        raise ConfigError("--workers must be at least 1")
    return n


def executor_factory(
    *,
    workers: str | int = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    retries: int = 2,
    threads: int | None = None,
) -> Callable[[int], Any]:
    """``make(n)``: the executor for ``n`` slides; a cluster when a scheduler is named, else local processes."""
    if scheduler and scheduler_file:
        raise ConfigError("give --scheduler or --scheduler-file, not both")
    if scheduler or scheduler_file:

        def make_cluster(n: int):
            from vimscope.runners.cluster import ClusterExecutor

            return ClusterExecutor(scheduler, scheduler_file=scheduler_file, retries=retries)

        return make_cluster
    count = parse_workers(workers)

    def make_local(n: int):
        from vimscope.runners.local import LocalExecutor, plan_workers

        plan = plan_workers(count)
        if threads:
            plan.torch_threads = threads
        plan.count = min(plan.count, n)
        return LocalExecutor(plan, retries=retries)

    return make_local
