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

import numpy as np

from vimscope.types import Box

# Namespace of the detections' ids (uuid5 of "<output stem>/<label>").
OBJECT_NAMESPACE = uuid.UUID("5b0c6f0e-9a51-4d8e-8a43-6f1e2f3d7c21")


def cell_threads() -> int:
    """Cells labelled at once beside the tile loop: none extra on a small machine, up to 3 on a large one."""
    return max(1, min(3, (os.cpu_count() or 1) // 4))


def run_instances(
    ctx, cell_height: int, wait_rows: Callable[[int], None] | None = None, threads: int | None = None
) -> dict:
    """Label, paint and export instances, cell after cell; returns object counts per class and the outputs' paths.

    ``wait_rows(y)`` blocks until output rows [0, y) are final (the tile loop's bands are on disk): with it this
    runs beside the tile loop (``pipeline.follow``), a cell as soon as its window is done. Per cell, in up to
    ``threads`` threads at once (``cell_threads()``): one read of the probabilities and the class map, the cell's
    detections (``instances.detect_cell``). Then, cell after cell in order: global ids, one read-modify-write of
    ``labels/nuclei``, the detections and table rows in id order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vimscope.instances import InstanceParams, grow_box, row_bands
    from vimscope.vector import outline_clip
    from vimscope.writers.geojson import GeoJSONWriter
    from vimscope.writers.tables import ObjectTableWriter

    writer, plan, meta = ctx.writer, ctx.plan, ctx.reader.meta
    params = InstanceParams.from_dict(ctx.spec.postprocess)
    out_shape = tuple(plan.out_shape)
    out = ctx.paths["zarr"].parent
    counts: dict[str, int] = {}
    cells = list(enumerate(row_bands(out_shape, cell_height)))
    threads = threads or cell_threads()
    clip = outline_clip(meta.dimensions, ctx.roi)
    mpp_um = None if getattr(meta, "georeferenced", False) else ctx.mpp_out  # the model's limits are in µm²

    def compute(index_cell):
        index, cell = index_cell
        window = grow_box(cell, params.max_size, out_shape)
        if wait_rows is not None:
            wait_rows(window.y1)
        return _detect(ctx, params, index, cell, window, mpp_um, clip)

    gj = GeoJSONWriter(out / f"{ctx.stem}.nuclei.geojson", overwrite=True)
    table = ObjectTableWriter(out / ctx.stem, overwrite=True)
    next_id = 1
    pool = ThreadPoolExecutor(threads, thread_name_prefix="vimscope-cells") if threads > 1 else None
    try:
        for c in _in_order(pool, compute, cells, ahead=threads):
            found = c.found
            if not len(found):
                continue
            found.ids += next_id - 1  # counted from 1 in the cell: now global, in cell order
            next_id += len(found)
            window = found.window
            painted = found.id_table()[found.labels]  # global ids of the owned objects, 0 elsewhere
            region = np.asarray(writer.read_block("nuclei", window))
            np.copyto(region, painted, where=painted > 0)
            writer.write_block("nuclei", window, region)
            _export(ctx, c, table, counts, gj)
        if wait_rows is not None:
            wait_rows(out_shape[0])  # a loop stopped meanwhile: no outputs under their final names
        paths = {"nuclei_geojson": gj.close(), "objects": table.close()}
    except BaseException:
        gj.abort()
        table.abort()
        if pool is not None:
            pool.shutdown(cancel_futures=True, wait=False)  # workers only read: let any that run finish alone
        raise
    if pool is not None:
        pool.shutdown()
    return {"counts": counts, "paths": paths}


def _export(ctx, c, table, counts: dict[str, int], gj) -> None:
    """The QuPath detections of one cell's objects (global ids already given) into ``gj``, their table rows into
    ``table`` and their classes into ``counts``; column by column (``writers.featuretext``), the bytes that
    ``qupath_feature`` and ``GeoJSONWriter.add_many`` write per object."""
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
    gj.add_texts(c.geoms, fids, props.tolist())
    table.add_columns(
        {
            "id": fids,
            "label": ids,
            "centroid_x": (found.centroids[:, 0].astype(np.float64) * scale).tolist(),
            "centroid_y": (found.centroids[:, 1].astype(np.float64) * scale).tolist(),
            "area": (area0 * px * px if px else area0).tolist(),
            "class": [ctx.classes[k].name for k in classes.tolist()],
            "probability": prob.tolist(),
        }
    )


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
