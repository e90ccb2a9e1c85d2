"""Stitching tile outputs into seamless, chunk-aligned output blocks (``device.py`` holds the torch half).

Names are re-exported lazily so importing ``vimscope.stitch`` never imports torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ChunkAssembler": "vimscope.stitch.assembler",
    "P_ONE": "vimscope.stitch.assembler",
    "quantise_probabilities": "vimscope.stitch.assembler",
    "class_map": "vimscope.stitch.assembler",
    "window_2d": "vimscope.stitch.windows",
    "MODES": "vimscope.stitch.windows",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vimscope.stitch' has no attribute {name!r}")
