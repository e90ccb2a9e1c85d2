"""vimscope.tiling: the tile plan (layer 1, ``plan``) and the tile loader (layer 2, ``loader``).

Names are resolved lazily (PEP 562): importing ``vimscope.tiling`` loads neither numpy-heavy code nor torch,
and ``plan_tiles`` never pulls in the loader.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "plan_tiles": "vimscope.tiling.plan",
    "TilePlan": "vimscope.tiling.plan",
    "Tile": "vimscope.tiling.plan",
    "Band": "vimscope.tiling.plan",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vimscope.tiling' has no attribute {name!r}")


def __dir__():
    return __all__
