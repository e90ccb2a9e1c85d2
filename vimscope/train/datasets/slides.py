"""Slides with QuPath annotations (File > Export objects as GeoJSON): polygons in level-0 pixels, each with a
classification name, rasterised with the pixel-edge convention of the writers (pixel centres sampled, holes kept).

What is labelled: polygons whose class is in ``region_classes`` mark annotated areas (one training image each);
without them, the bounding box of all class polygons is one image. Inside an annotated area, pixels no class
polygon covers are background (``unannotated: background``) or unlabelled (``unannotated: ignore``, for sparse
labels); outside it they are unlabelled. Each image is read at ``read_mpp`` (default: the model's resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage, LoadContext, resolve
from vimscope.train.rasterize import polygon_mask, rasterize
from vimscope.types import Box
from vimscope.vector.geojson import classification_name, read_features

SLIDE_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".mrxs", ".scn", ".bif", ".vms", ".png", ".jpg", ".zarr")


@dataclass
class SlideSource:
    """``kind: slides``."""

    path: str  # a slide, or a folder of slides
    classes: list[str]  # index 0 is background; the others are QuPath classification names
    annotations: str | None = None  # a GeoJSON file (one slide) or folder; default: <slide stem>.geojson beside it
    region_classes: list[str] = field(default_factory=lambda: ["Region", "Region*"])
    unannotated: str = "background"  # or "ignore"
    instances: bool = False  # every class polygon is also an object (nucleus / cell annotations)
    ignore_unknown: bool = False  # skip polygons of other classes instead of stopping with an error
    mpp: float | None = None  # level-0 pixel size, overriding the slide's
    read_mpp: float | None = None  # resolution to read at (default: the model's; level 0 when neither)
    margin: int = 0  # level-0 pixels added around the annotations' bounding box (no regions)
    max_megapixels: float = 100.0  # refuse images larger than this at read resolution (mark regions instead)

    def validate(self) -> None:
        if self.unannotated not in ("background", "ignore"):
            raise ConfigError(f"data[slides].unannotated must be background or ignore, not {self.unannotated!r}")
        if len(self.classes) < 2:
            raise ConfigError("data[slides].classes needs background and at least one class")


def _is_region(name: str | None, patterns: list[str]) -> bool:
    from fnmatch import fnmatchcase

    return name is not None and any(fnmatchcase(name, p) for p in patterns)


def _slides(root: Path) -> list[Path]:
    if root.is_file() or root.suffix == ".zarr":
        return [root]
    if not root.is_dir():
        raise ConfigError(f"slide not found: {root}")
    return sorted(p for p in root.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)


def _annotation_file(cfg: SlideSource, slide: Path, ctx: LoadContext, single: bool) -> Path:
    if cfg.annotations is None:
        for suffix in (".geojson", ".json", ".geojson.gz"):
            candidate = slide.with_name(slide.stem + suffix)
            if candidate.is_file():
                return candidate
        raise ConfigError(f"no annotations for {slide.name} (expected {slide.stem}.geojson beside it)")
    ann = resolve(cfg.annotations, ctx)
    if ann.is_dir():
        return ann / f"{slide.stem}.geojson"
    if not single:
        raise ConfigError("data[slides].annotations names one file but path holds several slides; give a folder")
    return ann


def load_slides(cfg: SlideSource, ctx: LoadContext) -> list[LabelledImage]:
    import shapely
    from shapely.geometry import shape

    from vimscope.io import open_slide

    slides = _slides(resolve(cfg.path, ctx))
    index = {name: k for k, name in enumerate(cfg.classes)}
    out = []
    for slide in slides:
        features = read_features(_annotation_file(cfg, slide, ctx, len(slides) == 1), what="annotations")
        regions, labelled = [], []
        for f in features:
            if not f.get("geometry"):
                continue
            name = classification_name(f)
            geom = shape(f["geometry"])
            if geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
                continue
            if not geom.is_valid:
                geom = geom.buffer(0)
            if _is_region(name, cfg.region_classes):
                regions.append(geom)
            elif name in index and index[name] > 0:
                labelled.append((geom, index[name]))
            elif name is not None and name not in index and not cfg.ignore_unknown:
                raise ConfigError(
                    f"{slide.name}: annotation class {name!r} is not in classes {cfg.classes} "
                    "(add it, or set ignore_unknown: true)"
                )
        if not labelled and not regions:
            raise ConfigError(f"{slide.name}: no annotations of classes {cfg.classes[1:]}")
        with open_slide(slide, mpp=cfg.mpp) as reader:
            meta = reader.meta
            w0, h0 = meta.dimensions
            read_mpp = cfg.read_mpp or ctx.target_mpp
            ds = 1.0
            if read_mpp is not None and meta.mpp is not None:
                ds = max(1.0, read_mpp / meta.mpp)
            if regions:
                areas = [(f"{slide.stem}_r{i}", r) for i, r in enumerate(regions, 1)]
            else:
                x0, y0, x1, y1 = shapely.union_all([g for g, _ in labelled]).bounds
                m = cfg.margin
                areas = [(slide.stem, shapely.box(x0 - m, y0 - m, x1 + m, y1 + m))]
            for name, area in areas:
                out.append(_read_area(reader, name, area, regions != [], labelled, ds, cfg, (w0, h0)))
    return out


def _read_area(reader, name, area, is_region, labelled, ds, cfg, size0) -> LabelledImage:
    import shapely
    from shapely import affinity

    w0, h0 = size0
    x0, y0, x1, y1 = area.bounds
    bx0, by0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    bx1, by1 = min(int(np.ceil(x1)), w0), min(int(np.ceil(y1)), h0)
    if bx1 <= bx0 or by1 <= by0:
        raise ConfigError(f"{name}: the annotated area lies outside the slide")
    box0 = Box(bx0, by0, bx1 - bx0, by1 - by0)
    out_w, out_h = max(1, round(box0.w / ds)), max(1, round(box0.h / ds))
    if out_w * out_h > cfg.max_megapixels * 1e6:
        raise ConfigError(
            f"{name}: {out_w}x{out_h} px to read; mark smaller regions (class Region) or raise max_megapixels"
        )
    if ds == 1.0:
        pixels = reader.read(box0, 0)
    else:
        level = reader.best_level_for_downsample(ds)
        pixels = reader.read_region(box0, level, (out_w, out_h))
    if pixels.shape[2] == 4 and reader.meta.has_alpha:
        pixels = pixels[:, :, :3]

    def to_pixels(g):
        g = affinity.translate(g, -box0.x, -box0.y)
        return affinity.scale(g, 1 / ds, 1 / ds, origin=(0, 0)) if ds != 1.0 else g

    shape = (out_h, out_w)
    inside = polygon_mask(to_pixels(area), shape) if is_region else np.ones(shape, bool)
    classes = np.full(shape, IGNORE_INDEX, np.uint8)
    classes[inside] = 0 if cfg.unannotated == "background" else IGNORE_INDEX
    crop = shapely.box(box0.x, box0.y, box0.x1, box0.y1)
    items = [(to_pixels(g), k) for g, k in labelled if g.intersects(crop)]
    burnt = rasterize(items, shape, fill=IGNORE_INDEX, dtype=np.int32)
    classes[burnt != IGNORE_INDEX] = burnt[burnt != IGNORE_INDEX]
    instances = None
    if cfg.instances:
        instances = rasterize(((g, i) for i, (g, _) in enumerate(items, 1)), shape, dtype=np.int32)
    mpp = reader.meta.mpp * ds if reader.meta.mpp is not None else None
    return LabelledImage(name, pixels, classes=classes, instances=instances, mpp=mpp, class_names=list(cfg.classes))
