"""Band-wise cells and ownership across seams: instances over a whole slide, global ids, no split objects.

The output grid is cut into cells that partition it (the plan's bands, or full-width row bands). Each cell is
processed with a ``margin`` of context on every side (at least the largest object: 64 px at 0.25 µm/px), and
keeps exactly the objects whose centroid pixel lies inside it. An object that straddles a cell border is thus
computed whole, in one cell, once; neighbours see it too but drop it. Ids count up in cell order, so a run over
the same cells in the same order gives the same ids (``start_id`` resumes the count).

Only ``window`` maps are ever in memory: cell plus margin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vimscope.instances.params import InstanceParams
from vimscope.instances.watershed import label_instances
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
        from vimscope.vector import instance_polygons

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


def grow_box(box: Box, margin: int, shape: tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` on every side, clipped to the grid: the window a cell is labelled in."""
    h, w = shape
    x0, y0 = max(0, box.x - margin), max(0, box.y - margin)
    x1, y1 = min(w, box.x1 + margin), min(h, box.y1 + margin)
    return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass
class CellObjects:
    """The objects one cell owns, as arrays in id order, with the window's labels they were found in.

    ``labels`` holds window-local ids (``label_instances``); object ``i`` is local label ``local[i]``, global id
    ``ids[i]``, bounding box ``boxes[i]`` (x, y, w, h in output pixels), centroid ``centroids[i]`` (x, y)."""

    index: int
    cell: Box
    window: Box
    labels: np.ndarray
    local: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.local)

    def id_table(self) -> np.ndarray:
        """Global id per local label (0 for the objects other cells own)."""
        table = np.zeros(int(self.labels.max(initial=0)) + 1, np.uint32)
        table[self.local] = self.ids
        return table

    def means(self, array: np.ndarray) -> np.ndarray:
        """(n, c) mean of each channel of ``array`` ((h, w, c) or (h, w) over the window) inside each object."""
        array = np.asarray(array)
        if array.dtype.kind in "iub":  # exact integer sums in one pass (``measure.label_sums``)
            from vimscope.instances.measure import label_sums

            sums = label_sums(self.labels, int(self.labels.max(initial=0)), array).astype(np.float64)
        else:
            flat = self.labels.ravel()
            fg = np.flatnonzero(flat)
            lab = flat[fg]
            values = array.reshape(flat.size, -1)[fg]
            n = int(self.labels.max(initial=0)) + 1
            sums = np.stack([np.bincount(lab, weights=values[:, k], minlength=n) for k in range(values.shape[1])], 1)
        out = sums[self.local] / self.areas[:, None]
        return out if array.ndim == 3 else out[:, 0]

    def select(self, keep: np.ndarray) -> CellObjects:
        """The objects where ``keep`` is True, ids renumbered from the first one's (the rest dropped from the
        labels' id table, so they are never painted)."""
        keep = np.asarray(keep, bool)
        start = int(self.ids[0]) if len(self.ids) else 1
        return dataclasses.replace(
            self,
            local=self.local[keep],
            ids=np.arange(start, start + int(keep.sum()), dtype=np.int64),
            boxes=self.boxes[keep],
            centroids=self.centroids[keep],
            areas=self.areas[keep],
            truncated=self.truncated[keep],
        )

    def objects(self) -> list[InstanceObject]:
        """The same objects one by one, each with its own mask."""
        out = []
        for i, value in enumerate(self.local.tolist()):
            x, y, w, h = (int(v) for v in self.boxes[i])
            wx, wy = x - self.window.x, y - self.window.y
            mask = self.labels[wy : wy + h, wx : wx + w] == value
            centroid = (float(self.centroids[i, 0]), float(self.centroids[i, 1]))
            truncated = bool(self.truncated[i])
            out.append(
                InstanceObject(
                    int(self.ids[i]), Box(x, y, w, h), mask, centroid, int(self.areas[i]), self.index, truncated
                )
            )
        return out


