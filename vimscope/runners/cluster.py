"""Cluster execution on dask.distributed: one task per slide, GPU resources, retries when a worker dies.

Workers read slides and write outputs and state files themselves, so every worker must see the inputs and
the output folder at the same paths as this client (NFS, Lustre, GPFS...). ``probe()`` checks that before
anything is submitted: the client writes a token file, every worker must read it back and write its own file
that the client then sees, and must find the input slides.

When a worker dies the scheduler re-runs its task elsewhere (up to ``distributed.scheduler.allowed-failures``
deaths, then ``KilledWorker``); the new task finds the dead worker's lease stale (its PID is gone, or its
heartbeat stops) and resumes the slide. ``KilledWorker`` leads to a resubmission under a new key, up to
``retries`` times, then to a failed state. ``retries=`` on submit covers the rarer case of a task raising
(e.g. the state folder briefly unreachable). Cancelling the batch sets a named ``distributed.Event`` that
running tasks watch, so they flush and stop rather than run on.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import threading
import uuid
from pathlib import Path

from vimscope import __version__
from vimscope.errors import ClusterError
from vimscope.runners.lease import STALE_S
from vimscope.runners.state import BATCH_DIR
from vimscope.runners.task import Outcome, SlideTask, one_line, record_failure, run_slide
from vimscope.types import CancelToken

PROBE_INPUTS = 200  # inputs every worker checks (a sample of a large archive is enough to catch a wrong mount)


class ClusterExecutor:
    """Submits ``SlideTask``s to a dask.distributed scheduler; ``wait()`` hands back outcomes as tasks finish."""

    def __init__(
        self,
        address: str | None = None,
        *,
        scheduler_file: str | None = None,
        retries: int = 2,
        gpu: bool | None = None,
        connect_timeout: float = 30.0,
        workers_timeout: float = 60.0,
        run_id: str | None = None,
    ):
        try:
            from distributed import Client
        except ImportError:
            raise ClusterError("cluster mode needs dask.distributed: pip install 'vimscope[distributed]'") from None
        where = address or f"the scheduler in {scheduler_file}"
        if scheduler_file is not None and not Path(scheduler_file).is_file():
            raise ClusterError(
                f"scheduler file not found: {scheduler_file} (start one with `dask scheduler --scheduler-file FILE`)"
            )
        try:
            if scheduler_file is not None:
                self.client = Client(scheduler_file=scheduler_file, timeout=connect_timeout)
            else:
                self.client = Client(address, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"cannot reach the dask scheduler at {where}: {one_line(e)}") from None
        try:
            self.client.wait_for_workers(1, timeout=workers_timeout)
        except (TimeoutError, OSError):
            self.client.close()
            raise ClusterError(
                f"no dask worker joined {where} within {workers_timeout:.0f} s "
                "(start workers with `dask worker ADDRESS --resources GPU=1`)"
            ) from None
        self.address = self.client.scheduler.address
        self.retries = retries
        self.run_id = run_id or uuid.uuid4().hex[:8]
        workers = self.client.scheduler_info()["workers"]
        self.gpu = any("GPU" in w.get("resources", {}) for w in workers.values()) if gpu is None else gpu
        self.cancel_event = f"vimscope-cancel-{self.run_id}"
        self._done: queue.Queue = queue.Queue()
        self._futures: dict[str, tuple[SlideTask, object]] = {}
        self._deaths: dict[str, int] = {}

    @property
    def pending(self) -> int:
        return len(self._futures)

    def describe(self) -> str:
        workers = self.client.scheduler_info()["workers"]
        gpus = sum(w.get("resources", {}).get("GPU", 0) for w in workers.values())
        kind = f", {gpus:g} GPU(s), one slide per GPU" if self.gpu else " (CPU workers)"
        return f"dask.distributed at {self.address}: {len(workers)} worker(s){kind}"

    def probe(self, out_root: str | Path, inputs: list[str]) -> dict:
        """Check that every worker sees the output folder and the inputs at this client's paths."""
        out_root = Path(out_root).resolve()
        probe_dir = out_root / BATCH_DIR / "probe"
        probe_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        token_file = probe_dir / f"client-{token}"
        token_file.write_text(token)
        sample = list(itertools.islice((p for p in inputs if os.path.exists(p)), PROBE_INPUTS))
        try:
            results = self.client.run(probe_worker, str(out_root), str(token_file), token, sample, on_error="return")
        finally:
            token_file.unlink(missing_ok=True)
        problems = []
        for addr, res in sorted(results.items()):
            if isinstance(res, BaseException):
                problems.append(f"worker {addr} could not run the probe: {type(res).__name__}: {one_line(res)}")
                continue
            where = f"worker {addr} (host {res['host']})"
            if not res["import_ok"]:
                problems.append(f"{where} cannot import vimscope: {res['import_error']}")
            if not res["token_ok"]:
                problems.append(f"{where} does not see the output folder {out_root} ({res['token_error']})")
            elif res["written"] and not Path(res["written"]).is_file():
                problems.append(
                    f"{where} writes {out_root} but this client does not see its file: not the same filesystem"
                )
            elif res["write_error"]:
                problems.append(f"{where} cannot write in {out_root}: {res['write_error']}")
            if res["missing"]:
                n = len(res["missing"])
                problems.append(f"{where} does not see {n} input(s), e.g. {res['missing'][0]}")
            if res.get("written"):
                Path(res["written"]).unlink(missing_ok=True)
        if problems:
            raise ClusterError(
                "cluster mode needs the inputs and the output folder on a filesystem every worker sees at the same "
                "path: " + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            )
        return {addr: {k: res[k] for k in ("host", "vimscope")} for addr, res in results.items()}

    def submit(self, task: SlideTask) -> None:
        key = f"vimscope-{task.run_id}-{task.name}-{uuid.uuid4().hex[:6]}"
        future = self.client.submit(
            execute_task,
            task,
            self.cancel_event,
            key=key,
            pure=False,
            retries=self.retries,
            resources={"GPU": 1} if self.gpu else None,
        )
        self._futures[key] = (task, future)
        future.add_done_callback(lambda f: self._done.put(f.key))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        keys = []
        try:
            keys.append(self._done.get(timeout=timeout))
            while True:
                keys.append(self._done.get_nowait())
        except queue.Empty:
            pass
        out = []
        for key in keys:
            task, future = self._futures.pop(key, (None, None))
            if task is not None:
                outcome = self._outcome(task, future)
                if outcome is not None:
                    out.append(outcome)
        return out

    def cancel(self) -> None:
        """Drop queued tasks and ask running ones to flush and stop."""
        from distributed import Event

        Event(self.cancel_event, client=self.client).set()
        self.client.cancel([f for _, f in self._futures.values()])

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _outcome(self, task: SlideTask, future) -> Outcome | None:
        from distributed import KilledWorker

        if future.status == "finished":
            return future.result()
        if future.status == "cancelled":
            return Outcome(task.name, "cancelled", "cancelled before it ran")
        error = future.exception()
        if isinstance(error, KilledWorker):
            deaths = self._deaths[task.name] = self._deaths.get(task.name, 0) + 1
            if deaths <= self.retries:
                self.submit(task)
                return None
            reason = f"workers died {deaths} times while processing this slide (KilledWorker)"
            record_failure(task, reason, wait_s=STALE_S + 10)
            return Outcome(task.name, "failed", reason)
        reason = f"runner error on the worker: {type(error).__name__}: {one_line(error)}"
        try:
            record_failure(task, reason, wait_s=5.0)
        except OSError:
            pass
        return Outcome(task.name, "failed", reason)


