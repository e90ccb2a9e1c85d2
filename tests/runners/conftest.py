"""Batch-runner test helpers: small generated slides, the tiny per-pixel model, and readers of OUT."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# The pipeline options every batch test uses: the tiny per-pixel model (fixed-seed weights, so every worker
# process computes the same outputs), on the CPU, every tile (no tissue detection on synthetic textures).
PIPELINE_ARGS = ["--model", "vim_test_pointwise", "--tile", "128", "--overlap", "8", "--device", "cpu", "--no-tissue"]


def write_slide(path: Path, height: int = 256, width: int = 320, *, seed: int = 0, mpp: float = 0.5) -> Path:
    """A small tiled (deflate) RGB TIFF with a smooth texture and a pixel size in its resolution tags."""
    import tifffile

    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    r = 128 + 90 * np.sin(x / (17.0 + seed)) * np.cos(y / 23.0)
    g = 128 + 90 * np.sin((x + y) / 31.0 + seed)
    b = 128 + 60 * np.cos(x / 13.0 + seed) + 30 * np.sin(y / 7.0)
    rgb = np.clip(np.stack(np.broadcast_arrays(r, g, b), axis=-1), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        rgb,
        tile=(128, 128),
        photometric="rgb",
        compression="zlib",
        resolution=(1e4 / mpp, 1e4 / mpp),
        resolutionunit="CENTIMETER",
    )
    return path


def write_corrupt(path: Path) -> Path:
    """A file named like a slide whose TIFF header points at nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00" + bytes(200))
    return path


def states(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "_batch" / "state").glob("*.json"))}


def done_attempts(state: dict) -> int:
    return sum(1 for a in state["attempts"] if a.get("outcome") == "done")


def store_digest(out: Path, name: str) -> str:
    """sha256 over every file of a slide's OME-Zarr (the resume record excluded): equal outputs, equal digests."""
    (store,) = (out / name).glob("*.ome.zarr")
    h = hashlib.sha256()
    for f in sorted(store.rglob("*")):
        if f.is_file() and f.name != ".vimscope_resume.json":
            h.update(f.relative_to(store).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def batch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vimscope", "batch", *map(str, args)]


def start_batch(*args: str, log: Path) -> subprocess.Popen:
    """``vimscope batch`` in its own process group (so a test can kill it and its workers at once)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as f:
        return subprocess.Popen(batch_cmd(*args), stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
