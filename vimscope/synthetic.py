"""H&E-like slides made locally (no network), for the napari sample, the tests and the benchmarks: one maker.

``synthetic_rgb`` draws the pixels (eosin-pink tissue, haematoxylin-purple nuclei, white glass); two writers put
them in the two kinds of file a scanner or a pipeline would give:

- ``write_synthetic_slide``: a small tiled, pyramidal OME-TIFF (zlib) of one drawn image, with a pixel size
  (``write_ome_tiff`` writes any image so);
- ``jpeg_pyramid``: a big JPEG-tiled pyramidal BigTIFF (SubIFD levels) whose tiles are a few drawn textures encoded
  once and written as bytes, so a 50k x 50k slide takes seconds and no level is ever held in memory; tissue
  everywhere or only inside a box, glass elsewhere.

Deterministic for a given seed. Lives in the package (not in ``benchmarks/``) because the napari sample ships.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

GLASS = (242, 240, 245)


def synthetic_rgb(height: int = 1536, width: int = 2048, seed: int = 0, tissue_scale: int = 48) -> np.ndarray:
    """An (height, width, 3) uint8 image: glass, eosin-pink tissue, haematoxylin-purple nuclei.

    ``tissue_scale``: pixels per cell of the smoothed noise that shapes the tissue (islands are ~6 cells wide);
    0 covers the whole image with tissue (benchmark tiles).
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    if tissue_scale:
        cells = (height // tissue_scale + 2, width // tissue_scale + 2)
        coarse = ndimage.gaussian_filter(rng.standard_normal(cells), 1.5)
        tissue = ndimage.zoom(coarse, tissue_scale, order=1)[:height, :width] > 0.0
    else:
        tissue = np.ones((height, width), bool)
    texture = ndimage.gaussian_filter(rng.standard_normal((height, width)), 2)

    img = np.empty((height, width, 3), np.float32)
    img[:] = GLASS
    pink = np.array([226, 150, 190], np.float32) + 40 * texture[..., None]
    img[tissue] = pink[tissue]

    nuclei = np.zeros((height, width), bool)
    yy, xx = np.mgrid[-8:9, -8:9]
    n = height * width // 500
    rows = rng.integers(8, max(height - 8, 9), n)
    cols = rng.integers(8, max(width - 8, 9), n)
    for r, c in zip(rows, cols):
        if r + 9 > height or c + 9 > width or not tissue[r, c]:
            continue
        a, b = rng.uniform(3, 7), rng.uniform(3, 7)
        t = rng.uniform(0, np.pi)
        u = xx * np.cos(t) + yy * np.sin(t)
        v = -xx * np.sin(t) + yy * np.cos(t)
        nuclei[r - 8 : r + 9, c - 8 : c + 9] |= (u / a) ** 2 + (v / b) ** 2 <= 1
    img[nuclei] = (90, 50, 135) + 25 * texture[nuclei][:, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_ome_tiff(
    path: str | Path, image: np.ndarray, *, mpp: float, tile: int = 256, levels: int | None = None, name: str = ""
) -> Path:
    """An (h, w, 3) uint8 image as a tiled pyramidal OME-TIFF (zlib, SubIFD levels by 2x2 averaging), the pixel
    size in the OME metadata and the resolution tags; ``levels`` in all (None: halved down to about 512 px).
    Written under a temporary name, renamed when complete."""
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pyramid = [image]
    while (len(pyramid) < levels) if levels else max(pyramid[-1].shape[:2]) > 512:
        prev = pyramid[-1]
        h, w = prev.shape[0] // 2 * 2, prev.shape[1] // 2 * 2
        pyramid.append(prev[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8))
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    options = dict(tile=(tile, tile), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
    metadata = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": mpp,
                "PhysicalSizeYUnit": "µm", "Channel": {"Name": ["R", "G", "B"]}}  # fmt: skip
    if name:
        metadata["Name"] = name
    with tifffile.TiffWriter(tmp, ome=True) as tif:
        tif.write(pyramid[0], subifds=len(pyramid) - 1, resolution=(1e4 / mpp, 1e4 / mpp), metadata=metadata, **options)
        for k, level in enumerate(pyramid[1:], start=1):
            scale = mpp * 2**k
            tif.write(level, subfiletype=1, resolution=(1e4 / scale, 1e4 / scale), **options)
    os.replace(tmp, path)
    return path


def write_synthetic_slide(
    path: str | Path,
    *,
    height: int = 1536,
    width: int = 2048,
    mpp: float = 0.5,
    seed: int = 0,
    tissue_scale: int = 48,
) -> Path:
    """``synthetic_rgb`` as a pyramidal OME-TIFF (256 px tiles, zlib, levels down to ~256 px): the napari sample."""
    image = synthetic_rgb(height, width, seed, tissue_scale)
    return write_ome_tiff(path, image, mpp=mpp, name="vimscope synthetic slide")


def encode_jpeg_tile(tile: np.ndarray, quality: int = 90) -> bytes:
    """The JPEG stream tifffile itself writes for one tile (YCbCr 4:2:0), to write pre-encoded tiles fast."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(
        buf, tile, tile=tile.shape[:2], compression="jpeg", compressionargs={"level": quality}, photometric="rgb"
    )
    with tifffile.TiffFile(io.BytesIO(buf.getvalue())) as tif:
        page = tif.pages[0]
        start, count = page.dataoffsets[0], page.databytecounts[0]
    return buf.getvalue()[start : start + count]


def jpeg_pyramid(
    path: str | Path,
    size: int,
    *,
    tile: int = 512,
    mpp: float = 0.25,
    seed: int = 0,
    tissue_box: tuple[int, int, int, int] | None = None,
    textures: int = 8,
) -> Path:
    """A ``size`` x ``size`` RGB pyramidal BigTIFF (JPEG tiles, levels halved down to about ``2 * tile``).

    ``tissue_box``: level-0 (x0, y0, x1, y1) of the only tissue (glass elsewhere, cut tiles at its edges); None
    fills the slide with tissue. Each tile is one of ``textures`` drawn textures, picked by a seeded generator.
    Written under a temporary name, renamed when complete.
    """
    drawn = [synthetic_rgb(tile, tile, seed * 1009 + k, tissue_scale=0) for k in range(textures)]
    pink = [encode_jpeg_tile(t) for t in drawn]
    glass = encode_jpeg_tile(np.full((tile, tile, 3), GLASS, np.uint8))
    x0, y0, x1, y1 = tissue_box or (0, 0, size, size)
    sizes = [s for s, _ in pyramid_shapes(size, size, tile)]
    rng = np.random.default_rng(seed)
    cut: dict[tuple, bytes] = {}

    def tiles(level_size: int, factor: int):
        """Tiles of one level, row-major: glass, tissue, or (at the box's edges) glass with tissue in a rectangle."""
        n = math.ceil(level_size / tile)
        for ty in range(n):
            for tx in range(n):
                k = int(rng.integers(textures))
                lx, ly = tx * tile, ty * tile
                ix0, iy0 = max(lx, x0 / factor), max(ly, y0 / factor)
                ix1, iy1 = min(lx + tile, x1 / factor), min(ly + tile, y1 / factor)
                if ix1 <= ix0 or iy1 <= iy0:
                    yield glass
                elif (ix0, iy0, ix1, iy1) == (lx, ly, lx + tile, ly + tile):
                    yield pink[k]
                else:
                    rect = (round(ix0 - lx), round(iy0 - ly), round(ix1 - lx), round(iy1 - ly), k)
                    if rect not in cut:
                        img = np.full((tile, tile, 3), GLASS, np.uint8)
                        img[rect[1] : rect[3], rect[0] : rect[2]] = drawn[k][rect[1] : rect[3], rect[0] : rect[2]]
                        cut[rect] = encode_jpeg_tile(img)
                    yield cut[rect]

    return write_jpeg_levels(path, [(s, s) for s in sizes], lambda k, shape: tiles(shape[0], 2**k), tile=tile, mpp=mpp)


def pyramid_shapes(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """(height, width) of each level: halved (rounded up) while the longer side exceeds ``2 * tile``."""
    shapes = [(height, width)]
    while max(shapes[-1]) > 2 * tile:
        shapes.append((math.ceil(shapes[-1][0] / 2), math.ceil(shapes[-1][1] / 2)))
    return shapes


def write_jpeg_levels(path: str | Path, shapes: list[tuple[int, int]], tiles, *, tile: int, mpp: float) -> Path:
    """A pyramidal RGB BigTIFF of pre-encoded JPEG tiles (YCbCr 4:2:0, as ``encode_jpeg_tile`` makes them): level
    k of ``shapes`` (its (height, width)) from ``tiles(k, shape)``, an iterator of tile bytes in row-major order;
    levels 1.. as SubIFDs of level 0, each with its pixel size. Written under a temporary name, renamed when
    complete; no level is ever held in memory."""
    import tifffile

    path = Path(path)
    options = dict(dtype=np.uint8, tile=(tile, tile), compression="jpeg", photometric="ycbcr", subsampling=(2, 2))
    tmp = path.with_name(path.name + ".partial")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for k, shape in enumerate(shapes):
            scale = mpp * 2**k
            extra = {"subifds": len(shapes) - 1} if k == 0 else {"subfiletype": 1}
            tw.write(
                tiles(k, shape),
                shape=(*shape, 3),
                resolution=(1e4 / scale, 1e4 / scale),
                resolutionunit="CENTIMETER",
                metadata=None,
                **extra,
                **options,
            )
    tmp.replace(path)
    return path
