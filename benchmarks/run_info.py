"""Where a benchmark ran, for its JSON: the GPUs, the versions of the libraries it used, the commit.

Shared by the benchmark scripts (imported with ``benchmarks/`` on ``sys.path``). ``gpu_names`` asks nvidia-smi,
so a driver process that leaves CUDA to its workers (``bench_batch``) does not open a context of its own.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_names() -> list[str]:
    """The names of the visible NVIDIA GPUs (none without nvidia-smi)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
    except FileNotFoundError:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def module_versions(names, *, include_missing: bool = False) -> dict:
    """``{name: module.__version__}`` for the importable ones (the others as None with ``include_missing``)."""
    out = {}
    for name in names:
        version = None
        with contextlib.suppress(Exception):
            version = getattr(__import__(name), "__version__", None)
        if version is not None or include_missing:
            out[name] = version
    return out


def git_commit() -> str | None:
    """The checkout's short commit (None where the tree is a copy without git, as on the GPU machine)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
