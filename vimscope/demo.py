"""Where the set-up put the demo slide (``.ci/setup`` fetches it; nothing is downloaded at run time)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEMO_NAME = "CMU-1-Small-Region.svs"
DEMO_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"


def cache_dir() -> Path:
    return Path(os.environ.get("VIMSCOPE_CACHE", Path.home() / ".cache" / "vimscope"))


def demo_slide_path(verify: bool = False) -> Path | None:
    """The demo slide if the set-up fetched it (optionally checking its sha256), else None."""
    path = cache_dir() / DEMO_NAME
    if not path.is_file():
        return None
    if verify and hashlib.sha256(path.read_bytes()).hexdigest() != DEMO_SHA256:
        return None
    return path
