"""vimscope: Vision Mamba on gigapixel slides and rasters.

Names are re-exported lazily (PEP 562) so that ``vimscope info`` never imports torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "open_slide": "vimscope.io",
    "SlideReader": "vimscope.io",
    "create_model": "vimscope.models",
    "list_models": "vimscope.models",
    "iter_run": "vimscope.pipeline",
    "run": "vimscope.pipeline",
    "PipelineConfig": "vimscope.pipeline",
    "Box": "vimscope.types",
    "Progress": "vimscope.types",
    "CancelToken": "vimscope.types",
    "ModelSpec": "vimscope.config",
    "VimscopeError": "vimscope.errors",
}

__all__ = sorted([*_LAZY, "__version__"])


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
