"""Where a benchmark ran, for its JSON: the GPUs, the versions of the libraries it used, the commit; and where the
JSON goes (``write_result``).

``gpu_names`` asks nvidia-smi, so a driver process that leaves CUDA to its workers (the batch benchmark) does not
open a context of its own. ``RESULTS`` is where the latest result per benchmark and card is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


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


def card_slug(card: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'cpu' stays: the card part of a result's file name."""
    words = [w for w in re.split(r"[^a-z0-9]+", card.lower()) if w and w != "nvidia"]
    named = [w for w in words if re.search(r"[a-z]", w) and re.search(r"\d", w)]
    return (named or words or ["unknown"])[0]


def write_result(doc: dict, path: Path, benchmark: str) -> Path:
    """Write ``doc`` as JSON to ``path`` (``-``: ``RESULTS/<benchmark>-<date>.json``) and say where."""
    if str(path) == "-":
        path = RESULTS / f"{benchmark}-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return path
