"""Web-map tile sets (``OAM-<x>-<y>-<z>`` chips of the slippy-map grid, as OpenAerialMap and HOT's fAIr export
them): the tiles of each zoom are mosaicked back into the areas they cut, so that a model sees a building with its
surroundings and long training tiles fit; a tile missing inside an area's bounding box is unlabelled.

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
from vimscope.train.datasets.readers import IMAGE_SUFFIXES, read_array, read_rgb_or_bands

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
            out.append(
                LabelledImage(
                    f"{prefix}-z{z}-{i}",
                    pixels,
                    classes=classes,
                    mpp=ground_metres_per_pixel(mid_row, z, s),
                    group=cfg.group or prefix,
                    class_names=list(cfg.classes),
                )
            )
    return out
