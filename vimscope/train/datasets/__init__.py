"""Labelled datasets: every loader returns ``LabelledImage`` objects (image + class / instance maps in memory).

Kinds (the ``kind`` of a ``data:`` entry): ``folder`` (image/mask pairs), ``slides`` (slides + QuPath GeoJSON),
``monuseg``, ``miccai2015``, ``cryonuseg``, ``vector`` (GeoTIFF + GeoJSON footprints), ``raster_mask`` (GeoTIFF
+ label raster), ``web_tiles`` (web-map tile chips mosaicked by area) and ``pack`` (a training pack). Loaded
lazily: none of them imports torch.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "LabelledImage": "vimscope.train.datasets.base",
    "LoadContext": "vimscope.train.datasets.base",
    "LOADERS": "vimscope.train.datasets.base",
    "load_source": "vimscope.train.datasets.base",
    "load_sources": "vimscope.train.datasets.base",
    "choose_validation": "vimscope.train.datasets.split",
    "split_images": "vimscope.train.datasets.split",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
