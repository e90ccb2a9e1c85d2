"""What a run says about itself: the plan line before the loop, the summary after it, and the closing paragraph.

Every count and percentage is computed once, in ``summary_dict`` (from the store's full-resolution class pixels);
the preview's legend and the closing line read them from the summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vimscope.pipeline.exports import summary_unit
from vimscope.pipeline.runstate import Run


def plan_message(run: Run) -> str:
    """The line a face shows when the loop starts, and the run's notes below it."""
    tiling, lm = run.plan.tiling, run.plan.lm
    h, w = tiling.out_shape
    first = (
        f"{run.plan.stem}: {len(tiling.tiles)} tiles of {tiling.tile} px in {len(tiling.bands)} bands, "
        f"output {w} x {h} px, model {lm.name} on {lm.device}"
    )
    return "\n".join([first, *run.notes])


def read_summary(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def class_shares(summary: dict) -> dict[str, float]:
    """Class name -> fraction of the labelled pixels, as the summary has them (for the preview's legend)."""
    return {name: float(a.get("fraction", 0.0)) for name, a in summary.get("class_areas", {}).items()}


def summary_dict(run: Run, stats: dict, outputs: dict, object_counts: dict | None = None) -> dict:
    """The summary (``writers.summary.build_summary``) of a finished run; ``stats``: the store's ``finalize``."""
    from vimscope.writers.summary import build_summary

    p = run.plan
    meta, tiling, spec = p.reader.meta, p.tiling, p.spec
    tissue_px = None
    if p.mask is not None:
        per_mask_px = (p.mask.downsample / tiling.scale) ** 2  # output pixels per mask pixel
        tissue_px = int(round(float(np.count_nonzero(p.mask.mask)) * per_mask_px))
    h, w = tiling.out_shape
    seconds = time.perf_counter() - run.stats.t0
    timings = run.stats.timings
    compute = max(timings.get("compute", seconds), 1e-9)
    summary = build_summary(
        slide=str(meta.path),
        model={
            "name": spec.name,
            "trained": bool(spec.trained),
            "license": spec.license,
            "weights": p.config.weights or spec.weights,
            "output": spec.output,
            **({"chosen": p.model_choice} if p.model_choice else {}),
        },
        classes=p.classes,
        class_pixels=stats.get("class_pixels", {}),
        pixel_size=p.mpp_out,
        unit=summary_unit(meta),
        tissue_pixels=tissue_px,
        object_counts=object_counts,
        tiles={"planned": len(tiling.tiles), "run": run.stats.tiles_run, "bands": len(tiling.bands)},
        damaged_tiles=[d["box"] for d in run.record.damaged.values()],
        timings={**timings, "total": seconds},
        outputs={k: str(v) for k, v in outputs.items()},
        extra={
            "backend": meta.backend,
            "slide_mpp": meta.mpp,
            "out_shape": [h, w],
            "megapixels": round(h * w / 1e6, 3),
            "tile": p.tile,
            "halo": p.halo,
            "stitch": p.config.stitch,
            "read_level": tiling.read_level,
            "device": str(p.lm.device),
            "decode": run.stats.decode,
            "batch_size": p.config.batch_size,
            "tiles_per_second": round(run.stats.tiles_run / compute, 3),
            "peak_open_chunks": run.stats.peak_open,
            "settings_key": p.settings_key,
            "notes": list(run.notes),
        },
    )
    _add_damaged_sources(summary, run)
    return summary


def _add_damaged_sources(summary: dict, run: Run) -> None:
    """The damaged tiles of the slide itself (each once, with level and level-0 boxes), from the output tiles they
    touched and the tissue mask, beside the output tiles the summary lists already."""
    from vimscope.io.damage import unique_areas

    mask = run.plan.mask
    found = [s for d in run.record.damaged.values() for s in d.get("sources", [])]
    sources = unique_areas(found + list(getattr(mask, "damaged", None) or []))
    summary["damaged_tiles"]["sources"] = sources
    summary["damaged_tiles"]["source_count"] = len(sources)
    summary["tiles"]["damaged"] = len(run.record.damaged)


def _area(entry: dict) -> str | None:
    key = next((k for k in entry if k.startswith("area_")), None)
    return f"{entry[key]:.4g} {key[5:].replace('2', '²')}" if key else None


def _damage_sentence(damaged: dict) -> str:
    """The slide's damaged tiles (``sources``) and the output tiles they touched, with level-0 boxes."""
    from vimscope.io.damage import describe_areas

    n, sources = damaged["count"], damaged.get("sources") or []
    boxes = "; ".join(",".join(str(int(v)) for v in b) for b in damaged["boxes"][:3] if isinstance(b, list))
    more = f" and {n - 3} more" if n > 3 else ""
    if sources and n:
        return (
            f"{describe_areas(sources)} touched {n} output tile(s) (level-0 x,y,w,h: {boxes}{more}); the damaged "
            "pixels are filled with background and all are listed in the summary."
        )
    if sources:
        return f"{describe_areas(sources)}, outside the tiles run; listed in the summary."
    return f"{n} damaged tile(s) were filled with background (level-0 x,y,w,h: {boxes}{more}; all in the summary)."


def report_text(summary: dict) -> str:
    """The one-paragraph report the CLI prints at the end of a run."""
    h, w = summary["out_shape"]
    unit = summary.get("unit")
    res = f" at {summary['pixel_size']:.3g} {unit}/px" if summary.get("pixel_size") else ""
    text = (
        f"{Path(summary['slide']).name}: {summary['tiles']['run']} of {summary['tiles']['planned']} tiles "
        f"({w} x {h} px output{res}) with {_model(summary['model'])} on {summary['device']} in "
        f"{summary['timings_s']['total']:.1f} s ({summary['tiles_per_second']:.2f} tiles/s)."
    )
    areas = [
        f"{name} {_area(a)} ({100 * a['fraction']:.1f}%)"
        for name, a in summary.get("class_areas", {}).items()
        if a.get("pixels") and _area(a)
    ]
    if areas:
        text += " Classes: " + ", ".join(areas) + "."
    tissue = summary.get("tissue")
    if tissue and _area(tissue):
        text += f" Tissue {_area(tissue)}."
    objects = summary.get("objects") or {}
    if objects:
        text += " Objects: " + ", ".join(f"{k} {v}" for k, v in objects.items()) + "."
    damaged = summary["damaged_tiles"]
    if damaged["count"] or damaged.get("sources"):
        text += " " + _damage_sentence(damaged)
    if not summary["model"]["trained"]:
        text += f" Model {summary['model']['name']} is untrained (random weights): the classes are not meaningful."
    text += f" Output: {summary['outputs'].get('zarr', '')}"
    gis = [summary["outputs"][k] for k in ("gpkg", "geotiff") if k in summary["outputs"]]
    return text + (f" (for GIS: {', '.join(gis)})." if gis else ".")


def _model(model: dict) -> str:
    """The model's name, and why it was chosen when the run chose it (``pipeline.choice``)."""
    return f"{model['name']} ({model['chosen']})" if model.get("chosen") else model["name"]
