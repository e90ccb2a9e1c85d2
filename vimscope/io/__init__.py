"""vimscope.io: open any slide or raster lazily (``open_slide``) behind one ``SlideReader`` interface.

Names are resolved lazily (PEP 562) so importing ``vimscope.io`` loads no backend library.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "open_slide": "vimscope.io.open",
    "SlideReader": "vimscope.io.base",
    "resize_image": "vimscope.io.resize",
    "SlideMeta": "vimscope.io.meta",
    "check_jpeg": "vimscope.io.jpeg.check",
    "register_jpeg_codec": "vimscope.io.codecs",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
