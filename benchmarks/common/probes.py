"""Probes of a run shared by the benchmarks: GPU busy fraction, CPU seconds per thread, where each thread's time
goes, and the run with its follower jobs (instances, class regions) moved after the tile loop.

Python 3.12 allows one active cProfile per process, so per-thread profiles are out there; these sample instead.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


class GpuSampler:
    """``nvidia-smi`` utilisation of every GPU every 100 ms; busy fraction = mean utilisation over a window."""

    def __init__(self):
        self.samples: list[tuple[float, int, float]] = []  # time, gpu index, utilisation %
        self._proc = None
        self._thread = None

    def __enter__(self):
        cmd = ["nvidia-smi", "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            try:
                idx, util = (v.strip() for v in line.split(","))
                self.samples.append((time.time(), int(idx), float(util)))
            except ValueError:
                continue

    def __exit__(self, *exc):
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def busy(self, t0: float, t1: float) -> dict[str, float]:
        per: dict[int, list[float]] = {}
        for t, idx, util in self.samples:
            if t0 <= t <= t1:
                per.setdefault(idx, []).append(util / 100)
        return {str(i): round(statistics.fmean(v), 3) for i, v in sorted(per.items())}


class ThreadCpu:
    """CPU seconds per thread of this process over a window, grouped by thread name (``vimscope-write``, the
    main thread, ``vimscope-jpeg``, native threads by their kernel name): where the host's cores go in a run.
    Sampled every ``interval`` s from /proc/self/task, so threads that end mid-run still count up to their last
    sample."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = None
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self) -> None:
        py = {t.native_id: t.name for t in threading.enumerate()}
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                tid = int(task.name)
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
                if tid not in self.names:
                    self.names[tid] = py.get(tid) or (task / "comm").read_text().strip()
                self.first.setdefault(tid, cpu if self._thread is None else 0.0)
                self.last[tid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        if Path("/proc/self/task").is_dir():
            self._sample()
            self._thread = threading.Thread(target=self._run, daemon=True, name="bench-threadcpu")
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def by_group(self) -> dict[str, float]:
        """CPU seconds per thread-name group (trailing worker numbers dropped), largest first."""
        out: dict[str, float] = {}
        for tid, cpu in self.last.items():
            name = self.names.get(tid, "?")
            if name == "bench-threadcpu":
                continue
            group = name.rstrip("0123456789").rstrip("_-") or name
            out[group] = out.get(group, 0.0) + cpu - self.first.get(tid, 0.0)
        return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.01}


class StackSampler:
    """A sampling profiler that works with every Python (cProfile allows one active profiler per process from 3.12):
    every ``interval`` s the innermost frame of each thread, counted per thread group and function, and the
    innermost ``vimscope`` frame under it (what in our code asked for the work). Samples are taken when this thread
    gets the GIL, so threads blocked in C (codecs, I/O) are seen in the
    call that blocks; idle threads (waiting for work) are left out."""

    WAITING = {"result", "exception", "wait_rows", "put", "_run_once"}  # callers of a wait: also idle

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.leaf: dict[tuple[str, str], int] = {}
        self.ours: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-sampler")

    @staticmethod
    def _where(frame) -> str:
        code = frame.f_code
        return f"{Path(code.co_filename).name}:{code.co_name}"

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                f = frame
                while f is not None and f.f_code.co_name in ("wait", "get", "_wait_for_tstate_lock", "select"):
                    f = f.f_back  # a thread waiting for work (or for rows, or a future) is idle
                if f is None or f.f_code.co_name == "_worker" or f.f_code.co_name in self.WAITING:
                    continue
                group = names.get(ident, "?").rstrip("0123456789").rstrip("_-")
                leaf = self._where(frame)
                if group.startswith("bench-"):
                    continue
                key = (group, leaf)
                self.leaf[key] = self.leaf.get(key, 0) + 1
                f = frame
                while f is not None and "vimscope" not in f.f_code.co_filename:
                    f = f.f_back
                if f is not None:
                    key = (group, f"{self._where(f)}:{f.f_lineno}")
                    self.ours[key] = self.ours.get(key, 0) + 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def table(self, top: int = 40) -> dict:
        def rows(counts):
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
            return [f"{n * self.interval:8.2f} s  {g}  {w}" for (g, w), n in ranked]

        return {"leaf": rows(self.leaf), "ours": rows(self.ours)}


@contextlib.contextmanager
def followers_after_loop(on: bool):
    """With ``on``, the jobs that follow the loop (instances, class regions) are not started beside it: the finish
    step runs them after the last tile, so the loop's rate shows what they cost it."""
    if not on:
        yield
        return
    from vimscope.pipeline import follow

    start = follow.Followers.start
    follow.Followers.start = lambda self, name, fn: None
    try:
        yield
    finally:
        follow.Followers.start = start
