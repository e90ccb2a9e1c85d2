"""One cell's detections: labels, the objects it owns, their class and probability, the model's limits, outlines.

An object cut by its window's edge (larger than the model's ``max_size``, the margin) is dropped: it was not
computed whole, and two cells could each keep a piece of it.

Everything one cell needs and no other cell: the pipeline computes cells in threads beside the tile loop and gives
ids in cell order (``pipeline.instances``). Outlines come from ``vimscope.vector`` (traced along pixel edges, all
of a cell's objects at once), in level-0 pixels, cut to the image and the region of interest by ``clip``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vimscope.instances.cells import CellObjects, cell_objects
from vimscope.instances.maps import maps_of
from vimscope.instances.params import InstanceParams
from vimscope.instances.watershed import label_instances
from vimscope.types import Box


@dataclass
class CellDetections:
    """The objects one cell owns (ids counted from 1), with class index, probability (0-1) and outline."""

    found: CellObjects
    classes: np.ndarray
    probability: np.ndarray
    geoms: np.ndarray  # one (Multi)Polygon per object, level-0 px

    def __len__(self) -> int:
        return len(self.found)

    def select(self, keep: np.ndarray) -> CellDetections:
        keep = np.asarray(keep, bool)
        return CellDetections(self.found.select(keep), self.classes[keep], self.probability[keep], self.geoms[keep])


def detect_cell(
    block: np.ndarray,
    *,
    n_classes: int,
    extra_maps: list[str],
    params: InstanceParams,
    index: int,
    cell: Box,
    window: Box,
    out_shape: tuple[int, int],
    scale: float,
    class_map: np.ndarray | None = None,
    mpp: float | None = None,
    clip: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CellDetections:
    """The detections of ``cell`` from ``block``, the (c, h, w) uint8 probabilities of ``window`` (and its class
    map). ``scale``: level-0 px per output px; ``mpp``: µm per output px (the model's limits in µm² need it);
    ``clip``: level-0 outlines to the outlines kept (image and region)."""
    import shapely

    from vimscope.vector import group_parts, label_faces

    labels = label_instances(maps_of(block, n_classes, extra_maps, class_map), params, mpp=mpp)
    found = cell_objects(labels, window, cell, out_shape, index=index, start_id=1)
    if not len(found):
        return CellDetections(found, np.zeros(0, np.int64), np.zeros(0), np.empty(0, object))
    means = found.means(np.moveaxis(block[:n_classes], 0, -1))  # (n, classes), 0-255
    classes = np.argmax(means[:, 1:], axis=1) + 1
    probability = means[np.arange(len(found)), classes] / 255.0
    # an object cut by its window's edge is larger than the model's ``max_size``: not computed whole, and a
    # neighbouring cell may find another piece of it (the labels would then hold one of two overlapping objects)
    keep = ~found.truncated
    if params.min_probability is not None:
        keep &= probability >= params.min_probability
    if not keep.all():
        found, classes, probability = found.select(keep), classes[keep], probability[keep]
        if not len(found):
            return CellDetections(found, classes, probability, np.empty(0, object))
    faces, values = label_faces(labels)
    keep = found.id_table()[values] > 0
    owned, geoms = group_parts(faces[keep], values[keep])  # one geometry per owned object, in label order
    if owned != found.local.tolist():
        raise RuntimeError(f"instance outlines do not match the objects of cell {index}")
    geoms = to_level0(np.asarray(geoms, dtype=object), found.boxes, window, scale)
    out = CellDetections(found, classes, probability, geoms)
    if clip is not None:
        out.geoms = clip(geoms)
        empty = shapely.is_empty(out.geoms)
        if empty.any():
            out = out.select(~empty)
    return out


def to_level0(geoms: np.ndarray, boxes: np.ndarray, window: Box, scale: float) -> np.ndarray:
    """Outlines traced in window pixels to level-0 pixels, all at once and with the arithmetic of one object at a
    time (coordinates in the object's box times ``scale``, plus the box origin times ``scale``)."""
    import shapely

    if scale == 1.0 and window.x == 0 and window.y == 0:
        return geoms
    coords, which = shapely.get_coordinates(geoms, return_index=True)
    origin = boxes[which, :2].astype(np.float64)  # (x, y) of each vertex's object box, output px
    local = coords - (origin - np.array([window.x, window.y], np.float64))  # exact: whole pixel corners
    if scale != 1.0:
        local = local * scale
    return shapely.set_coordinates(geoms.copy(), local + origin * scale)
