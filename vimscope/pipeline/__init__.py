"""The one place where the stages meet: ``iter_run`` streams a slide through them, ``run`` drains it.

``plan`` decides a run before its first tile (frozen), ``run`` opens it, ``loop`` runs the tiles, ``finish``
writes what follows and publishes. Names are re-exported lazily so importing ``vimscope.pipeline`` (e.g. for
``PipelineConfig``) needs no torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "iter_run": "vimscope.pipeline.engine",
    "run": "vimscope.pipeline.engine",
    "RunResult": "vimscope.pipeline.engine",
    "slide_stem": "vimscope.pipeline.outputs",
    "output_paths": "vimscope.pipeline.outputs",
    "PipelineConfig": "vimscope.pipeline.config",
    "DEFAULT_MODEL": "vimscope.pipeline.config",
    "default_model": "vimscope.pipeline.choice",
    "output_settings": "vimscope.pipeline.donekey",
    "settings_key": "vimscope.pipeline.donekey",
    "estimate_memory": "vimscope.pipeline.budget",
    "describe_slide": "vimscope.pipeline.describe",
    "describe_model": "vimscope.pipeline.describe",
    "DEFAULT_TILE": "vimscope.pipeline.describe",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
