"""The command's process-wide settings: OpenMP's wait policy and glibc's malloc thresholds, applied before the
libraries read them, and left alone where the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vimscope.cli import process

PROBE = """
import ctypes, ctypes.util, sys
import vimscope.cli.main
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
class Info(ctypes.Structure):  # glibc's struct mallinfo2: what malloc holds, and in mmap'd chunks
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
import numpy as np
before = libc.mallinfo2().hblks
blocks = [np.ones(4 << 20, np.uint8) for _ in range(4)]  # 4 MiB each: above glibc's default mmap threshold
print(libc.mallinfo2().hblks - before, "torch" in sys.modules)
"""


def run_probe(env_extra: dict) -> tuple[int, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    hblks, torch_loaded = out.split()
    return int(hblks), torch_loaded == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_command_serves_large_arrays_from_the_heap():
    """With the CLI imported, new 4 MiB arrays are no longer one mmap each (each page would fault on first touch);
    a user's MALLOC_* setting turns the tuning off. Importing the CLI loads no torch."""
    tuned, torch_loaded = run_probe({})
    untouched, _ = run_probe({"MALLOC_ARENA_MAX": "4"})
    assert not torch_loaded
    assert tuned == 0 and untouched >= 4


def test_openmp_policy_is_passive_unless_the_user_set_one(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    process.set_openmp_passive()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    process.set_openmp_passive()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_keep_freed_memory_declines_where_malloc_was_tuned(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert process.keep_freed_memory() is False
