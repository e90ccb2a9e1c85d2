"""vimscope.tiling: the tile plan (layer 1, ``plan``) and the tile loader (layer 2, ``loader``).

Names are resolved lazily (PEP 562): importing ``vimscope.tiling`` loads neither numpy-heavy code nor torch,
and ``plan_tiles`` never pulls in the loader.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "plan_tiles": "vimscope.tiling.plan",
    "TilePlan": "vimscope.tiling.plan",
    "Tile": "vimscope.tiling.plan",
    "Band": "vimscope.tiling.plan",
    "TileBatch": "vimscope.tiling.loader",  # layer 2 (torch), imported only when asked for
    "TileGeometry": "vimscope.tiling.loader",
    "TileLoader": "vimscope.tiling.loader",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
