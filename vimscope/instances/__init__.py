"""Instance segmentation of stitched model maps (layer 1: numpy, scipy, scikit-image, numba; no torch).

``params``: a model's ``postprocess`` contract (thresholds, sizes, limits in µm², probability). ``maps``: the maps
the step reads (foreground from the nucleus classes only). ``watershed``: seeds and the marker-controlled flood
(``seeded``: the same for the pipeline's uint8 maps in compiled passes; ``flood``: the bucket-queue flood).
``cells``: the same over a slide in overlapping cells, each object owned by the cell that holds its centroid, with
global ids (``measure``: per-label sums and boxes in one pass). ``detect``: one cell's detections with classes,
probabilities and outlines. Names are re-exported lazily (PEP 562).
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_EXPORTS = {
    "InstanceParams": "vimscope.instances.params",
    "MAP_ACTIVATIONS": "vimscope.instances.maps",
    "activation": "vimscope.instances.maps",
    "maps_of": "vimscope.instances.maps",
    "nucleus_map": "vimscope.instances.maps",
    "label_instances": "vimscope.instances.watershed",
    "InstanceObject": "vimscope.instances.cells",
    "CellObjects": "vimscope.instances.cells",
    "CellResult": "vimscope.instances.cells",
    "cell_objects": "vimscope.instances.cells",
    "iter_cells": "vimscope.instances.cells",
    "iter_cell_instances": "vimscope.instances.cells",
    "grid_cells": "vimscope.instances.cells",
    "row_bands": "vimscope.instances.cells",
    "grow_box": "vimscope.instances.cells",
    "paint_instances": "vimscope.instances.cells",
    "object_means": "vimscope.instances.cells",
    "CellDetections": "vimscope.instances.detect",
    "detect_cell": "vimscope.instances.detect",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
