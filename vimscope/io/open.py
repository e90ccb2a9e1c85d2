"""``open_slide``: one entry point for every format; the backend is chosen by content (see ``detect``)."""

from __future__ import annotations

import os

from vimscope.errors import ConfigError, CorruptSlideError, VimscopeError
from vimscope.io.base import SlideReader
from vimscope.io.detect import detect

BACKENDS = ("openslide", "tifffile", "zarr", "image")


def _backend_class(name: str) -> type[SlideReader]:
    if name == "openslide":
        from vimscope.io.openslide_backend import OpenSlideReader

        return OpenSlideReader
    if name == "tifffile":
        from vimscope.io.tiff_backend import TiffReader

        return TiffReader
    if name == "zarr":
        from vimscope.io.zarr_backend import OmeZarrReader

        return OmeZarrReader
    if name == "image":
        from vimscope.io.image_backend import ImageReader

        return ImageReader
    raise ConfigError(f"unknown reader backend {name!r}; choose one of {', '.join(BACKENDS)}")


def open_slide(path, mpp: float | None = None, *, backend: str | None = None, **options) -> SlideReader:
    """Open a slide, microscopy image or raster lazily.

    ``mpp`` overrides the file's level-0 pixel size (µm/px; CRS units/px for georeferenced rasters).
    ``backend`` forces a reader ("openslide", "tifffile", "zarr", "image") instead of detecting one; ``options``
    go to that reader (e.g. ``series=`` for tifffile). Raises SlideNotFoundError, UnsupportedFormatError or
    CorruptSlideError (and their subclasses) with a one-line message.
    """
    found = detect(path)
    chosen = backend or found.backend
    source = found.source if chosen == found.backend else path
    cls = _backend_class(chosen)
    try:
        return cls(os.fspath(path), mpp=mpp, source=source, **options)
    except VimscopeError:
        if backend is None and chosen == "openslide" and found.vendor not in (None, "dicom"):
            # a TIFF-based vendor file OpenSlide rejects (unusual compression, odd layout): tifffile may read it
            try:
                return _backend_class("tifffile")(os.fspath(path), mpp=mpp, source=source, **options)
            except VimscopeError:
                pass
        raise
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise CorruptSlideError(f"{path}: cannot be read as {found.vendor or chosen} ({e})") from e
