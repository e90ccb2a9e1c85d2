"""Instances for nuclei models, after the last band: stitched maps -> global ids, detections, object table.

The stitched probabilities (class probabilities, then the model's extra maps, all uint8) are read back in
overlapping row cells (``postprocess.bands``: each object belongs to the cell holding its centroid), painted into
``labels/nuclei`` and streamed out as QuPath detections and one table row each.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vimscope.types import Box

# Namespace of the detections' ids (uuid5 of "<output stem>/<label>").
OBJECT_NAMESPACE = uuid.UUID("5b0c6f0e-9a51-4d8e-8a43-6f1e2f3d7c21")
# How a model's raw extra maps become the 0-1 maps the instance step reads (models return them before activation).
MAP_ACTIVATIONS = {"boundary": "sigmoid", "distance": "clamp"}


def activation(name: str) -> str:
    return MAP_ACTIVATIONS.get(name, "sigmoid")


def maps_of(block: np.ndarray, n_classes: int, extra_maps: list[str]) -> dict:
    """The instance maps in a (c, h, w) uint8 probabilities block: nucleus = 255 - P(background), extra maps."""
    maps = {"nucleus": 255 - block[0]}
    for i, name in enumerate(extra_maps):
        maps[name] = block[n_classes + i]
    return maps


@dataclass
class _Cell:
    """What one cell yields before ids are given: its objects (ids counted from 1), labels, classes, outlines."""

    found: object  # postprocess.bands.CellObjects
    classes: np.ndarray  # class index per object
    probability: np.ndarray  # its probability, 0-1
    geoms: np.ndarray  # outline per object, level-0 px


def cell_threads() -> int:
    """Cells labelled at once beside the tile loop: none extra on a small machine, up to 3 on a large one."""
    return max(1, min(3, (os.cpu_count() or 1) // 4))


def run_instances(
    ctx, cell_height: int, wait_rows: Callable[[int], None] | None = None, threads: int | None = None
) -> dict:
    """Label, paint and export instances, cell after cell; returns object counts per class and the outputs' paths.

    ``wait_rows(y)`` blocks until output rows [0, y) are final (the tile loop's bands are on disk): with it this
    runs beside the tile loop (``pipeline.follow``), a cell as soon as its window is done. Per cell, in up to
    ``threads`` threads at once (``cell_threads()``): one read of the probabilities, the labels
    (``label_instances``), the owned objects as arrays (``cell_objects``), their outlines traced together
    (``label_faces``). Then, cell after cell in order: global ids, one read-modify-write of ``labels/nuclei``,
    the detections and table rows in id order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vimscope.postprocess.bands import grow_box, row_bands
    from vimscope.postprocess.instances import InstanceParams
    from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature
    from vimscope.writers.tables import ObjectTableWriter

    writer, plan, meta = ctx.writer, ctx.plan, ctx.reader.meta
    params = InstanceParams.from_dict(ctx.spec.postprocess)
    scale = plan.scale
    px = meta.mpp  # level-0 µm (map units) per px; polygons are in level-0 px
    unit = "m" if getattr(meta, "georeferenced", False) else "µm"
    out_shape = tuple(plan.out_shape)
    out = ctx.paths["zarr"].parent
    counts: dict[str, int] = {}
    cells = list(enumerate(row_bands(out_shape, cell_height)))
    threads = threads or cell_threads()

    def compute(index_cell) -> _Cell:
        index, cell = index_cell
        window = grow_box(cell, params.max_size, out_shape)
        if wait_rows is not None:
            wait_rows(window.y1)
        return _label_cell(ctx, params, index, cell, window)

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
            features = []
            for i, obj_id in enumerate(found.ids.tolist()):
                spec = ctx.classes[int(c.classes[i])]
                prob = float(c.probability[i])
                area0 = int(found.areas[i]) * scale * scale  # level-0 px²
                # joins the detection, its table row and its label; derived, not random, so a resumed or
                # repeated run writes byte-identical outputs
                feature_id = str(uuid.uuid5(OBJECT_NAMESPACE, f"{ctx.stem}/{obj_id}"))
                features.append(
                    qupath_feature(
                        c.geoms[i],
                        id=feature_id,
                        properties={"label": obj_id},
                        object_type="detection",
                        name=spec.name,
                        color=spec.color,
                        measurements={**area_measurements(area0, px, unit), "Class probability": prob},
                    )
                )
                table.add(
                    {
                        "id": feature_id,
                        "label": obj_id,
                        "centroid_x": float(found.centroids[i, 0]) * scale,
                        "centroid_y": float(found.centroids[i, 1]) * scale,
                        "area": area0 * px * px if px else float(area0),
                        "class": spec.name,
                        "probability": prob,
                    }
                )
                counts[spec.name] = counts.get(spec.name, 0) + 1
            gj.add_many(features)
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


def _label_cell(ctx, params, index: int, cell: Box, window: Box) -> _Cell:
    """The work of one cell that needs no other cell: labels, owned objects, classes, outlines."""
    from vimscope.postprocess.bands import cell_objects
    from vimscope.postprocess.instances import label_instances
    from vimscope.writers.polygons import group_parts, label_faces

    n_classes = len(ctx.classes)
    block = np.asarray(ctx.writer.read_block("probabilities", window))  # (c, h, w) uint8
    labels = label_instances(maps_of(block, n_classes, ctx.extra_maps), params)
    found = cell_objects(labels, window, cell, tuple(ctx.plan.out_shape), index=index, start_id=1)
    if not len(found):
        return _Cell(found, np.zeros(0, np.int64), np.zeros(0), np.empty(0, object))
    means = found.means(np.moveaxis(block[:n_classes], 0, -1))  # (n, classes), 0-255
    classes = np.argmax(means[:, 1:], axis=1) + 1 if n_classes > 1 else np.zeros(len(found), np.int64)
    probability = means[np.arange(len(found)), classes] / 255.0
    faces, values = label_faces(labels)
    keep = found.id_table()[values] > 0
    owned, geoms = group_parts(faces[keep], values[keep])  # one geometry per owned object, in label order
    if owned != found.local.tolist():
        raise RuntimeError(f"instance outlines do not match the objects of cell {index}")
    geoms = _to_level0(np.asarray(geoms, dtype=object), found.boxes, window, ctx.plan.scale)
    return _Cell(found, classes, probability, geoms)


def _to_level0(geoms: np.ndarray, boxes: np.ndarray, window: Box, scale: float) -> np.ndarray:
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
