"""The end of a run: pyramids, instances, preview, GeoJSON, other formats, summary, then the rename.

Instances and class-region GeoJSON normally run beside the tile loop (``pipeline.follow``); here their results are
collected. Everything here runs after the last band is on disk, so an interruption at this stage resumes straight
here (all bands done, no tile recomputed).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vimscope.pipeline.instances import OBJECT_NAMESPACE
from vimscope.types import Box, Progress

if TYPE_CHECKING:
    from vimscope.pipeline.setup import RunSetup

PREVIEW_SIDE = 1024


def unit_of(meta) -> str | None:
    if meta.mpp is None:
        return None
    return "meter" if getattr(meta, "georeferenced", False) else "micrometer"


def summary_unit(meta) -> str | None:
    """The pixel-size unit as ``writers.summary`` names it (µm for slides, m for rasters in metres)."""
    if meta.mpp is None:
        return None
    return "m" if getattr(meta, "georeferenced", False) else "µm"


def store_metadata(spec, config, plan, lm, tile: int, halo: int) -> dict:
    from vimscope import __version__

    return {
        "model": spec.name,
        "trained": bool(spec.trained),
        "weights": config.weights or spec.weights,
        "license": spec.license,
        "tile": tile,
        "halo": halo,
        "stitch": config.stitch,
        "scale": plan.scale,
        "read_level": plan.read_level,
        "precision": str(lm.dtype).replace("torch.", ""),
        "vimscope": __version__,
    }


def plan_message(stem: str, plan, lm, notes: list[str]) -> str:
    h, w = plan.out_shape
    lines = [
        f"{stem}: {len(plan.tiles)} tiles of {plan.tile} px in {len(plan.bands)} bands, "
        f"output {w} x {h} px, model {lm.name} on {lm.device}"
    ]
    return "\n".join(lines + notes)


def read_summary(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _coarse_level(writer, name: str, side: int) -> tuple[int, tuple[int, int]]:
    """The finest pyramid level of ``name`` no longer than ``side`` on its long edge (else the coarsest)."""
    arr = None
    for level in range(writer.level_count(name)):
        arr = writer.array(name, level)
        shape = tuple(arr.shape[-2:])
        if max(shape) <= side:
            return level, shape
    return writer.level_count(name) - 1, tuple(arr.shape[-2:])


def write_preview(ctx: RunSetup) -> Path:
    from vimscope.writers.preview import write_preview as _write

    level, shape = _coarse_level(ctx.writer, "classes", PREVIEW_SIDE)
    class_map = np.asarray(ctx.writer.read_block("classes", Box(0, 0, shape[1], shape[0]), level))
    thumb = ctx.reader.thumbnail(PREVIEW_SIDE)
    _write(ctx.paths["preview"], thumb, class_map, ctx.classes, title=ctx.stem)
    return ctx.paths["preview"]


def summary_dict(ctx: RunSetup, stats: dict, outputs: dict, object_counts: dict | None = None) -> dict:
    from vimscope.writers.summary import build_summary

    meta, plan, spec = ctx.reader.meta, ctx.plan, ctx.spec
    tissue_px = None
    if ctx.mask is not None:
        per_mask_px = (ctx.mask.downsample / plan.scale) ** 2  # output pixels per mask pixel
        tissue_px = int(round(float(np.count_nonzero(ctx.mask.mask)) * per_mask_px))
    h, w = plan.out_shape
    seconds = time.perf_counter() - ctx.t0
    compute = max(ctx.timings.get("compute", seconds), 1e-9)
    return build_summary(
        slide=str(meta.path),
        model={
            "name": spec.name,
            "trained": bool(spec.trained),
            "license": spec.license,
            "weights": ctx.config.weights or spec.weights,
            "output": spec.output,
        },
        classes=ctx.classes,
        class_pixels=stats.get("class_pixels", {}),
        pixel_size=ctx.mpp_out,
        unit=summary_unit(meta),
        tissue_pixels=tissue_px,
        object_counts=object_counts,
        tiles={"planned": len(plan.tiles), "run": ctx.tiles_run, "bands": len(plan.bands)},
        damaged_tiles=[d["box"] for d in ctx.record.damaged.values()],
        timings={**ctx.timings, "total": seconds},
        outputs={k: str(v) for k, v in outputs.items()},
        extra={
            "backend": meta.backend,
            "slide_mpp": meta.mpp,
            "out_shape": [h, w],
            "megapixels": round(h * w / 1e6, 3),
            "tile": ctx.tile,
            "halo": ctx.halo,
            "stitch": ctx.config.stitch,
            "read_level": plan.read_level,
            "device": str(ctx.lm.device),
            "decode": ctx.decode,
            "tiles_per_second": round(ctx.tiles_run / compute, 3),
            "peak_open_chunks": ctx.peak_open,
            "notes": list(ctx.notes),
        },
    )


def report_text(summary: dict) -> str:
    """The one-paragraph report the CLI prints at the end of a run."""
    h, w = summary["out_shape"]
    unit = summary.get("unit")
    res = f" at {summary['pixel_size']:.3g} {unit}/px" if summary.get("pixel_size") else ""
    text = (
        f"{Path(summary['slide']).name}: {summary['tiles']['run']} of {summary['tiles']['planned']} tiles "
        f"({w} x {h} px output{res}) with {summary['model']['name']} on {summary['device']} in "
        f"{summary['timings_s']['total']:.1f} s ({summary['tiles_per_second']:.2f} tiles/s)."
    )
    areas = []
    for name, a in summary.get("class_areas", {}).items():
        key = next((k for k in a if k.startswith("area_")), None)
        if a.get("pixels") and key:
            areas.append(f"{name} {a[key]:.4g} {key[5:].replace('2', '²')} ({100 * a['fraction']:.1f}%)")
    if areas:
        text += " Classes: " + ", ".join(areas) + "."
    tissue = summary.get("tissue")
    if tissue:
        key = next((k for k in tissue if k.startswith("area_")), None)
        text += f" Tissue {tissue[key]:.4g} {key[5:].replace('2', '²')}." if key else ""
    objects = summary.get("objects") or {}
    if objects:
        text += " Objects: " + ", ".join(f"{k} {v}" for k, v in objects.items()) + "."
    d = summary["damaged_tiles"]["count"]
    if d:
        text += f" {d} damaged tile(s) were filled with background and are listed in the summary."
    if not summary["model"]["trained"]:
        text += f" Model {summary['model']['name']} is untrained (random weights): the classes are not meaningful."
    text += f" Output: {summary['outputs'].get('zarr', '')}."
    return text


def finish(ctx: RunSetup) -> Iterator:
    """Yield Progress events for the closing stages, then the RunResult's fields (a dict).

    Seconds per step land in ``ctx.timings`` as ``finish_<step>`` (the summary's ``timings_s``)."""
    from vimscope.writers.summary import write_summary

    want = set(ctx.config.outputs)
    writer, paths = ctx.writer, ctx.paths
    outputs: dict[str, Path] = {"zarr": paths["zarr"]}
    object_counts = None
    followers = ctx.followers
    if followers is not None:
        followers.rows.advance(ctx.plan.out_shape[0])  # every band is on disk
    preview = None
    if "preview" in want and ("classes" in want or "probabilities" in want) and writer.pyramid == "incremental":
        # the class map's pyramid is complete: draw the preview while the followers finish their last rows
        writer.flush(["classes"])
        drawing = ThreadPoolExecutor(1, thread_name_prefix="vimscope-preview")
        preview = drawing.submit(_timed_call, ctx, "preview", write_preview, ctx)
        drawing.shutdown(wait=False)  # its one task still runs; preview.result() waits for it
    if "nuclei" in writer.names:
        from vimscope.pipeline.instances import run_instances

        yield Progress("postprocess", 0, 1, message="labelling instances")
        with _timed(ctx, "instances"):
            if followers is not None and "instances" in followers:
                found = followers.result("instances")
            else:
                found = run_instances(ctx, cell_height=4 * writer.chunk)
        object_counts = found["counts"]
        outputs.update(found["paths"])
    yield Progress("write", 0, 1, message="building pyramids")
    with _timed(ctx, "pyramids"):
        stats = writer.finalize()
    if "preview" in want and ("classes" in want or "probabilities" in want):
        yield Progress("write", 0, 1, message="writing the preview")
        if preview is not None:
            outputs["preview"] = preview.result()
        else:
            outputs["preview"] = _timed_call(ctx, "preview", write_preview, ctx)
    if wants_geojson(ctx):
        yield Progress("write", 0, 1, message="writing GeoJSON")
        with _timed(ctx, "geojson"):
            if followers is not None and "geojson" in followers:
                path = followers.result("geojson")
            else:
                path = write_geojson(ctx)
        if path is not None:
            outputs["geojson"] = path
    if followers is not None:
        ctx.timings.update({f"follow_{k}": v for k, v in followers.seconds.items()})
    for fmt in ctx.config.formats:
        if fmt != "ome-zarr":
            yield Progress("write", 0, 1, message=f"writing {fmt}")
            with _timed(ctx, fmt.replace("-", "_")):
                outputs[fmt] = write_format(ctx, fmt)
    summary = summary_dict(ctx, stats, outputs, object_counts)
    if "summary" in want:
        outputs["summary"] = paths["summary"]
        summary["outputs"]["summary"] = str(paths["summary"])
        write_summary(paths["summary"], summary)
    ctx.record.remove()
    writer.commit(overwrite=ctx.config.overwrite)
    yield {"summary": summary, "paths": outputs, "report": report_text(summary), "notes": list(ctx.notes)}


def _timed_call(ctx: RunSetup, step: str, fn, *args):
    with _timed(ctx, step):
        return fn(*args)


@contextlib.contextmanager
def _timed(ctx: RunSetup, step: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        ctx.timings[f"finish_{step}"] = ctx.timings.get(f"finish_{step}", 0.0) + time.perf_counter() - t0


def write_format(ctx: RunSetup, fmt: str) -> Path:
    """The finished class map in another raster format, next to the OME-Zarr (levels from its pyramid)."""
    writer, meta = ctx.writer, ctx.reader.meta
    levels = [writer.array("classes", level) for level in range(writer.level_count("classes"))]
    out = ctx.paths["zarr"].parent
    if fmt == "ome-tiff":
        from vimscope.writers.ometiff import write_ome_tiff

        unit = summary_unit(meta)
        return write_ome_tiff(
            out / f"{ctx.stem}.classes.ome.tif",
            levels,
            pixel_size_um=ctx.mpp_out if unit == "µm" else None,
            classes=ctx.classes,
            overwrite=True,
        )
    if fmt == "geotiff":
        from vimscope.writers.geotiff import scaled_transform, write_geotiff

        return write_geotiff(
            out / f"{ctx.stem}.classes.tif",
            levels,
            crs=meta.crs,
            transform=scaled_transform(meta.transform, ctx.plan.scale),
            classes=ctx.classes,
            overwrite=True,
        )
    raise ValueError(f"unknown format {fmt}")


def wants_geojson(ctx: RunSetup) -> bool:
    return "geojson" in ctx.config.outputs and ctx.spec.output != "features"


def write_geojson(ctx: RunSetup, wait_rows=None) -> Path | None:
    """Class regions as QuPath annotations (level-0 px, or map coordinates for georeferenced rasters), read from
    the class map in row bands with regions merged across band borders (``writers.regions``). ``wait_rows(y)``:
    block until rows [0, y) are final (``pipeline.follow``)."""
    from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature
    from vimscope.writers.regions import iter_class_regions

    writer, plan, meta = ctx.writer, ctx.plan, ctx.reader.meta
    h, w = plan.out_shape
    rows = max(writer.chunk, (writer.chunk * 8192) // max(w, 1) // writer.chunk * writer.chunk)
    geo = bool(getattr(meta, "georeferenced", False) and meta.transform)
    unit = summary_unit(meta) or "µm"

    # areas from level-0 px: pixel size squared per level-0 px (map units already for georeferenced output)
    def read(box):
        if wait_rows is not None:
            wait_rows(box.y1)
        return writer.read_block("classes", box)

    regions = iter_class_regions(
        read,
        (h, w),
        band_height=rows,
        scale=plan.scale,
        transform=meta.transform if geo else None,
    )
    gj = GeoJSONWriter(ctx.paths["geojson"], overwrite=True, crs=meta.crs if geo else None)
    batch: list[dict] = []  # handed over 1024 at a time: the writer turns their geometries into JSON in one call
    try:
        for value, poly in regions:
            if value >= len(ctx.classes):
                continue
            c = ctx.classes[value]
            area = area_measurements(poly.area, None if geo else meta.mpp, unit)
            if geo:
                area = {f"Area {unit}^2": float(poly.area)}
            # the id from the slide's stem and the region's place in the (fixed) output order: a re-run writes the
            # same file
            fid = str(uuid.uuid5(OBJECT_NAMESPACE, f"{ctx.stem}/region/{gj.count + len(batch)}"))
            batch.append(
                qupath_feature(poly, object_type="annotation", name=c.name, color=c.color, measurements=area, id=fid)
            )
            if len(batch) >= 1024:
                gj.add_many(batch)
                batch.clear()
        gj.add_many(batch)
        if wait_rows is not None:
            wait_rows(h)  # a loop stopped meanwhile: no output under its final name
        return gj.close()
    except BaseException:
        gj.abort()
        raise
