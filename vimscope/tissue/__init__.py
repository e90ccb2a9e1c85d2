"""vimscope.tissue: which parts of an image hold tissue (or data) worth running a model on.

Names are resolved lazily (PEP 562) so importing ``vimscope.tissue`` loads no image library.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {"mask": "vimscope.tissue.masking", "TissueMask": "vimscope.tissue.masking", "clean": "vimscope.tissue.masking"}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
