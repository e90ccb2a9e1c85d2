"""vimscope.io.jpeg: JPEG tile forensics of TIFF-based slides, apart from the readers that use them.

``check`` says whether a JPEG stream would make libjpeg complain (without decoding pixels; ``_walk`` is its
numba-compilable kernel), ``tilecheck`` checks the raw tiles of a TIFF before they are decoded, and ``tiles``
describes a level's JPEG tiles as standalone streams for other decoders (nvjpeg). Names resolve lazily.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "check_jpeg": "vimscope.io.jpeg.check",
    "TileChecker": "vimscope.io.jpeg.tilecheck",
    "JpegLevel": "vimscope.io.jpeg.tiles",
    "jpeg_level": "vimscope.io.jpeg.tiles",
    "standalone_jpeg": "vimscope.io.jpeg.tiles",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
