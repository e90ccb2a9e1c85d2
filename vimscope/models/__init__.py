"""vimscope.models: VisionMamba (faithful to hustvl/Vim), dense heads, the registry and checkpoint loading.

Names are re-exported lazily (PEP 562) so ``import vimscope.models`` and ``load_spec`` do not import torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "create_model": "vimscope.models.registry",
    "list_models": "vimscope.models.specs",
    "load_spec": "vimscope.models.specs",
    "VimArch": "vimscope.models.arch",
    "HeadSpec": "vimscope.models.arch",
    "VisionMamba": "vimscope.models.vim",
    "SegmentationModel": "vimscope.models.segmentation",
    "build_model": "vimscope.models.segmentation",
    "output_maps": "vimscope.models.segmentation",
    "register_family": "vimscope.models.segmentation",
    "checkpoint_filter_fn": "vimscope.models.checkpoint",
    "read_checkpoint": "vimscope.models.checkpoint",
    "save_weights": "vimscope.models.checkpoint",
    "resample_abs_pos_embed": "vimscope.models.layers",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
