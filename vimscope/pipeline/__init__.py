"""The one place where the stages meet: ``iter_run`` streams a slide through them, ``run`` drains it.

Names are re-exported lazily so importing ``vimscope.pipeline`` (e.g. for ``PipelineConfig``) needs no torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "iter_run": "vimscope.pipeline.engine",
    "run": "vimscope.pipeline.engine",
    "RunResult": "vimscope.pipeline.engine",
    "slide_stem": "vimscope.pipeline.setup",
    "output_paths": "vimscope.pipeline.setup",
    "PipelineConfig": "vimscope.pipeline.config",
    "DEFAULT_MODEL": "vimscope.pipeline.config",
    "read_geojson_region": "vimscope.pipeline.regions",
    "resolve_region": "vimscope.pipeline.regions",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vimscope.pipeline' has no attribute {name!r}")


def __dir__():
    return __all__
