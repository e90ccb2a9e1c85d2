"""One slide of a batch, as run inside a worker (a local process or a dask.distributed worker).

The same function runs everywhere, so local and cluster runs keep the same rules: skip a slide already done
with the same settings; take its lease (or report who holds it); record ``running``; run the pipeline with a
cancel token that fires if the lease is lost; record ``done`` or ``failed`` with a one-line reason. Nothing a
slide does (a corrupt file, a bug in a stage) escapes as an exception: failures never stop the batch.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vimscope.errors import Cancelled, VimscopeError
from vimscope.runners.lease import Lease, read_lease, stale_reason
from vimscope.runners.manifest import SlideJob
from vimscope.runners.state import SlideState, StateStore, config_hash, is_current, source_signature, versions
from vimscope.types import CancelToken

# Outcome.status values; "busy" means another live process holds the lease (the driver waits and re-checks).
OUTCOMES = ("done", "failed", "skipped", "busy", "cancelled")


@dataclass(frozen=True)
class SlideTask:
    """Everything a worker needs for one slide; plain data, pickled to local processes and cluster workers."""

    job: SlideJob
    config: Any  # the batch's PipelineConfig; the job's overrides are applied in the worker
    out_root: str
    run_id: str
    retry_failed: bool = False
    torch_threads: int | None = None

    @property
    def name(self) -> str:
        return self.job.name

    def settled(self, state: SlideState | None) -> str | None:
        """Why this slide needs no work now, from its state (None: it needs work)."""
        overwrite_run = self.run_id if getattr(self.config, "overwrite", False) is True else None
        digest = slide_digest(self.config, self.job)
        return settled(state, digest, source_signature(self.job.path), self.retry_failed, overwrite_run)


@dataclass
class Outcome:
    name: str
    status: str
    reason: str | None = None
    seconds: float = 0.0
    holder: str | None = None  # who holds the lease, for "busy"
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def slide_config(config: Any, job: SlideJob) -> Any:
    """The batch config with the job's manifest overrides applied (mpp, target_mpp, a ROI file)."""
    changes = {k: getattr(job, k) for k in ("mpp", "target_mpp") if getattr(job, k) is not None}
    if isinstance(job.roi, str):
        changes["roi"] = job.roi
    if not changes:
        return config
    if isinstance(config, dict):
        return {**config, **changes}
    return dataclasses.replace(config, **changes)


def config_dict(config: Any) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(vars(config))


def job_overrides(job: SlideJob) -> dict:
    """What the config does not carry: manifest ROI boxes."""
    return {"roi": job.roi} if job.roi and not isinstance(job.roi, str) else {}


def slide_digest(config: Any, job: SlideJob) -> str:
    return config_hash(config_dict(slide_config(config, job)), job_overrides(job))


def settled(
    state: SlideState | None, digest: str, source: dict | None, retry_failed: bool, overwrite_run: str | None = None
) -> str | None:
    """Why a slide needs no work now (done, or failed and not retried), or None.

    ``overwrite_run`` (``--overwrite``): the id of this run; slides done by other runs are done again."""
    if is_current(state, digest, source):
        if overwrite_run is not None and not any(
            a.get("run") == overwrite_run and a.get("outcome") == "done" for a in state.attempts
        ):
            return None
        return "done before with the same settings"
    if (
        state is not None
        and state.status == "failed"
        and not retry_failed
        and state.config_hash == digest
        and (state.source is None or state.source == source)
    ):
        return f"failed before ({state.error}); --retry-failed runs it again"
    return None


