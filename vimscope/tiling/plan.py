"""Which tiles to run, where to read them and in what order: a pure-numpy, deterministic, JSON-round-tripping plan.

Coordinates: the *output grid* is the image at the processing resolution (``scale`` level-0 px per output px).
A tile's ``box`` is its core (what it contributes to the output, clipped to the image); its ``read_box`` is the
core grown by ``halo`` on every side, always ``tile`` x ``tile``, and may extend past the image (the loader pads).

Order: vertical stripes at most ``stripe_width`` output px wide, left to right; inside a stripe, bands of tile
rows top to bottom; inside a band, row-major. The stitcher flushes a band as soon as its tiles are done, so peak
memory is O(stripe x band) whatever the image size (DESIGN.md, stitch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

import numpy as np

from vimscope.errors import ConfigError, MissingPixelSizeError, RegionError
from vimscope.types import Box

PLAN_VERSION = 1


@dataclass(frozen=True)
class Tile:
    index: int  # position in TilePlan.tiles (processing order)
    row: int  # grid row
    col: int  # grid column
    box: Box  # core box in output px, clipped to out_shape
    read_box: Box  # core grown by halo, tile x tile output px; may extend past the image
    band: int  # index into TilePlan.bands
    stripe: int


@dataclass
class Band:
    index: int
    stripe: int
    box: Box  # output px, clipped to out_shape
    tiles: list[int]  # indices into TilePlan.tiles; the band is flushable once these are done


@dataclass
class TilePlan:
    read_level: int
    scale: float  # level-0 px per output px
    level_scale: float  # read-level px per output px (resample factor; >= 1 means downsample)
    out_shape: tuple[int, int]  # (height, width) of the output grid in output px
    tile: int
    halo: int
    core: int  # stride = tile - 2 * halo
    tiles: list[Tile] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    grid_shape: tuple[int, int] = (0, 0)  # (rows, cols) of the full tile grid
    target_mpp: float | None = None
    mpp: float | None = None  # level-0 pixel size the plan was made with
    level0_shape: tuple[int, int] = (0, 0)  # (height, width) of level 0
    stripe_width: int = 16384
    band_height: int | None = None

    @property
    def stripes(self) -> int:
        return 1 + max((b.stripe for b in self.bands), default=-1)

    def level0_box(self, box: Box) -> Box:
        """An output-px box in level-0 px (rounded outwards)."""
        return box.scale(1.0 / self.scale)

    def read_level_box(self, box: Box) -> Box:
        """An output-px box in read-level px (rounded outwards); may extend past the level like ``read_box``."""
        return box.scale(1.0 / self.level_scale)

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("tiles", "bands")}
        d["version"] = PLAN_VERSION
        d["tiles"] = [
            [t.index, t.row, t.col, *t.box.to_list(), *t.read_box.to_list(), t.band, t.stripe] for t in self.tiles
        ]
        d["bands"] = [[b.index, b.stripe, *b.box.to_list(), list(b.tiles)] for b in self.bands]
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TilePlan:
        d = json.loads(text)
        if d.pop("version", None) != PLAN_VERSION:
            raise ConfigError("tile plan written by another vimscope version; plan again")
        tiles = [Tile(t[0], t[1], t[2], Box(*t[3:7]), Box(*t[7:11]), t[11], t[12]) for t in d.pop("tiles")]
        bands = [Band(b[0], b[1], Box(*b[2:6]), list(b[6])) for b in d.pop("bands")]
        for key in ("out_shape", "grid_shape", "level0_shape"):
            d[key] = tuple(d[key])
        return cls(tiles=tiles, bands=bands, **d)


def _axis_cover(n_tiles: int, core: int, mask_len: int, ds_out: float) -> np.ndarray:
    """(n_tiles, mask_len) bool: which mask pixels along one axis overlap each tile's core interval."""
    starts = np.arange(mask_len) * ds_out  # mask pixel j covers output [j*ds_out, (j+1)*ds_out)
    ends = starts + ds_out
    t0 = np.arange(n_tiles)[:, None] * core
    t1 = t0 + core
    return (starts[None, :] < t1) & (ends[None, :] > t0)


def _mask_hits(mask, scale: float, rows: int, cols: int, core: int) -> np.ndarray:
    """(rows, cols) bool: tiles whose core touches a set mask pixel."""
    m = np.asarray(mask.mask, bool)
    ds_out = mask.downsample / scale  # output px per mask px
    a = _axis_cover(rows, core, m.shape[0], ds_out).astype(np.float32)
    b = _axis_cover(cols, core, m.shape[1], ds_out).astype(np.float32)
    return (a @ m.astype(np.float32) @ b.T) > 0


