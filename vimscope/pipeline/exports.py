"""The outputs besides the store, each written into the staging folder (``pipeline.outputs``) by its stage's
writer: instances (detections, object table), class regions as GeoJSON, the preview, other raster formats.

``finish`` decides their order; ``follow`` runs instances and class regions beside the tile loop. Every function
returns the staged path(s); the finish publishes them with the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vimscope.pipeline.runstate import Run
from vimscope.types import Box

PREVIEW_SIDE = 1024
RASTER_FORMATS = ("ome-tiff", "geotiff")  # written from the finished class map (``raster_format``)


def summary_unit(meta) -> str | None:
    """The pixel-size unit as ``writers.summary`` names it (µm for slides, m for rasters in metres)."""
    if meta.mpp is None:
        return None
    return "m" if getattr(meta, "georeferenced", False) else "µm"


def wants_regions(plan) -> bool:
    """Class regions as GeoJSON annotations or GeoPackage footprints: not for feature models, nor for instance
    models, whose classes are the detections of ``<stem>.nuclei.geojson`` (QuPath would import every nucleus
    twice)."""
    asked = "geojson" in plan.config.outputs or "gpkg" in plan.formats
    return asked and plan.spec.output not in ("features", "nuclei")


@dataclass(frozen=True)
class InstanceContext:
    """What the instance step (``pipeline.instances``) reads of a run; ``paths["zarr"].parent`` is the folder its
    files go to (the staging folder)."""

    writer: Any
    plan: Any  # the tile plan
    reader: Any
    spec: Any
    classes: tuple
    extra_maps: tuple
    stem: str
    roi: Any
    mpp_out: float | None
    paths: dict = field(default_factory=dict)


def instances(run: Run, wait_rows=None) -> dict:
    """Detections and the object table of a nuclei model, painted into ``labels/nuclei``; returns the counts per
    class and the staged paths."""
    from vimscope.pipeline.instances import run_instances

    p = run.plan
    ctx = InstanceContext(
        writer=run.writer,
        plan=p.tiling,
        reader=p.reader,
        spec=p.spec,
        classes=p.classes,
        extra_maps=p.extra_maps,
        stem=p.stem,
        roi=p.roi,
        mpp_out=p.mpp_out,
        paths={"zarr": p.paths.staging / p.paths.zarr.name},
    )
    p.paths.staging.mkdir(parents=True, exist_ok=True)
    chunk = run.writer.chunk
    return run_instances(ctx, cell_height=4 * chunk, cell_width=32 * chunk, wait_rows=wait_rows)


def class_regions(run: Run, wait_rows=None) -> dict[str, Path]:
    """Class regions as QuPath annotations (level-0 px, or map coordinates for georeferenced rasters), read from
    the class map in row bands with regions merged across band borders (``vector.iter_class_regions``), slivers
    dropped and outlines cut to the image and the region. ``wait_rows(y)``: block until rows [0, y) are final.
    A raster with a CRS gets footprints instead (``pipeline.footprints``: ids, m², confidence, squared outlines;
    GeoJSON and GeoPackage). Returns the staged paths by output name."""
    if run.plan.footprints:
        from vimscope.pipeline.footprints import write_footprints

        return write_footprints(run, wait_rows)
    from vimscope.pipeline.instances import OBJECT_NAMESPACE  # the regions' ids share the detections' namespace
    from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature

    p, meta = run.plan, run.plan.reader.meta
    geo = bool(getattr(meta, "georeferenced", False) and meta.transform)
    unit = summary_unit(meta) or "µm"
    from vimscope.pipeline.regions import traced_regions

    regions = traced_regions(run, wait_rows, transform=meta.transform if geo else None)
    p.paths.staging.mkdir(parents=True, exist_ok=True)
    gj = GeoJSONWriter(p.paths.staged("geojson"), overwrite=True, crs=meta.crs if geo else None)
    batch: list[dict] = []  # handed over 1024 at a time: the writer turns their geometries into JSON in one call
    try:
        for value, poly in regions:
            if value >= len(p.classes):
                continue
            c = p.classes[value]
            # areas from level-0 px: pixel size squared per level-0 px (map units already for georeferenced output)
            area = {f"Area {unit}^2": float(poly.area)} if geo else area_measurements(poly.area, meta.mpp, unit)
            # the id from the slide's stem and the region's place in the (fixed) output order: a re-run writes the
            # same file
            fid = str(uuid.uuid5(OBJECT_NAMESPACE, f"{p.stem}/region/{gj.count + len(batch)}"))
            batch.append(
                qupath_feature(poly, object_type="annotation", name=c.name, color=c.color, measurements=area, id=fid)
            )
            if len(batch) >= 1024:
                gj.add_many(batch)
                batch.clear()
        gj.add_many(batch)
        if wait_rows is not None:
            wait_rows(p.tiling.out_shape[0])  # a loop stopped meanwhile: no output under its final name
        return {"geojson": gj.close()}
    except BaseException:
        gj.abort()
        raise


def _coarse_level(writer, name: str, side: int) -> tuple[int, tuple[int, int]]:
    """The finest pyramid level of ``name`` no longer than ``side`` on its long edge (else the coarsest)."""
    arr = None
    for level in range(writer.level_count(name)):
        arr = writer.array(name, level)
        shape = tuple(arr.shape[-2:])
        if max(shape) <= side:
            return level, shape
    return writer.level_count(name) - 1, tuple(arr.shape[-2:])


def preview(run: Run, shares: dict[str, float]) -> Path:
    """The thumbnail with the class map over it; the legend shows ``shares`` (the summary's class fractions, so
    the two never disagree)."""
    from vimscope.writers.preview import write_preview

    p = run.plan
    level, shape = _coarse_level(run.writer, "classes", PREVIEW_SIDE)
    class_map = np.asarray(run.writer.read_block("classes", Box(0, 0, shape[1], shape[0]), level))
    thumb = p.reader.thumbnail(PREVIEW_SIDE)
    p.paths.staging.mkdir(parents=True, exist_ok=True)
    return write_preview(p.paths.staged("preview"), thumb, class_map, p.classes, title=p.stem, shares=shares)


def raster_format(run: Run, fmt: str) -> Path:
    """The finished class map in another raster format (levels from the store's pyramid)."""
    p, writer = run.plan, run.writer
    meta = p.reader.meta
    levels = [writer.array("classes", level) for level in range(writer.level_count("classes"))]
    p.paths.staging.mkdir(parents=True, exist_ok=True)
    if fmt == "ome-tiff":
        from vimscope.writers.ometiff import write_ome_tiff

        return write_ome_tiff(
            p.paths.staged(f"{p.stem}.classes.ome.tif"),
            levels,
            pixel_size_um=p.mpp_out if summary_unit(meta) == "µm" else None,
            classes=p.classes,
            overwrite=True,
        )
    if fmt == "geotiff":
        from vimscope.writers.geotiff import scaled_transform, write_geotiff

        return write_geotiff(
            p.paths.staged(f"{p.stem}.classes.tif"),
            levels,
            crs=meta.crs,
            transform=scaled_transform(meta.transform, p.tiling.scale),
            classes=p.classes,
            overwrite=True,
        )
    raise ValueError(f"unknown format {fmt}")