def run_slide(task: SlideTask, cancel: CancelToken | None = None) -> Outcome:
    """Process one slide under its lease and record the result; never raises for a slide's own failure."""
    t0 = time.time()
    job = task.job
    store = StateStore(task.out_root)
    digest = slide_digest(task.config, job)
    source = source_signature(job.path)
    reason = task.settled(store.load(job.name))
    if reason:
        return Outcome(job.name, "skipped", reason)
    lease = Lease(store.lease_path(job.name), owner=f"batch {task.run_id}")
    if not lease.acquire():
        return Outcome(job.name, "busy", holder=lease.holder.describe() if lease.holder else None)
    try:
        state = store.load(job.name)  # again, under the lease: another run may have finished it meanwhile
        reason = task.settled(state)
        if reason:
            return Outcome(job.name, "skipped", reason)
        return _process_under_lease(task, store, state, lease, digest, source, cancel, t0)
    finally:
        lease.release()


def record_failure(task: SlideTask, reason: str, *, wait_s: float = 0.0) -> bool:
    """Mark a slide failed from outside its worker (the worker died); only once its lease is free or stale."""
    store = StateStore(task.out_root)
    lease = Lease(store.lease_path(task.name), owner=f"batch {task.run_id} (recording a failure)")
    deadline = time.time() + wait_s
    while not lease.acquire():
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    try:
        state = store.load(task.name) or SlideState(task.name, task.job.path)
        if state.status == "done":
            return False
        if state.attempts and state.attempts[-1].get("outcome") == "running":
            state.attempts[-1].update(outcome="failed", error=reason, finished=time.time())
        state.status, state.error, state.error_type, state.traceback = "failed", reason, "WorkerDied", None
        state.config_hash = slide_digest(task.config, task.job)
        store.save(state)
        return True
    finally:
        lease.release()


def lease_is_free(task: SlideTask) -> bool:
    """No live process holds this slide's lease (none, or a stale one)."""
    info = read_lease(StateStore(task.out_root).lease_path(task.name))
    return info is None or stale_reason(info) is not None


def _process_under_lease(task, store, state, lease, digest, source, cancel, t0) -> Outcome:
    job = task.job
    config = slide_config(task.config, job)
    state = state or SlideState(job.name, job.path)
    changed = state.config_hash not in (None, digest) or (state.source not in (None, source))
    attempt = {
        "run": task.run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": t0,
        "outcome": "running",
    }
    if lease.took_over:
        old, why = lease.took_over
        attempt["took_over"] = {"host": old.host, "pid": old.pid, "reason": why}
        for earlier in state.attempts:
            if earlier.get("outcome") == "running":  # its worker died or froze: it never finished
                earlier["outcome"] = "interrupted"
    state.attempts.append(attempt)
    state.status, state.error, state.error_type, state.traceback = "running", None, None, None
    state.slide, state.config_hash, state.source = job.path, digest, source
    state.config = config_dict(config)
    store.save(state)

    token = cancel or CancelToken()
    watching = threading.Event()
    threading.Thread(target=_cancel_when_lost, args=(lease, token, watching), daemon=True).start()
    try:
        if job.problem:
            raise _RowProblem(job.problem)
        if task.torch_threads:
            _set_torch_threads(task.torch_threads)
        result = process_slide(job, config, store.output_dir(job.name), token, overwrite=changed)
    except Cancelled:
        if lease.lost.is_set():  # someone else owns the slide now: their state, not ours
            return Outcome(job.name, "cancelled", "lease lost (this worker stalled)", time.time() - t0)
        _finish(state, attempt, "cancelled", t0)
        state.status = "pending"
        store.save(state)
        return Outcome(job.name, "cancelled", "cancelled; the next run resumes it", time.time() - t0)
    except (VimscopeError, _RowProblem) as e:
        _fail(state, attempt, t0, one_line(e), type(e).__name__)
    except MemoryError:
        _fail(state, attempt, t0, "out of memory", "MemoryError")
    except Exception as e:  # a bug in a stage: this slide fails, the batch goes on, the traceback is kept
        _fail(state, attempt, t0, f"internal error: {type(e).__name__}: {one_line(e)}", type(e).__name__)
        state.traceback = traceback.format_exc()
    except BaseException:  # KeyboardInterrupt / SystemExit: leave it resumable
        _finish(state, attempt, "interrupted", t0)
        state.status = "pending"
        store.save(state)
        raise
    else:
        _finish(state, attempt, "done", t0)
        state.status = "done"
        state.summary = result.get("summary", {})
        state.outputs = result.get("outputs", {})
        state.timings = {"total": attempt["seconds"], "pipeline": result.get("timings", {})}
    finally:
        watching.set()
    if lease.lost.is_set() or not lease.refresh():
        return Outcome(job.name, "cancelled", "lease lost (this worker stalled)", time.time() - t0)
    state.versions = versions()
    store.save(state)
    return Outcome(job.name, state.status, state.error, time.time() - t0)


