"""Stitching tile outputs into seamless, chunk-aligned output blocks; the torch half is ``device.py`` (blending on
the GPU) and ``run.py`` (the run-level stitcher, all assemblers of one run).

Names are re-exported lazily so importing ``vimscope.stitch`` never imports torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "ChunkAssembler": "vimscope.stitch.assembler",
    "P_ONE": "vimscope.stitch.assembler",
    "quantise_probabilities": "vimscope.stitch.assembler",
    "class_map": "vimscope.stitch.assembler",
    "window_2d": "vimscope.stitch.windows",
    "MODES": "vimscope.stitch.windows",
    "RunStitcher": "vimscope.stitch.run",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
