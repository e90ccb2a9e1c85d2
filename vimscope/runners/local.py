"""Local execution: worker processes on this host, one per visible GPU, or CPU processes sharing the cores.

Each worker is a spawned process that runs one slide at a time and keeps its model and compiled kernels warm
between slides. The parent knows which slide each worker holds, so when a worker dies (out of memory, a
segfault in a decoder, ``kill -9``) the slide is retried on a fresh worker (it resumes at the band where the
dead one stopped) and, after ``retries`` deaths, recorded as failed; the other workers go on.

Ctrl-C asks every worker to cancel (the pipeline flushes what it has, the slide stays resumable) and waits
a grace period before terminating them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_any

from vimscope.runners.task import Outcome, SlideTask, one_line, record_failure, run_slide
from vimscope.types import CancelToken

CPU_PROCESS_CORES = 4  # default CPU workers: one per this many cores (at least one)


def visible_gpus() -> list[str]:
    """The GPUs a run may use: ``CUDA_VISIBLE_DEVICES`` when set, else those torch sees (without a CUDA context)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class WorkerPlan:
    """How many local workers, each one's environment, and its torch threads."""

    count: int
    gpus: list[str]
    torch_threads: int | None

    def env(self, index: int) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": self.gpus[index % len(self.gpus)] if self.gpus else ""}

    def describe(self) -> str:
        if self.gpus:
            return f"{self.count} local worker(s) on GPU {', '.join(self.gpus[: self.count])}"
        return f"{self.count} local CPU worker(s), {self.torch_threads} torch thread(s) each"


def plan_workers(workers: int | None = None, *, gpus: list[str] | None = None, cores: int | None = None) -> WorkerPlan:
    """Default: one process per visible GPU; without GPUs, one CPU process per 4 cores with
    torch threads = cores / workers."""
    gpus = visible_gpus() if gpus is None else gpus
    cores = cores or cpu_count()
    if gpus:
        return WorkerPlan(workers or len(gpus), gpus, None)
    count = workers or max(1, cores // CPU_PROCESS_CORES)
    return WorkerPlan(count, [], max(1, cores // count))


class LocalExecutor:
    """Runs ``SlideTask``s on local worker processes; ``wait()`` hands back outcomes as slides finish."""

    def __init__(self, plan: WorkerPlan, *, retries: int = 2, start_method: str = "spawn"):
        self.plan = plan
        self.retries = retries
        self._ctx = mp.get_context(start_method)
        self._queue: deque[SlideTask] = deque()
        self._workers: list[_Worker] = []
        self._deaths: dict[str, int] = {}
        self._ready: list[Outcome] = []
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(1 for w in self._workers if w.task is not None) + len(self._ready)

    def describe(self) -> str:
        return self.plan.describe()

    def submit(self, task: SlideTask) -> None:
        if task.torch_threads is None and self.plan.torch_threads:
            task = replace(task, torch_threads=self.plan.torch_threads)
        if getattr(task.config, "workers", None) == 0:  # reader threads "auto": share the cores between workers
            task = replace(task, config=replace(task.config, workers=max(2, cpu_count() // self.plan.count)))
        self._queue.append(task)
        self._dispatch()

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes of slides finished since the last call; blocks up to ``timeout`` seconds for the first one."""
        if not self._ready:
            busy = [w for w in self._workers if w.task is not None]
            if busy:
                ready = wait_any([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
                for w in busy:
                    if w.conn in ready or w.process.sentinel in ready:
                        self._collect(w)
            self._dispatch()
        out, self._ready = self._ready, []
        return out

    def cancel(self) -> None:
        """Ask every busy worker to stop its slide at the next batch boundary (it stays resumable)."""
        self._queue.clear()
        for w in self._workers:
            if w.task is not None:
                w.cancel.set()

    def close(self, grace_s: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(grace_s)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(5)
            w.conn.close()
        self._workers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _dispatch(self) -> None:
        while self._queue:
            idle = next((w for w in self._workers if w.task is None), None)
            if idle is None:
                if len(self._workers) >= self.plan.count:
                    return
                idle = self._start_worker()
            task = self._queue.popleft()
            idle.task = task
            idle.cancel.clear()
            try:
                idle.conn.send(task)
            except (BrokenPipeError, OSError):
                self._on_death(idle)

    def _start_worker(self) -> _Worker:
        # a replacement takes the slot (and so the GPU) of the worker it replaces
        index = min(set(range(self.plan.count)) - {w.index for w in self._workers})
        parent, child = self._ctx.Pipe()
        cancel = self._ctx.Event()
        env = self.plan.env(index)
        process = self._ctx.Process(
            target=worker_main, args=(child, cancel, env), name=f"vimscope-batch-{index}", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(index, process, parent, cancel, env)
        self._workers.append(worker)
        return worker

    def _collect(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message == "ready":
                    worker.ready = True
                    continue
                worker.task = None
                self._ready.append(message)
                return
        except (EOFError, OSError):
            pass
        if not worker.process.is_alive():
            self._on_death(worker)

    def _on_death(self, worker: _Worker) -> None:
        """A worker died with a slide: retry it on a new worker, or record it failed after ``retries`` deaths."""
        worker.process.join(5)
        code = worker.process.exitcode
        self._workers.remove(worker)
        worker.conn.close()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if not worker.ready:  # not a slide's fault: the environment cannot start workers at all
            self.cancel()
            raise RuntimeError(f"a local worker process exited ({how}) before it started; see its error output")
        task = worker.task
        if task is None:
            return
        deaths = self._deaths[task.name] = self._deaths.get(task.name, 0) + 1
        if deaths <= self.retries:
            self._queue.appendleft(task)
            return
        reason = f"the worker process died ({how}) {deaths} times while processing this slide"
        try:
            record_failure(task, reason, wait_s=5.0)
        except OSError as e:
            reason += f" (state not written: {one_line(e)})"
        self._ready.append(Outcome(task.name, "failed", reason))


@dataclass
class _Worker:
    index: int
    process: mp.process.BaseProcess
    conn: mp.connection.Connection
    cancel: object  # multiprocessing Event
    env: dict
    task: SlideTask | None = None
    ready: bool = False  # it said hello: it imported and started (a death before that is not a slide's fault)


def worker_main(conn, cancel_event, env: dict) -> None:
    """A local worker: pin the GPU before anything imports torch, then run slides until told to stop."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cancels us cleanly
    try:  # import the stages (torch, kernels, readers) now, so the first slide's time is its own
        from vimscope.io import open_slide  # noqa: F401
        from vimscope.models import create_model  # noqa: F401
        from vimscope.pipeline import run  # noqa: F401
    except Exception:
        pass  # the slides will fail with the reason
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        token = CancelToken()
        done = threading.Event()
        threading.Thread(target=_forward_cancel, args=(cancel_event, token, done), daemon=True).start()
        try:
            outcome = run_slide(task, cancel=token)
        except Exception as e:  # the runner itself failed (e.g. the state folder is not writable)
            outcome = Outcome(task.name, "failed", f"runner error: {type(e).__name__}: {one_line(e)}")
        finally:
            done.set()
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return


def _forward_cancel(event, token: CancelToken, done: threading.Event) -> None:
    while not done.is_set():
        if event.wait(0.5):
            token.cancel()
            return
