"""Instances for nuclei models, after the last band: stitched maps -> global ids, detections, object table.

The stitched probabilities (class probabilities, then the model's extra maps, all uint8) are read back in
overlapping row cells (``postprocess.bands``: each object belongs to the cell holding its centroid), painted into
``labels/nuclei`` and streamed out as QuPath detections and one table row each.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np

from vimscope.types import Box

# How a model's raw extra maps become the 0-1 maps the instance step reads (models return them before activation).
MAP_ACTIVATIONS = {"boundary": "sigmoid", "distance": "clamp"}


def activation(name: str) -> str:
    return MAP_ACTIVATIONS.get(name, "sigmoid")


def maps_reader(writer, n_classes: int, extra_maps: list[str]) -> Callable[[Box], dict]:
    """``read_maps(window)`` for ``iter_cell_instances``: nucleus = 1 - P(background), plus the extra maps."""

    def read_maps(window: Box) -> dict:
        block = np.asarray(writer.read_block("probabilities", window))  # (c, h, w) uint8
        maps = {"nucleus": 255 - block[0]}
        for i, name in enumerate(extra_maps):
            maps[name] = block[n_classes + i]
        return maps

    return read_maps


def run_instances(ctx, cell_height: int) -> dict:
    """Label, paint and export instances; returns object counts per class."""
    from vimscope.postprocess.bands import iter_cell_instances, object_means, paint_instances
    from vimscope.postprocess.instances import InstanceParams
    from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature
    from vimscope.writers.polygons import instance_polygons
    from vimscope.writers.tables import ObjectTableWriter

    writer, plan, meta = ctx.writer, ctx.plan, ctx.reader.meta
    n_classes = len(ctx.classes)
    params = InstanceParams.from_dict(ctx.spec.postprocess)
    scale = plan.scale
    px = meta.mpp  # level-0 µm (map units) per px; polygons are in level-0 px
    unit = "m" if getattr(meta, "georeferenced", False) else "µm"
    target = writer.array("nuclei")
    out = ctx.paths["zarr"].parent
    counts: dict[str, int] = {}
    gj = GeoJSONWriter(out / f"{ctx.stem}.nuclei.geojson", overwrite=True)
    table = ObjectTableWriter(out / ctx.stem, overwrite=True)
    read_maps = maps_reader(writer, n_classes, ctx.extra_maps)
    try:
        for cell in iter_cell_instances(read_maps, plan.out_shape, band_height=cell_height, params=params):
            if not cell.objects:
                continue
            paint_instances(target, cell.objects, cell.window)
            probs = np.moveaxis(np.asarray(writer.read_block("probabilities", cell.window))[:n_classes], 0, -1)
            for obj in cell.objects:
                means = object_means(obj, cell.window, probs)
                cls = int(np.argmax(means[1:]) + 1) if n_classes > 1 else 0
                spec = ctx.classes[cls]
                area0 = obj.area * scale * scale  # level-0 px²
                origin = (obj.box.x * scale, obj.box.y * scale)
                feature_id = str(uuid.uuid4())  # joins the detection, its table row and its label (obj.id)
                for _, geom in instance_polygons(obj.mask.astype(np.uint32), origin, scale):
                    gj.add(
                        qupath_feature(
                            geom,
                            id=feature_id,
                            properties={"label": int(obj.id)},
                            object_type="detection",
                            name=spec.name,
                            color=spec.color,
                            measurements={
                                **area_measurements(area0, px, unit),
                                "Class probability": float(means[cls]) / 255.0,
                            },
                        )
                    )
                table.add(
                    {
                        "id": feature_id,
                        "label": int(obj.id),
                        "centroid_x": obj.centroid[0] * scale,
                        "centroid_y": obj.centroid[1] * scale,
                        "area": area0 * px * px if px else float(area0),
                        "class": spec.name,
                        "probability": float(means[cls]) / 255.0,
                    }
                )
                counts[spec.name] = counts.get(spec.name, 0) + 1
        paths = {"nuclei_geojson": gj.close(), "objects": table.close()}
    except BaseException:
        gj.abort()
        table.abort()
        raise
    return {"counts": counts, "paths": paths}
