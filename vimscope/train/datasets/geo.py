"""Georeferenced labelled rasters: an image GeoTIFF with either vector footprints (GeoJSON in any CRS, reprojected
with pyproj and clipped to the image) or a label raster (with a nodata / unlabelled value).

GeoTIFF georeferencing is read with tifffile (ModelTiepoint + ModelPixelScale, or ModelTransformation), as a GDAL
affine ``(x0, dx, rx, y0, ry, dy)``: x = x0 + col*dx + row*rx, y = y0 + col*ry + row*dy of a pixel's corner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage, LoadContext, resolve
from vimscope.train.datasets.readers import read_rgb_or_bands
from vimscope.train.rasterize import rasterize


@dataclass
class GeoRaster:
    array: np.ndarray
    transform: tuple[float, float, float, float, float, float] | None
    crs: str | None  # "EPSG:32737"
    nodata: float | None

    @property
    def pixel_size(self) -> float | None:
        return abs(self.transform[1]) if self.transform else None


def read_geotiff(path: str | Path) -> GeoRaster:
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"raster not found: {path}")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        geo = tif.geotiff_metadata if tif.is_geotiff else None
        nodata_tag = page.tags.get("GDAL_NODATA")
        nodata = float(str(nodata_tag.value).strip("\x00 ")) if nodata_tag is not None else None
    array = read_rgb_or_bands(path) if path.suffix.lower() in (".tif", ".tiff") else None
    transform, crs = None, None
    if geo:
        if "ModelTransformation" in geo:
            m = np.asarray(geo["ModelTransformation"], dtype=float).reshape(4, 4)
            transform = (m[0, 3], m[0, 0], m[0, 1], m[1, 3], m[1, 0], m[1, 1])
        elif "ModelTiepoint" in geo and "ModelPixelScale" in geo:
            i, j, _, x, y, _ = (float(v) for v in geo["ModelTiepoint"][:6])
            sx, sy = (float(v) for v in geo["ModelPixelScale"][:2])
            transform = (x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy)
        code = geo.get("ProjectedCSTypeGeoKey") or geo.get("GeographicTypeGeoKey")
        if code is not None:
            crs = f"EPSG:{int(code)}"
    return GeoRaster(array, transform, crs, nodata)


def read_geojson(path: Path) -> dict:
    """A GeoJSON document, or a one-line ConfigError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"labels not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid GeoJSON ({e})") from None


def geojson_crs(doc: dict) -> str:
    """RFC 7946 GeoJSON is lon/lat (CRS84); older files name their CRS in a ``crs`` member."""
    name = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    if not name or name.endswith("CRS84"):
        return "OGC:CRS84"
    if "EPSG::" in name:  # urn:ogc:def:crs:EPSG::32737
        return "EPSG:" + name.split("EPSG::")[-1]
    return name


def geo_to_pixel(geom, transform, src_crs: str | None, dst_crs: str | None):
    """A shapely geometry in ``src_crs`` to the pixel coordinates of a raster (``transform`` in ``dst_crs``)."""
    import shapely

    x0, dx, rx, y0, ry, dy = transform
    inv = np.linalg.inv(np.array([[dx, rx], [ry, dy]], dtype=float))
    transformer = None
    if src_crs and dst_crs and src_crs != dst_crs:
        from pyproj import Transformer

        transformer = Transformer.from_crs(src_crs, dst_crs, always_xy=True)

    def to_pixel(xy: np.ndarray) -> np.ndarray:
        if transformer is not None:
            xy = np.stack(transformer.transform(xy[:, 0], xy[:, 1]), axis=1)
        return (xy - [x0, y0]) @ inv.T

    return shapely.transform(geom, to_pixel)


@dataclass
class VectorSource:
    """``kind: vector``: a GeoTIFF and a GeoJSON of polygons (e.g. building footprints) covering it.

    ``classes`` names the classes (index 0 background); with ``class_property`` each feature's class is the class
    whose name equals that property (features of other values are skipped), otherwise every polygon is class 1.
    Each kept polygon is also an instance."""

    image: str
    labels: str
    classes: list[str] = field(default_factory=lambda: ["background", "building"])
    class_property: str | None = None
    name: str | None = None
    group: str = ""
    crs: str | None = None  # the GeoJSON's CRS when the file does not say (default CRS84)


