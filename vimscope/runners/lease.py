"""Leases: who works on a slide now, kept alive by a heartbeat, so a crashed worker's slide can be taken over.

A lease file holds host, PID, the process's start time, when the lease was taken and a heartbeat that a thread
refreshes every ``HEARTBEAT_S`` seconds. It is stale when its heartbeat is older than ``STALE_S`` seconds, or
when its host is this host and its process is gone (a PID reused by another process counts as gone: the start
times differ). Creating a lease is one atomic hard link (or ``O_EXCL`` create), which NFS and local disks
honour; taking over a stale lease and refreshing a heartbeat happen under a short-lived mutex file, so two
takers can never both win, and a holder that was frozen past ``STALE_S`` learns at its next heartbeat that it
lost the lease (``lost`` is set; the runner then cancels the slide).

Heartbeats compare wall clocks of different hosts: keep them within a few seconds (NTP), far below ``STALE_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

HEARTBEAT_S = 10.0
STALE_S = 60.0
MUTEX_STALE_S = 30.0  # a mutex older than this was left by a process that died inside the critical section


@dataclass
class LeaseInfo:
    host: str
    pid: int
    pid_start: float | None  # the process's creation time: tells a reused PID from the holder
    started: float
    heartbeat: float
    token: str
    owner: str = ""  # free text: run id, worker address

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        age = time.time() - self.heartbeat
        return f"{self.owner or 'a worker'} (host {self.host}, pid {self.pid}, heartbeat {age:.0f} s ago)"


def stale_reason(info: LeaseInfo, *, stale_s: float = STALE_S, now: float | None = None) -> str | None:
    """Why ``info`` no longer protects its slide, or None while its holder is alive."""
    now = time.time() if now is None else now
    if now - info.heartbeat > stale_s:
        return f"heartbeat {now - info.heartbeat:.0f} s old"
    if info.host == socket.gethostname() and not process_alive(info.pid, info.pid_start):
        return f"process {info.pid} on this host is gone"
    return None


def process_alive(pid: int, started: float | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if started is not None:
        now_started = process_start_time(pid)
        if now_started is not None and abs(now_started - started) > 1.0:
            return False  # the PID was reused
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def read_lease(path: str | Path) -> LeaseInfo | None:
    """The lease at ``path``; None if there is none. A half-written file reads as a fresh foreign lease."""
    path = Path(path)
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        return LeaseInfo(**json.loads(text))
    except (ValueError, TypeError):
        return LeaseInfo(host="?", pid=-1, pid_start=None, started=mtime, heartbeat=mtime, token="?")


class Lease:
    """A lease on one path. ``acquire()`` returns whether it was taken; ``holder`` says who has it otherwise."""

    def __init__(
        self, path: str | Path, *, owner: str = "", heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S
    ):
        self.path = Path(path)
        self.owner = owner
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.lost = threading.Event()
        self.holder: LeaseInfo | None = None  # the other holder when acquire() failed
        self.took_over: tuple[LeaseInfo, str] | None = None  # the stale lease replaced, and why it was stale
        self._info: LeaseInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._info is not None and not self.lost.is_set()

    def acquire(self) -> bool:
        now = time.time()
        pid = os.getpid()
        info = LeaseInfo(socket.gethostname(), pid, process_start_time(pid), now, now, uuid.uuid4().hex, self.owner)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not _create_exclusive(self.path, info.to_json()):
            with _mutex(self.path):
                current = read_lease(self.path)
                reason = None if current is None else stale_reason(current, stale_s=self.stale_s)
                if current is not None and reason is None:
                    self.holder = current
                    return False
                if current is not None:
                    self.took_over = (current, reason)
                _replace(self.path, info.to_json())
        self._info = info
        self.lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.path.stem}", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._info is None:
            return
        try:
            with _mutex(self.path):
                current = read_lease(self.path)
                if current is not None and current.token == self._info.token:
                    self.path.unlink(missing_ok=True)
        except TimeoutError:
            pass  # left in place: stale once this process is gone or its heartbeat ages
        self._info = None

    def refresh(self) -> bool:
        """One heartbeat; False (and ``lost`` set) when someone took the lease over."""
        assert self._info is not None
        try:
            with _mutex(self.path, timeout=self.heartbeat_s):
                current = read_lease(self.path)
                if current is None or current.token != self._info.token:
                    self.lost.set()
                    return False
                self._info.heartbeat = time.time()
                _replace(self.path, self._info.to_json())
        except TimeoutError:
            pass  # the next beat tries again; a stale mutex is cleared by whoever waits on it
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.refresh():
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` only if it does not exist, in one step (readers never see it empty)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            try:
                fd2 = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "w") as f:
                f.write(text)
            return True
    finally:
        os.unlink(tmp)


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _mutex(path: Path, timeout: float = 30.0):
    """A short critical section shared by every process that sees ``path`` (an ``O_EXCL`` lock file)."""
    lock = path.with_name(path.name + ".mutex")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.close(fd)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > MUTEX_STALE_S:
                    lock.unlink(missing_ok=True)  # its owner died inside the critical section
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"lock {lock} is held") from None
            time.sleep(0.01)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