def process_slide(job: SlideJob, config: Any, out_dir: Path, cancel: CancelToken, *, overwrite: bool = False) -> dict:
    """Run the pipeline on one slide into ``out_dir``; returns its summary, output paths and timings as plain data."""
    from vimscope.pipeline import run

    if overwrite and not config.overwrite:
        config = dataclasses.replace(config, overwrite=True)
    model = cached_model(config, job.path)
    result = run(job.path, config, out=out_dir, region=load_region(job.roi), cancel=cancel, model=model)
    summary = dict(result.summary or {})
    timings = summary.get("timings_s") if isinstance(summary.get("timings_s"), dict) else {}
    outputs = {k: str(v) for k, v in result.paths.items() if Path(v).exists()}
    return {"summary": summary, "outputs": outputs, "timings": timings, "skipped": result.skipped}


_MODEL_CACHE: dict = {}


def cached_model(config: Any, slide=None):
    """The configured model, built once per worker process and reused for every slide (kernels stay compiled,
    weights stay on the GPU): building it per slide would be most of the fixed per-slide cost. With no model named,
    the one the pipeline chooses for ``slide`` (buildings for a raster with a CRS: ``pipeline.choice``)."""
    from vimscope import models

    weights, name = config.weights, config.model
    if weights is None and name is None:
        name = _default_model(slide)
    key = (name, weights, os.stat(weights).st_mtime_ns if weights and os.path.isfile(weights) else None)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # one model at a time: a batch has one config, and mostly one kind of image
        if weights is not None:
            _MODEL_CACHE[key] = models.create_model(None, weights=weights)
        else:
            _MODEL_CACHE[key] = models.create_model(name)
    return _MODEL_CACHE[key]


def _default_model(slide) -> str:
    """The model the pipeline chooses for ``slide`` when none is named (its metadata only; unreadable: the slide
    default, and the run reports the error)."""
    from vimscope.pipeline import DEFAULT_MODEL, default_model

    if slide is None:
        return DEFAULT_MODEL
    from vimscope.io import open_slide

    try:
        with open_slide(slide) as reader:
            return default_model(reader.meta)[0]
    except Exception:  # noqa: BLE001 - the run opens it again and reports what is wrong
        return DEFAULT_MODEL


def load_region(roi):
    """The pipeline's ``region`` for manifest boxes (a ROI file goes through the config's ``roi`` instead)."""
    return list(roi) if roi and not isinstance(roi, str) else None


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:500] or type(error).__name__


class _RowProblem(Exception):
    """A bad manifest value or ROI file: the slide fails with this reason."""


def _finish(state: SlideState, attempt: dict, outcome: str, t0: float) -> None:
    attempt["finished"] = time.time()
    attempt["seconds"] = round(attempt["finished"] - t0, 3)
    attempt["outcome"] = outcome


def _fail(state: SlideState, attempt: dict, t0: float, reason: str, kind: str) -> None:
    _finish(state, attempt, "failed", t0)
    attempt["error"] = reason
    state.status, state.error, state.error_type = "failed", reason, kind
    state.timings = {"total": attempt["seconds"]}


def _cancel_when_lost(lease: Lease, token: CancelToken, done: threading.Event) -> None:
    while not done.is_set():
        if lease.lost.wait(0.5):
            token.cancel()
            return


def _set_torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
