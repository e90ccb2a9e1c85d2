"""vimscope.train: fine-tuning on your own labels (datasets, augmentation, the loop, packs, evaluation).

Models (Vim, the U-Net baseline) and their weights files live in ``vimscope.models``; training uses them.

Names are re-exported lazily (PEP 562): ``vimscope.train.metrics`` and the dataset readers need no torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "Trainer": "vimscope.train.loop",
    "TrainEvent": "vimscope.train.loop",
    "TrainConfig": "vimscope.train.config",
    "load_train_config": "vimscope.train.config",
    "config_base": "vimscope.train.config",
    "pack_summary": "vimscope.train.pack",
    "pack_images": "vimscope.train.pack",
    "LoadContext": "vimscope.train.datasets.base",
    "build_pack": "vimscope.train.pack",
    "read_pack": "vimscope.train.pack",
    "LabelledImage": "vimscope.train.datasets.base",
    "load_sources": "vimscope.train.datasets.base",
    "dice": "vimscope.train.metrics",
    "iou": "vimscope.train.metrics",
    "aji": "vimscope.train.metrics",
    "object_f1": "vimscope.train.metrics",
    "validate": "vimscope.train.validation",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
