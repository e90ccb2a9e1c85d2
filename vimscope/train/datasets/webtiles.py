"""Web-map tile sets (``OAM-<x>-<y>-<z>`` chips of the slippy-map grid, as OpenAerialMap and HOT's fAIr export
them): the tiles of each zoom are mosaicked back into the areas they cut, so that a model sees a building with its
surroundings and long training tiles fit; a tile missing inside an area's bounding box is unlabelled.

With ``labels`` (the set's GeoJSON of footprints, as fAIr ships beside its masks) each area also gets an instance
map, so that object metrics count buildings rather than merged blocks; ``touching_gap_m`` then carves the strip
where two footprints meet out of the class mask (as background), so a class model learns to keep touching
buildings apart (the U-Net paper's separation borders, as labels rather than loss weights). Without it the class
mask stays the set's own.

The tile name is the georeference (EPSG:3857 map tile x, y at zoom z). The pixel size is the ground distance:
the map's metres per pixel at the area's latitude times cos(latitude), so drone sets at zoom 19 to 21 land on
one resolution contract (metres per pixel) with UTM orthophotos.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage, LoadContext, resolve
from vimscope.train.datasets.folder import FolderSource, classes_from_mask
from vimscope.train.datasets.geo import geo_to_pixel, geojson_crs, read_geojson
from vimscope.train.datasets.readers import IMAGE_SUFFIXES, read_array, read_rgb_or_bands
from vimscope.train.rasterize import rasterize
from vimscope.train.targets import touching_gaps

__all__ = ["WebTilesSource", "ground_metres_per_pixel", "load_web_tiles", "tile_areas"]

EARTH_RADIUS_M = 6378137.0  # the WGS 84 semi-major axis web-Mercator tiles are defined on
TILE_NAME = re.compile(r"(\d+)-(\d+)-(\d+)$")


@dataclass
class WebTilesSource:
    """``kind: web_tiles``: ``<path>/<images>/<name>-x-y-z.<ext>`` with ``<masks>/<name>-x-y-z<mask_suffix>.<ext>``
    class masks (``value_map``: raw value -> class, as for ``folder``)."""

    path: str
    images: str = "images"
    masks: str = "masks"
    mask_suffix: str = ""
    classes: list[str] = field(default_factory=lambda: ["background", "building"])
    value_map: dict = field(default_factory=dict)
    ignore_values: list[int] = field(default_factory=list)
    zooms: list[int] = field(default_factory=list)  # the zoom levels to use (all when empty)
    name: str = ""  # prefix of the image names (default: the folder's name)
    group: str = ""
    tile_size: int = 256
    labels: str = ""  # GeoJSON of the footprints (lon/lat unless it names a CRS), relative to ``path``
    touching_gap_m: float = 0.0  # with labels: width of the background strip carved where two footprints meet


def tile_latitude(y: float, z: int) -> float:
    """Latitude in degrees of the tile row edge ``y`` (fractional rows allowed) at zoom ``z``."""
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / 2**z))))


def ground_metres_per_pixel(y: float, z: int, tile_size: int = 256) -> float:
    """Ground sampling distance of a web-Mercator tile pixel at row ``y`` of zoom ``z``."""
    return 2 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(tile_latitude(y, z))) / (tile_size * 2**z)


def tile_areas(tiles: set[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The tiles split into areas of edge- or corner-touching tiles (8-connectivity), each sorted, in order of
    their first tile."""
    left, areas = set(tiles), []
    for start in sorted(tiles):
        if start not in left:
            continue
        area, todo = [], [start]
        left.discard(start)
        while todo:
            x, y = todo.pop()
            area.append((x, y))
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    n = (x + dx, y + dy)
                    if n in left:
                        left.discard(n)
                        todo.append(n)
        areas.append(sorted(area))
    return areas


def _index(folder, suffix: str = "") -> dict[tuple[int, int, int], object]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = p.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        m = TILE_NAME.search(stem)
        if m:
            x, y, z = (int(v) for v in m.groups())
            out[(x, y, z)] = p
    return out