def _stop_stack_sampling() -> None:
    """Stop the dask worker's profiler, which calls ``sys._current_frames()`` every 10 ms: on CPython 3.11 a garbage
    collection inside that call can deadlock the whole process (python/cpython#106883). Seen here: a worker running
    a slide (a dozen threads) froze with its event loop inside ``trigger_profile`` and every other thread waiting
    for the GIL, silent until the scheduler's TTL killed it. The profile only feeds dask's dashboard."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return  # not inside a worker
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.get(name)
        if callback is not None:
            worker.loop.add_callback(callback.stop)  # on the worker's event loop, which owns the callback


def execute_task(task: SlideTask, cancel_event: str) -> Outcome:
    """The dask task: run one slide; a set ``cancel_event`` (the batch was cancelled) cancels it."""
    token = CancelToken()
    done = threading.Event()
    _stop_stack_sampling()
    try:
        from distributed import Event, get_client

        event = Event(cancel_event, client=get_client())
        threading.Thread(target=_watch_cancel, args=(event, token, done), daemon=True).start()
    except Exception:
        pass  # not inside a worker (a direct call): nothing to watch
    try:
        return run_slide(task, cancel=token)
    finally:
        done.set()


def probe_worker(out_root: str, token_file: str, token: str, inputs: list[str]) -> dict:
    """Runs on every worker: can it see the client's output folder and inputs, and write there?"""
    res = {"host": socket.gethostname(), "pid": os.getpid(), "vimscope": __version__, "missing": []}
    try:
        import vimscope.runners.task  # noqa: F401  (the task's code must import on the worker)

        res["import_ok"], res["import_error"] = True, None
    except Exception as e:
        res["import_ok"], res["import_error"] = False, f"{type(e).__name__}: {e}"
    try:
        res["token_ok"] = Path(token_file).read_text() == token
        res["token_error"] = None if res["token_ok"] else "the probe file there has other content"
    except OSError as e:
        res["token_ok"], res["token_error"] = False, e.strerror or type(e).__name__
    res["written"], res["write_error"] = None, None
    if res["token_ok"]:
        mine = Path(token_file).with_name(f"worker-{res['host']}-{res['pid']}-{uuid.uuid4().hex[:8]}")
        try:
            mine.write_text(token)
            res["written"] = str(mine)
        except OSError as e:
            res["write_error"] = e.strerror or type(e).__name__
    res["missing"] = [p for p in inputs if not os.path.exists(p)]
    return res


def _watch_cancel(event, token: CancelToken, done: threading.Event) -> None:
    """Short polls rather than a long ``event.wait``, so nothing is left pending when the cluster shuts down."""
    while not done.wait(2.0):
        try:
            if event.is_set():
                token.cancel()
                return
        except Exception:
            return  # the scheduler went away: the slide runs on (its lease still guards it)
