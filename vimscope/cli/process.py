"""Process-wide settings of the ``vimscope`` command that the libraries read once: OpenMP's wait policy (before
torch loads) and glibc's malloc thresholds (before the large arrays come)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for it on 64-bit
TRIM_THRESHOLD = 256 << 20


def set_openmp_passive() -> None:
    """OpenMP threads that spin after each parallel region (libgomp's default) steal the cores from the other
    runtime (torch's and numba's pools alternate every layer) and from the run's reader and post-processing
    threads: on 2 cores a CPU forward used 3.7x the CPU time of PASSIVE waiting. A user's setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> bool:
    """Serve arrays up to 32 MiB from the heap and keep up to 256 MiB of freed memory, instead of a fresh mmap per
    array whose every page faults on first touch: the model's activations and the CPU scan's buffers are freed and
    allocated again every layer. Measured on the 2-core machine: the mixer's CPU scan after a fresh allocation
    7.2 -> 2.1 ms, the demo run's system time 5.4-7.1 -> 4.2-4.8 s. Not on non-glibc systems, or where the user
    tuned malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``). True when applied."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