def _region_hits(region, scale: float, rows: int, cols: int, core: int, level0_shape) -> np.ndarray:
    """(rows, cols) bool: tiles whose core overlaps the region (level-0 Boxes or a shapely geometry)."""
    h0, w0 = level0_shape
    x0 = np.arange(cols) * core * scale
    y0 = np.arange(rows) * core * scale
    x1, y1 = np.minimum(x0 + core * scale, w0), np.minimum(y0 + core * scale, h0)
    if isinstance(region, Box) or (isinstance(region, list | tuple) and region and isinstance(region[0], Box)):
        boxes = [region] if isinstance(region, Box) else list(region)
        hits = np.zeros((rows, cols), bool)
        for b in boxes:
            if b.w <= 0 or b.h <= 0 or b.x >= w0 or b.y >= h0 or b.x1 <= 0 or b.y1 <= 0:
                raise RegionError(f"region {b.to_list()} (x, y, width, height) lies outside the image ({w0} x {h0} px)")
            hits |= ((y0 < b.y1) & (y1 > b.y))[:, None] & ((x0 < b.x1) & (x1 > b.x))[None, :]
        return hits
    import shapely

    geom = region
    minx, miny, maxx, maxy = geom.bounds
    if geom.is_empty or maxx <= 0 or maxy <= 0 or minx >= w0 or miny >= h0:
        raise RegionError(f"region with bounds {tuple(round(v, 1) for v in geom.bounds)} lies outside the image")
    gx0, gy0 = np.meshgrid(x0, y0)
    gx1, gy1 = np.meshgrid(x1, y1)
    cells = shapely.box(gx0.ravel(), gy0.ravel(), gx1.ravel(), gy1.ravel())
    # the region's parts indexed once (a region of 100,000 annotations): a cell is hit where its interior meets
    # a part's (intersects, not only touches)
    parts = shapely.get_parts(geom)
    cell_of, part_of = shapely.STRtree(parts).query(cells, predicate="intersects")
    inner = ~shapely.touches(parts[part_of], cells[cell_of])
    hits = np.zeros(len(cells), bool)
    hits[cell_of[inner]] = True
    return hits.reshape(rows, cols)


def _scale(meta, target_mpp: float | None) -> float:
    """Level-0 px per output px at ``target_mpp`` (1 without one)."""
    if target_mpp is None:
        return 1.0
    if target_mpp <= 0:
        raise ConfigError(f"--target-mpp must be positive, got {target_mpp}")
    if meta.mpp is None:
        raise MissingPixelSizeError(
            f"{meta.path}: processing at {target_mpp} µm/px needs the image's pixel size, which the file does "
            "not give; pass --mpp"
        )
    return target_mpp / meta.mpp


def _stripe_major(keep: np.ndarray, tile: int, halo: int, out_shape, stripe_width: int, band_height: int | None):
    """The kept tiles in stripe-major order (vertical stripes, row bands inside each), and the bands."""
    core = tile - 2 * halo
    out_h, out_w = out_shape
    rows, cols = keep.shape
    stripe_cols = max(1, stripe_width // core)
    band_rows = max(1, (band_height or core) // core)
    tiles: list[Tile] = []
    bands: list[Band] = []
    for stripe, c0 in enumerate(range(0, cols, stripe_cols)):
        c1 = min(cols, c0 + stripe_cols)
        for r0 in range(0, rows, band_rows):
            r1 = min(rows, r0 + band_rows)
            band_index = len(bands)
            members = []
            for r in range(r0, r1):
                for c in range(c0, c1):
                    if not keep[r, c]:
                        continue
                    x, y = c * core, r * core
                    box = Box(x, y, min(core, out_w - x), min(core, out_h - y))
                    read_box = Box(x - halo, y - halo, tile, tile)
                    members.append(len(tiles))
                    tiles.append(Tile(len(tiles), r, c, box, read_box, band_index, stripe))
            bx, by = c0 * core, r0 * core
            band_box = Box(bx, by, min(c1 * core, out_w) - bx, min(r1 * core, out_h) - by)
            bands.append(Band(band_index, stripe, band_box, members))
    return tiles, bands


def plan_tiles(
    meta,
    *,
    target_mpp: float | None,
    tile: int,
    halo: int,
    mask=None,
    region=None,
    stripe_width: int = 16384,
    band_height: int | None = None,
    level_downsamples: list[float] | None = None,
) -> TilePlan:
    """Plan the tiles of an image (``SlideMeta``) at ``target_mpp`` (None: level 0, no resampling).

    ``mask`` (a TissueMask) and ``region`` (level-0 Boxes or a shapely geometry in level-0 px) keep only the tiles
    whose core touches them. ``band_height`` (output px) groups tile rows into bands (default: one row per band).
    """
    if tile <= 0 or halo < 0 or tile - 2 * halo <= 0:
        raise ConfigError(f"tile {tile} with halo {halo} leaves no core (need tile > 2 * halo)")
    if stripe_width <= 0 or (band_height is not None and band_height <= 0):
        raise ConfigError("stripe_width and band_height must be positive")
    core = tile - 2 * halo
    w0, h0 = meta.level_dimensions[0]
    scale = _scale(meta, target_mpp)
    downsamples = level_downsamples or meta.level_downsamples
    read_level = 0
    for i, d in enumerate(downsamples):
        if d <= max(scale, 1.0) * 1.001:
            read_level = i
    level_scale = scale / downsamples[read_level]
    out_w, out_h = max(1, math.ceil(w0 / scale - 1e-9)), max(1, math.ceil(h0 / scale - 1e-9))
    rows, cols = math.ceil(out_h / core), math.ceil(out_w / core)

    keep = np.ones((rows, cols), bool)
    if mask is not None:
        keep &= _mask_hits(mask, scale, rows, cols, core)
    if region is not None:
        keep &= _region_hits(region, scale, rows, cols, core, (h0, w0))
    tiles, bands = _stripe_major(keep, tile, halo, (out_h, out_w), stripe_width, band_height)
    return TilePlan(
        read_level=read_level,
        scale=float(scale),
        level_scale=float(level_scale),
        out_shape=(out_h, out_w),
        tile=tile,
        halo=halo,
        core=core,
        tiles=tiles,
        bands=bands,
        grid_shape=(rows, cols),
        target_mpp=target_mpp,
        mpp=meta.mpp,
        level0_shape=(h0, w0),
        stripe_width=stripe_width,
        band_height=band_height,
    )
