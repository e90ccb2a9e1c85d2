"""vimscope.io: open any slide or raster lazily (``open_slide``) behind one ``SlideReader`` interface.

Names are resolved lazily (PEP 562) so importing ``vimscope.io`` loads no backend library.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "open_slide": "vimscope.io.open",
    "SlideReader": "vimscope.io.base",
    "SlideMeta": "vimscope.io.meta",
    "check_jpeg": "vimscope.io.jpegcheck",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vimscope.io' has no attribute {name!r}")


def __dir__():
    return __all__