def cell_objects(
    labels: np.ndarray, window: Box, cell: Box, out_shape: tuple[int, int], *, index: int = 0, start_id: int = 1
) -> CellObjects:
    """The objects of ``labels`` (the instance labels of ``window``) whose centroid pixel lies in ``cell``, with
    global ids from ``start_id`` in local label order. One pass over the labels (``measure.label_boxes``), no loop
    per object.

    The centroid is computed as a per-object loop would: mean row and column inside the object's bounding box
    (exact integer sums), then plus the box origin and 0.5, in that order, so ownership and the reported
    centroids do not depend on how it is computed."""
    from vimscope.instances.measure import label_boxes

    labels = np.asarray(labels)
    h, w = out_shape
    n = int(labels.max(initial=0))
    m = label_boxes(labels, n)  # one pass: what find_objects and bincounts over the foreground give
    area, y0, y1, x0, x1 = m["area"][1:], m["y0"][1:], m["y1"][1:], m["x0"][1:], m["x1"][1:]
    present = area > 0
    sum_r, sum_c = m["sum_r"][1:].astype(np.float64), m["sum_c"][1:].astype(np.float64)
    safe = np.maximum(area, 1)
    mean_r = (sum_r - area * y0) / safe  # within the box, exact sums
    mean_c = (sum_c - area * x0) / safe
    cy = (window.y + y0).astype(np.float64) + mean_r + 0.5
    cx = (window.x + x0).astype(np.float64) + mean_c + 0.5
    px, py = np.floor(cx), np.floor(cy)
    own = present & (cell.x <= px) & (px < cell.x1) & (cell.y <= py) & (py < cell.y1)
    local = np.flatnonzero(own) + 1
    bx, by = window.x + x0[own], window.y + y0[own]
    bw, bh = (x1 - x0)[own], (y1 - y0)[own]
    truncated = (
        ((bx == window.x) & (window.x > 0))
        | ((by == window.y) & (window.y > 0))
        | ((bx + bw == window.x1) & (window.x1 < w))
        | ((by + bh == window.y1) & (window.y1 < h))
    )
    return CellObjects(
        index=index,
        cell=cell,
        window=window,
        labels=labels,
        local=local,
        ids=np.arange(start_id, start_id + len(local), dtype=np.int64),
        boxes=np.stack([bx, by, bw, bh], 1),
        centroids=np.stack([cx[own], cy[own]], 1),
        areas=area[own],
        truncated=truncated,
    )


def iter_cells(
    read_maps: Callable[[Box], dict[str, np.ndarray]],
    out_shape: tuple[int, int],
    *,
    cells: Sequence[Box] | None = None,
    band_height: int = 1024,
    margin: int | None = None,
    params: InstanceParams | dict | None = None,
    start_id: int = 1,
    skip: set[int] | None = None,
    mpp: float | None = None,
) -> Iterator[CellObjects]:
    """Label instances cell by cell; yields each cell's owned objects (``CellObjects``) with global ids.

    ``read_maps(window)`` returns the stitched maps (see ``label_instances``) of a box in output pixels.
    ``cells`` must not overlap (default: full-width row bands of ``band_height``); ``margin`` defaults to the
    params' ``max_size``. Cells listed in ``skip`` (indices, e.g. done before a resume) are not processed. ``mpp``:
    µm per output pixel, for the model's area limits in µm².
    """
    if not isinstance(params, InstanceParams):
        params = InstanceParams.from_dict(params)
    margin = params.max_size if margin is None else int(margin)
    cells = list(cells) if cells is not None else row_bands(out_shape, band_height)
    next_id = int(start_id)
    for index, cell in enumerate(cells):
        if skip and index in skip:
            continue
        window = grow_box(cell, margin, out_shape)
        labels = label_instances(read_maps(window), params, mpp=mpp)
        found = cell_objects(labels, window, cell, out_shape, index=index, start_id=next_id)
        next_id += len(found)
        yield found


def iter_cell_instances(read_maps, out_shape, **kwargs) -> Iterator[CellResult]:
    """``iter_cells`` with each object on its own (``InstanceObject``, a mask per object)."""
    for found in iter_cells(read_maps, out_shape, **kwargs):
        yield CellResult(found.index, found.cell, found.window, found.objects())


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
