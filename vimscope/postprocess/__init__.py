"""Post-processing of stitched model maps (layer 1: numpy, scipy, scikit-image; no torch).

``instances``: nucleus / boundary / distance maps to instance labels. ``bands``: the same over a slide in
overlapping cells, each object owned by the cell that holds its centroid, with global ids.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_EXPORTS = {
    "InstanceParams": "vimscope.postprocess.instances",
    "label_instances": "vimscope.postprocess.instances",
    "InstanceObject": "vimscope.postprocess.bands",
    "iter_cell_instances": "vimscope.postprocess.bands",
    "CellResult": "vimscope.postprocess.bands",
    "grid_cells": "vimscope.postprocess.bands",
    "row_bands": "vimscope.postprocess.bands",
    "paint_instances": "vimscope.postprocess.bands",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
