"""What ``vimscope info`` reports, as JSON-ready dicts: an image (levels, pixel size, vendor, CRS, bands) and, with
a target resolution or a tile size, how much of it a run would process; a model's IO contract and licence.

The faces format these (a table, or ``--json``). It stays light: io, tissue and the tile plan only, no torch.
"""

from __future__ import annotations

from vimscope.errors import MissingPixelSizeError, RegionError

DEFAULT_TILE = 1024


def _processing(reader, target_mpp, tile, halo, notes: list[str], region=None) -> dict | None:
    from vimscope.tiling.plan import plan_tiles
    from vimscope.tissue import mask as tissue_mask

    meta = reader.meta
    if target_mpp is not None and meta.mpp is None:
        notes.append(f"tiles at {target_mpp} µm/px need the image's pixel size: pass --mpp")
        return None
    try:
        mask = tissue_mask(reader)
    except MissingPixelSizeError:
        mask = None
        notes.append("tissue fraction needs the pixel size (sizes are in µm²): pass --mpp; counting all tiles")
    plan = plan_tiles(meta, target_mpp=target_mpp, tile=tile, halo=halo, mask=mask, region=region)
    rows, cols = plan.grid_shape
    return {
        "target_mpp": target_mpp,
        "tile": tile,
        "halo": halo,
        "read_level": plan.read_level,
        "scale": plan.scale,
        "level_scale": plan.level_scale,
        "out_shape": list(plan.out_shape),
        "tiles": len(plan.tiles),
        "grid_tiles": rows * cols,
        "stripes": plan.stripes,
        "tissue_fraction": None if mask is None else round(mask.fraction, 6),
        "mask_method": None if mask is None else mask.method,
        "region": None if region is None else [b.to_list() for b in region],
    }


def describe_slide(path: str, *, mpp=None, target_mpp=None, tile=None, halo=0, require_mpp=False, region=None) -> dict:
    """Everything ``info`` reports about one image, as a JSON-ready dict."""
    from vimscope.io import open_slide

    with open_slide(path, mpp=mpp) as reader:
        meta = reader.meta
        if require_mpp and meta.mpp is None:
            raise MissingPixelSizeError(f"{path}: the file gives no pixel size; pass --mpp")
        out = meta.to_dict()
        out["levels"] = [
            {
                "level": i,
                "width": w,
                "height": h,
                "downsample": meta.level_downsamples[i],
                "mpp": meta.level_mpp(i),
                "computed": i >= meta.native_levels,
                "tile_size": None if reader.level_tile_size(i) is None else list(reader.level_tile_size(i)),
            }
            for i, (w, h) in enumerate(meta.level_dimensions)
        ]
        notes: list[str] = []
        if meta.mpp is None:
            notes.append("mpp: unknown (pass --mpp to give the level-0 pixel size)")
        out["processing"] = None
        if region is not None:
            w, h = meta.dimensions
            for box in region:
                if box.w <= 0 or box.h <= 0 or box.x < 0 or box.y < 0 or box.x1 > w or box.y1 > h:
                    raise RegionError(
                        f"--region {box.to_list()} (x, y, width, height) lies outside {path} ({w} x {h} px)"
                    )
        if target_mpp is not None or tile is not None or region is not None:
            out["processing"] = _processing(reader, target_mpp, tile or DEFAULT_TILE, halo, notes, region)
        out["notes"] = notes
    return out


def describe_model(name: str) -> dict:
    """A model's IO contract and licence (what `summary.json` records), without loading its weights."""
    from vimscope.models import load_spec, model_aliases

    spec = load_spec(name)
    return {
        "model": spec.name,
        "aliases": [a for a, n in model_aliases().items() if n == spec.name],
        "trained": spec.trained,
        "license": spec.license,
        "output": spec.output,
        "mpp": spec.mpp,
        "tile": spec.tile,
        "halo": spec.halo,
        "classes": [c.name for c in spec.classes],
        "weights": spec.weights,
        "description": spec.description,
    }