def load_vector(cfg: VectorSource, ctx: LoadContext) -> list[LabelledImage]:
    import shapely
    from shapely.geometry import shape as to_shape

    raster = read_geotiff(resolve(cfg.image, ctx))
    if raster.transform is None:
        raise ConfigError(f"{cfg.image}: no georeferencing, cannot place vector labels")
    doc = read_geojson(resolve(cfg.labels, ctx))
    src_crs = cfg.crs or geojson_crs(doc)
    h, w = raster.array.shape[:2]
    index = {name: k for k, name in enumerate(cfg.classes)}
    kept, classes_of = [], []
    for feature in doc.get("features", []):
        if not feature.get("geometry"):
            continue
        if cfg.class_property:
            value = (feature.get("properties") or {}).get(cfg.class_property)
            if value not in index or index[value] == 0:
                continue
            classes_of.append(index[value])
        else:
            classes_of.append(1)
        kept.append(to_shape(feature["geometry"]))
    # one vectorised reprojection of every vertex, then clip to the image in pixel space
    pixel_geoms = geo_to_pixel(np.array(kept, dtype=object), raster.transform, src_crs, raster.crs)
    clipped = shapely.clip_by_rect(pixel_geoms, 0, 0, w, h) if len(kept) else []
    items = [(g, c) for g, c in zip(clipped, classes_of) if not g.is_empty and g.area > 0]
    classes = rasterize(items, (h, w), dtype=np.uint8)
    instances = rasterize(((g, k) for k, (g, _) in enumerate(items, 1)), (h, w), dtype=np.int32)
    return [
        LabelledImage(
            cfg.name or Path(cfg.image).stem,
            raster.array,
            classes=classes,
            instances=instances,
            mpp=raster.pixel_size,
            group=cfg.group,
            class_names=list(cfg.classes),
        )
    ]


@dataclass
class RasterMaskSource:
    """``kind: raster_mask``: an image raster and a label raster of the same grid.

    Label values map to classes through ``value_map`` (e.g. ``{255: 1}``; unmapped values stay as they are);
    ``ignore_values`` and the mask's nodata become the ignore index (unlabelled pixels)."""

    image: str
    mask: str
    classes: list[str]
    value_map: dict = field(default_factory=dict)
    ignore_values: list[float] = field(default_factory=list)
    name: str | None = None
    group: str = ""
    mpp: float | None = None


def load_raster_mask(cfg: RasterMaskSource, ctx: LoadContext) -> list[LabelledImage]:
    image = read_geotiff(resolve(cfg.image, ctx))
    mask = read_geotiff(resolve(cfg.mask, ctx))
    raw = mask.array[..., 0] if mask.array.ndim == 3 else mask.array
    if raw.shape != image.array.shape[:2]:
        raise ConfigError(f"{cfg.mask}: mask {raw.shape} does not match image {image.array.shape[:2]}")
    ignore = np.isin(raw, cfg.ignore_values) | ~np.isfinite(raw)
    if mask.nodata is not None:
        ignore |= raw == mask.nodata
    values = np.where(ignore, 0, raw)
    if not np.all(values == np.round(values)):
        raise ConfigError(f"{cfg.mask}: label values must be integers")
    values = values.astype(np.int64)
    classes = values.copy()
    for src, dst in cfg.value_map.items():
        classes[values == int(src)] = int(dst)
    if classes.max(initial=0) >= len(cfg.classes):
        raise ConfigError(f"{cfg.mask}: label value {int(classes.max())} but only {len(cfg.classes)} classes are named")
    classes = classes.astype(np.uint8)
    classes[ignore] = IGNORE_INDEX
    return [
        LabelledImage(
            cfg.name or Path(cfg.image).stem,
            image.array,
            classes=classes,
            mpp=cfg.mpp if cfg.mpp is not None else image.pixel_size,
            group=cfg.group,
            class_names=list(cfg.classes),
        )
    ]
