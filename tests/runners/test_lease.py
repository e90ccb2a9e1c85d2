"""Leases: exclusive, kept alive by a heartbeat, taken over only when stale, and never by two at once."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time

from vimscope.runners.lease import Lease, LeaseInfo, read_lease, stale_reason


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(path, **fields):
    now = time.time()
    info = dict(host=socket.gethostname(), pid=os.getpid(), pid_start=None, started=now, heartbeat=now, token="t0")
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LeaseInfo(**info).to_json())


def test_lease_is_exclusive_and_released(tmp_path):
    path = tmp_path / "s.lease"
    first, second = Lease(path, owner="run A"), Lease(path, owner="run B")
    assert first.acquire()
    assert not second.acquire()
    assert second.holder.owner == "run A" and second.holder.pid == os.getpid()
    first.release()
    assert not path.exists()
    assert second.acquire()
    second.release()


def test_dead_pid_on_this_host_is_stale_and_taken_over(tmp_path):
    path = tmp_path / "s.lease"
    pid = _dead_pid()
    _write(path, pid=pid)  # fresh heartbeat, but the process is gone
    lease = Lease(path)
    assert lease.acquire()
    old, why = lease.took_over
    assert old.pid == pid and f"process {pid} on this host is gone" == why
    assert read_lease(path).pid == os.getpid()
    lease.release()


def test_heartbeat_age_decides_for_other_hosts(tmp_path):
    path = tmp_path / "s.lease"
    _write(path, host="elsewhere", pid=1, heartbeat=time.time() - 5)
    lease = Lease(path)
    assert not lease.acquire(), "a fresh lease of a live-looking holder elsewhere must be respected"
    _write(path, host="elsewhere", pid=1, heartbeat=time.time() - 61)
    assert "heartbeat 61 s old" == stale_reason(read_lease(path))
    assert lease.acquire()
    lease.release()


def test_heartbeat_refreshes_and_detects_a_takeover(tmp_path):
    path = tmp_path / "s.lease"
    lease = Lease(path, heartbeat_s=0.05)
    assert lease.acquire()
    first = read_lease(path).heartbeat
    time.sleep(0.3)
    assert read_lease(path).heartbeat > first
    _write(path, token="someone-else")  # as if our heartbeat had gone stale and another worker took over
    assert lease.lost.wait(2.0)
    lease.release()
    assert read_lease(path).token == "someone-else", "releasing a lost lease must not delete the new holder's"


def _race(path, barrier, results):
    barrier.wait()
    lease = Lease(path)
    results.put((os.getpid(), lease.acquire()))
    barrier.wait()  # stay alive until everyone has tried: a winner that exits leaves a stale lease behind


def test_only_one_of_many_racers_takes_a_stale_lease(tmp_path):
    path = tmp_path / "s.lease"
    _write(path, pid=_dead_pid())
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    won = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join()
    winners = [pid for pid, ok in won if ok]
    assert len(winners) == 1
    assert read_lease(path).pid == winners[0]
