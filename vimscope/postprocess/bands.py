"""Instance post-processing over a whole slide in overlapping cells, with global ids and no split objects.

The output grid is cut into cells that partition it (the plan's bands, or full-width row bands). Each cell is
processed with a ``margin`` of context on every side (at least the largest object: 64 px at 0.25 µm/px), and
keeps exactly the objects whose centroid pixel lies inside it. An object that straddles a cell border is thus
computed whole, in one cell, once; neighbours see it too but drop it. Ids count up in cell order, so a run over
the same cells in the same order gives the same ids (``start_id`` resumes the count).

Only ``window`` maps are ever in memory: cell plus margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vimscope.postprocess.instances import InstanceParams, label_instances
from vimscope.types import Box


@dataclass
class InstanceObject:
    """One object in output pixels: its mask inside ``box`` and its centroid (x, y), pixel (r, c) centred at
    (c + 0.5, r + 0.5)."""

    id: int
    box: Box
    mask: np.ndarray
    centroid: tuple[float, float]
    area: int
    cell: int
    truncated: bool = False  # touches the window edge away from the image border: bigger than the margin

    def polygon(self, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0), transform=None):
        """The outline on pixel edges (never simplified), in level-0 pixels with ``scale`` = level-0 px per output
        px (plus ``offset``), or map units with a GDAL ``transform``; a MultiPolygon if parts touch at corners."""
        from vimscope.writers.polygons import instance_polygons

        origin = (offset[0] + self.box.x * scale, offset[1] + self.box.y * scale)
        ((_, geom),) = instance_polygons(self.mask.astype(np.uint8), origin, scale, transform=transform)
        return geom


@dataclass
class CellResult:
    """The objects one cell owns, with the window they were computed in."""

    index: int
    cell: Box
    window: Box
    objects: list[InstanceObject] = field(default_factory=list)


def row_bands(out_shape: tuple[int, int], band_height: int) -> list[Box]:
    h, w = out_shape
    return [Box(0, y, w, min(band_height, h - y)) for y in range(0, h, band_height)]


def grid_cells(out_shape: tuple[int, int], cell: int | tuple[int, int]) -> list[Box]:
    """Row-major cells of ``cell`` px (or (height, width)) covering the grid."""
    ch, cw = (cell, cell) if isinstance(cell, int) else cell
    h, w = out_shape
    return [Box(x, y, min(cw, w - x), min(ch, h - y)) for y in range(0, h, ch) for x in range(0, w, cw)]


def _grow(box: Box, margin: int, shape: tuple[int, int]) -> Box:
    h, w = shape
    x0, y0 = max(0, box.x - margin), max(0, box.y - margin)
    x1, y1 = min(w, box.x1 + margin), min(h, box.y1 + margin)
    return Box(x0, y0, x1 - x0, y1 - y0)


def iter_cell_instances(
    read_maps: Callable[[Box], dict[str, np.ndarray]],
    out_shape: tuple[int, int],
    *,
    cells: Sequence[Box] | None = None,
    band_height: int = 1024,
    margin: int | None = None,
    params: InstanceParams | dict | None = None,
    start_id: int = 1,
    skip: set[int] | None = None,
) -> Iterator[CellResult]:
    """Label instances cell by cell; yields each cell's owned objects with global ids.

    ``read_maps(window)`` returns the stitched maps (see ``label_instances``) of a box in output pixels.
    ``cells`` must not overlap (default: full-width row bands of ``band_height``); ``margin`` defaults to the
    params' ``max_size``. Cells listed in ``skip`` (indices, e.g. done before a resume) are not processed.
    """
    from scipy import ndimage as ndi

    if not isinstance(params, InstanceParams):
        params = InstanceParams.from_dict(params)
    margin = params.max_size if margin is None else int(margin)
    cells = list(cells) if cells is not None else row_bands(out_shape, band_height)
    h, w = out_shape
    next_id = int(start_id)
    for index, cell in enumerate(cells):
        if skip and index in skip:
            continue
        window = _grow(cell, margin, out_shape)
        labels = label_instances(read_maps(window), params)
        result = CellResult(index, cell, window)
        for value, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            mask = labels[sl] == value
            rows, cols = np.nonzero(mask)
            cy = window.y + sl[0].start + rows.mean() + 0.5
            cx = window.x + sl[1].start + cols.mean() + 0.5
            px, py = math.floor(cx), math.floor(cy)
            if not (cell.x <= px < cell.x1 and cell.y <= py < cell.y1):
                continue
            box = Box(window.x + sl[1].start, window.y + sl[0].start, mask.shape[1], mask.shape[0])
            truncated = (
                (box.x == window.x and window.x > 0)
                or (box.y == window.y and window.y > 0)
                or (box.x1 == window.x1 and window.x1 < w)
                or (box.y1 == window.y1 and window.y1 < h)
            )
            result.objects.append(InstanceObject(next_id, box, mask, (cx, cy), int(mask.sum()), index, truncated))
            next_id += 1
        yield result


def paint_instances(target, objects: Sequence[InstanceObject], window: Box | None = None) -> None:
    """Write objects' ids into ``target`` (a 2-D numpy or zarr array of the whole grid).

    With ``window`` (a box holding every object, e.g. ``CellResult.window``) the target is read and written once;
    pixels outside the objects keep what earlier cells painted there.
    """
    if not objects:
        return
    if window is None:
        for obj in objects:
            region = np.asarray(target[obj.box.y : obj.box.y1, obj.box.x : obj.box.x1])
            region[obj.mask] = obj.id
            target[obj.box.y : obj.box.y1, obj.box.x : obj.box.x1] = region
        return
    region = np.array(target[window.y : window.y1, window.x : window.x1])
    for obj in objects:
        y, x = obj.box.y - window.y, obj.box.x - window.x
        sub = region[y : y + obj.box.h, x : x + obj.box.w]
        sub[obj.mask] = obj.id
    target[window.y : window.y1, window.x : window.x1] = region


def object_means(obj: InstanceObject, window: Box, array: np.ndarray) -> np.ndarray:
    """Mean of each channel of ``array`` ((h, w) or (h, w, c) over ``window``) inside the object's mask."""
    y, x = obj.box.y - window.y, obj.box.x - window.x
    crop = np.asarray(array)[y : y + obj.box.h, x : x + obj.box.w]
    values = crop[obj.mask]
    return values.mean(axis=0) if len(values) else np.zeros(crop.shape[2:] or (), np.float64)
