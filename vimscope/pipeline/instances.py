"""Conducts the instance step of nuclei models, after each band: read, detect, paint, export, in cell order.

The stitched probabilities (class probabilities, then the model's extra maps, all uint8) and the class map are
read back in overlapping row cells; ``vimscope.instances`` finds each cell's detections (foreground only, the
model's limits, each object owned by the cell holding its centroid) with outlines from ``vimscope.vector`` cut to
the image and the region; here they get global ids, are painted into ``labels/nuclei`` and streamed out as
QuPath detections and one table row each.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from vimscope.types import Box

# Namespace of the detections' ids (uuid5 of "<output stem>/<label>").
OBJECT_NAMESPACE = uuid.UUID("5b0c6f0e-9a51-4d8e-8a43-6f1e2f3d7c21")


def cell_threads() -> int:
    """Cells labelled at once beside the tile loop: one on a small machine, half the cores up to 8 on a large one
    (the loop's readers, decoder, writer and chunk coders keep the rest). Labelling is compiled code that releases
    the GIL (91 % of a cell's time in ``flood``, ``seeded``, ``outlines``, ``measure``), so threads scale."""
    return max(1, min(8, (os.cpu_count() or 1) // 2))


def run_instances(
    ctx,
    cell_height: int,
    wait_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
    cell_width: int | None = None,
) -> dict:
    """Label, paint and export instances, cell after cell (``cell_height`` x ``cell_width`` output px, row-major);
    returns object counts per class and the outputs' paths.

    ``wait_rows(y)`` blocks until output rows [0, y) are final (the tile loop's bands are on disk): with it this
    runs beside the tile loop (``pipeline.follow``), a cell as soon as its window is done. Per cell, in up to
    ``threads`` threads at once (``cell_threads()``): one read of the probabilities and the class map, the cell's
    detections (``instances.detect_cell``). Then, cell after cell in order: global ids and the painting of
    ``labels/nuclei`` (``LabelRows``: in memory, each chunk row written once when no later window reaches it);
    the cell's detections and table rows are rendered back in the threads and written in id order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vimscope.instances import InstanceParams, grid_cells, grow_box
    from vimscope.pipeline.labelrows import LabelRows
    from vimscope.vector import outline_clip
    from vimscope.writers.geojson import GeoJSONWriter
    from vimscope.writers.tables import ObjectTableWriter

    writer, plan, meta = ctx.writer, ctx.plan, ctx.reader.meta
    params = InstanceParams.from_dict(ctx.spec.postprocess)
    out_shape = tuple(plan.out_shape)
    out = ctx.paths["zarr"].parent
    # row-major cells at most ``cell_width`` wide (the whole width when None): a window's memory stays bounded on
    # wide slides and a band's cells label in parallel
    cells = list(enumerate(grid_cells(out_shape, (cell_height, cell_width or out_shape[1]))))
    threads = threads or cell_threads()
    clip = outline_clip(meta.dimensions, ctx.roi)
    mpp_um = None if getattr(meta, "georeferenced", False) else ctx.mpp_out  # the model's limits are in µm²

    windows = [grow_box(cell, params.max_size, out_shape) for _, cell in cells]

    def compute(index_cell):
        index, cell = index_cell
        window = windows[index]
        if wait_rows is not None:
            wait_rows(window.y1)
        return _detect(ctx, params, index, cell, window, mpp_um, clip)

    exports = _Exports(
        GeoJSONWriter(out / f"{ctx.stem}.nuclei.geojson", overwrite=True),
        ObjectTableWriter(out / ctx.stem, overwrite=True),
    )
    labels = LabelRows(writer, "nuclei", out_shape, writer.chunk)
    # a window's rows above the next window's top are final once it is painted
    tops = [window.y for window in windows[1:]] + [out_shape[0]]
    next_id = 1
    pool = ThreadPoolExecutor(threads, thread_name_prefix="vimscope-cells") if threads > 1 else None
    try:
        for (index, _), c in zip(cells, _in_order(pool, compute, cells, ahead=threads)):
            found = c.found
            if len(found):
                found.ids += next_id - 1  # counted from 1 in the cell: now global, in cell order
                next_id += len(found)
                labels.paint(found.window, found.labels, found.id_table())
                gj = exports.gj
                exports.pending.append(pool.submit(_render, ctx, c, gj) if pool is not None else _render(ctx, c, gj))
            labels.release(tops[index])
            exports.write(keep=threads)
        if wait_rows is not None:
            wait_rows(out_shape[0])  # a loop stopped meanwhile: no outputs under their final names
        paths = exports.close()
    except BaseException:
        exports.abort()
        if pool is not None:
            pool.shutdown(cancel_futures=True, wait=False)  # workers only read: let any that run finish alone
        raise
    if pool is not None:
        pool.shutdown()
    return {"counts": exports.counts, "paths": paths}


class _Exports:
    """The detections (GeoJSON) and the objects table, written in id order as the cells' renders (futures, or
    results rendered in place) finish; object counts per class in the order classes first appear."""

    def __init__(self, gj, table) -> None:
        self.gj, self.table = gj, table
        self.counts: dict[str, int] = {}
        self.pending: deque = deque()

    def write(self, keep: int) -> None:
        """Write the finished renders at the head of the queue, waiting while more than ``keep`` are queued."""
        while len(self.pending) > keep or (self.pending and _done(self.pending[0])):
            texts, columns, counts = _result(self.pending.popleft())
            self.gj.add_feature_texts(texts)
            self.table.add_columns(columns)
            for name, n in counts.items():
                self.counts[name] = self.counts.get(name, 0) + n

    def close(self) -> dict:
        self.write(keep=0)
        return {"nuclei_geojson": self.gj.close(), "objects": self.table.close()}

    def abort(self) -> None:
        self.gj.abort()
        self.table.abort()


def _done(item) -> bool:
    return not isinstance(item, Future) or item.done()


def _result(item):
    return item.result() if isinstance(item, Future) else item


def _render(ctx, c, gj) -> tuple[list[str], dict, dict[str, int]]:
    """One cell's objects (global ids already given) as QuPath detections (``gj.feature_texts``), table columns
    and counts per class, in the order ``qupath_feature`` and ``GeoJSONWriter.add_many`` write them, column by
    column (``writers.featuretext``); touches no shared state, so cells render in any thread."""
    from vimscope.writers.featuretext import PropertiesTemplate, uuid5_strings

    meta, scale, found = ctx.reader.meta, ctx.plan.scale, c.found
    px = meta.mpp  # level-0 µm (map units) per px; polygons are in level-0 px
    unit = "m" if getattr(meta, "georeferenced", False) else "µm"
    ids = found.ids.tolist()
    area0 = found.areas.astype(np.float64) * scale * scale  # level-0 px², as int * scale * scale per object
    if px is None:  # ``area_measurements``: the pixel count, else the area in units²
        area_key, area = "Area px^2", area0
    else:
        area_key, area = f"Area {unit}^2", area0 * float(px) ** 2
    prob = np.asarray(c.probability, np.float64)
    # joins the detection, its table row and its label; derived, not random, so a resumed or repeated run writes
    # byte-identical outputs
    fids = uuid5_strings(OBJECT_NAMESPACE, (f"{ctx.stem}/{i}" for i in ids))
    classes = np.asarray(c.classes, np.int64)
    props = np.empty(len(ids), object)
    counts: dict[str, int] = {}
    present, first = np.unique(classes, return_index=True)
    for k in present[np.argsort(first)].tolist():  # counts keep the order in which classes first appear
        spec = ctx.classes[k]
        at = np.flatnonzero(classes == k)
        template = PropertiesTemplate(
            object_type="detection",
            name=spec.name,
            color=spec.color,
            measurements=[area_key, "Class probability"],
            properties=["label"],
        )
        props[at] = template.texts([area[at], prob[at], found.ids[at]])
        counts[spec.name] = counts.get(spec.name, 0) + len(at)
    columns = {
        "id": fids,
        "label": ids,
        "centroid_x": (found.centroids[:, 0].astype(np.float64) * scale).tolist(),
        "centroid_y": (found.centroids[:, 1].astype(np.float64) * scale).tolist(),
        "area": (area0 * px * px if px else area0).tolist(),
        "class": [ctx.classes[k].name for k in classes.tolist()],
        "probability": prob.tolist(),
    }
    return gj.feature_texts(c.geoms, fids, props.tolist()), columns, counts


def _in_order(pool, fn, items, ahead: int):
    """``fn`` of each item, in order; with a pool, up to ``ahead`` items are computed meanwhile."""
    if pool is None:
        yield from map(fn, items)
        return
    pending = deque()
    for item in items:
        if len(pending) == ahead:
            yield pending.popleft().result()
        pending.append(pool.submit(fn, item))
    while pending:
        yield pending.popleft().result()


def _detect(ctx, params, index: int, cell: Box, window: Box, mpp: float | None, clip):
    """One cell's reads and detections (``instances.detect_cell``): needs no other cell."""
    from vimscope.instances import detect_cell

    block = np.asarray(ctx.writer.read_block("probabilities", window))  # (c, h, w) uint8
    class_map = np.asarray(ctx.writer.read_block("classes", window)) if "classes" in ctx.writer.names else None
    return detect_cell(
        block,
        class_map=class_map,
        n_classes=len(ctx.classes),
        extra_maps=ctx.extra_maps,
        params=params,
        index=index,
        cell=cell,
        window=window,
        out_shape=tuple(ctx.plan.out_shape),
        scale=ctx.plan.scale,
        mpp=mpp,
        clip=clip,
    )
