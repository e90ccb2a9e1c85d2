"""vimscope.models: VisionMamba (faithful to hustvl/Vim), the U-Net baseline, dense heads, one ``create_model``
with ``register_family`` for new backbones, checkpoints (official ``.pth``, our safetensors), device resolution.

Names are re-exported lazily (PEP 562) so ``import vimscope.models`` and ``load_spec`` do not import torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "create_model": "vimscope.models.registry",
    "TestTimeAugmented": "vimscope.models.tta",
    "build_model": "vimscope.models.registry",
    "register_family": "vimscope.models.families",
    "list_families": "vimscope.models.families",
    "list_models": "vimscope.models.specs",
    "model_aliases": "vimscope.models.specs",
    "canonical_name": "vimscope.models.specs",
    "load_spec": "vimscope.models.resolve",
    "VimArch": "vimscope.models.arch",
    "HeadSpec": "vimscope.models.arch",
    "UNetArch": "vimscope.models.arch",
    "VisionMamba": "vimscope.models.vim",
    "UNet": "vimscope.models.unet",
    "SegmentationModel": "vimscope.models.segmentation",
    "output_maps": "vimscope.models.segmentation",
    "checkpoint_filter_fn": "vimscope.models.checkpoint",
    "read_checkpoint": "vimscope.models.checkpoint",
    "init_backbone": "vimscope.models.checkpoint",
    "save_weights": "vimscope.models.weights",
    "read_metadata": "vimscope.models.safetensors_header",
    "resample_abs_pos_embed": "vimscope.models.layers",
    "resolve_device": "vimscope.models.device",
    "resolve_dtype": "vimscope.models.device",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