def load_web_tiles(cfg: WebTilesSource, ctx: LoadContext) -> list[LabelledImage]:
    root = resolve(cfg.path, ctx)
    image_dir, mask_dir = root / cfg.images, root / cfg.masks
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise ConfigError(f"web_tiles: {image_dir} and {mask_dir} must both be folders")
    images, masks = _index(image_dir), _index(mask_dir, cfg.mask_suffix)
    unmatched = sorted(set(images) - set(masks))
    if unmatched:
        x, y, z = unmatched[0]
        raise ConfigError(f"web_tiles: no mask for tile {x}-{y}-{z} in {mask_dir} ({len(unmatched)} unmatched)")
    as_folder = FolderSource(
        str(root), classes=list(cfg.classes), value_map=cfg.value_map, ignore_values=cfg.ignore_values
    )
    if cfg.touching_gap_m > 0 and not cfg.labels:
        raise ConfigError("web_tiles: touching_gap_m needs labels (the footprints' GeoJSON)")
    footprints = _footprints(root / cfg.labels) if cfg.labels else None
    prefix = cfg.name or root.name
    s = cfg.tile_size
    out = []
    for z in sorted({k[2] for k in images}):
        if cfg.zooms and z not in cfg.zooms:
            continue
        for i, area in enumerate(tile_areas({(x, y) for x, y, zz in images if zz == z})):
            xs, ys = [t[0] for t in area], [t[1] for t in area]
            x0, y0 = min(xs), min(ys)
            h, w = (max(ys) - y0 + 1) * s, (max(xs) - x0 + 1) * s
            pixels = np.zeros((h, w, 3), np.uint8)
            classes = np.full((h, w), IGNORE_INDEX, np.uint8)
            for x, y in area:
                tile = read_rgb_or_bands(images[(x, y, z)])[:, :, :3]
                mask = read_array(masks[(x, y, z)])
                if tile.shape[:2] != (s, s) or mask.shape[:2] != (s, s):
                    raise ConfigError(
                        f"web_tiles: tile {x}-{y}-{z} is not {s}x{s} (image {tile.shape[:2]}, mask {mask.shape[:2]})"
                    )
                r, c = (y - y0) * s, (x - x0) * s
                pixels[r : r + s, c : c + s] = tile if tile.shape[2] == 3 else tile[:, :, :1]
                classes[r : r + s, c : c + s] = classes_from_mask(mask, as_folder, masks[(x, y, z)])
            mid_row = (min(ys) + max(ys) + 1) / 2
            mpp = ground_metres_per_pixel(mid_row, z, s)
            instances = None
            if footprints is not None:
                instances = _area_instances(footprints, (x0, y0, z), s, classes)
                if cfg.touching_gap_m > 0:
                    gaps = touching_gaps(instances, max(1, round(cfg.touching_gap_m / 2 / mpp)))
                    classes[gaps] = 0
            out.append(
                LabelledImage(
                    f"{prefix}-z{z}-{i}",
                    pixels,
                    classes=classes,
                    instances=instances,
                    mpp=mpp,
                    group=cfg.group or prefix,
                    class_names=list(cfg.classes),
                )
            )
    return out


def _footprints(path) -> tuple[np.ndarray, str]:
    """The footprint polygons of a GeoJSON file (shapely array) and their CRS."""
    from shapely.geometry import shape as to_shape

    doc = read_geojson(path)
    polygons = [to_shape(f["geometry"]) for f in doc.get("features", []) if f.get("geometry")]
    return np.array(polygons, dtype=object), geojson_crs(doc)


def _area_instances(footprints, origin: tuple[int, int, int], s: int, classes: np.ndarray) -> np.ndarray:
    """Instance map of an area mosaic whose top-left tile is ``origin`` (x, y, z): the footprints rasterised
    with the masks' rule (pixel centres), numbered 1..N, kept inside the class mask's foreground only."""
    import shapely
    from skimage.segmentation import relabel_sequential

    polygons, crs = footprints
    x0, y0, z = origin
    half = math.pi * EARTH_RADIUS_M
    tile_m = 2 * half / 2**z
    transform = (x0 * tile_m - half, tile_m / s, 0.0, half - y0 * tile_m, 0.0, -tile_m / s)
    h, w = classes.shape
    pixel_polygons = shapely.clip_by_rect(geo_to_pixel(polygons, transform, crs, "EPSG:3857"), 0, 0, w, h)
    items = [(g, k) for k, g in enumerate(pixel_polygons, 1) if not g.is_empty and g.area > 0]
    instances = rasterize(items, (h, w), dtype=np.int32)
    instances[(classes == 0) | (classes == IGNORE_INDEX)] = 0
    return relabel_sequential(instances)[0].astype(np.int32)
