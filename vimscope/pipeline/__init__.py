"""The one place where the stages meet: ``iter_run`` streams a slide through them, ``run`` drains it.

Names are re-exported lazily so importing ``vimscope.pipeline`` (e.g. for ``PipelineConfig``) needs no torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
