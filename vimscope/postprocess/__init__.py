"""Post-processing of stitched model maps (layer 1: numpy, scipy, scikit-image; no torch).

``instances``: nucleus / boundary / distance maps to instance labels. ``bands``: the same over a slide in
overlapping cells, each object owned by the cell that holds its centroid, with global ids.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
