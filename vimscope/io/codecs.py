"""Chunk codecs that a store may name beyond what numcodecs registers by itself.

vimscope's OME-Zarr image copy is Blosc-coded by default; a JPEG image copy (opt-in, and the default of vimscope
0.1) names imagecodecs' numcodecs codec ``imagecodecs_jpeg``, which numcodecs knows only once it is registered.
Readers register it before opening a store; the writer registers it before writing one.
"""

from __future__ import annotations

JPEG_ID = "imagecodecs_jpeg"


def register_jpeg_codec() -> None:
    """Make numcodecs know ``imagecodecs_jpeg``. Harmless when imagecodecs is missing."""
    try:
        import imagecodecs.numcodecs
    except ImportError:  # pragma: no cover - imagecodecs is a dependency; a store without JPEG chunks needs none
        return
    imagecodecs.numcodecs.register_codecs([JPEG_ID], verbose=False)
