"""vimscope.tissue: which parts of an image hold tissue (or data) worth running a model on.

Names are resolved lazily (PEP 562) so importing ``vimscope.tissue`` loads no image library.
"""

from __future__ import annotations

import importlib

_LAZY = {"mask": "vimscope.tissue.masking", "TissueMask": "vimscope.tissue.masking", "clean": "vimscope.tissue.masking"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'vimscope.tissue' has no attribute {name!r}")


def __dir__():
    return __all__
