"""Images the tests write: a big mostly-blank pyramidal TIFF (pre-encoded JPEG tiles, so writing 50k x 50k takes
seconds), a small pyramidal OME-TIFF and OME-Zarr stores (NGFF 0.4 / Zarr v2 and NGFF 0.5 / Zarr v3).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import tifffile

WHITE = 250


def encode_jpeg_tile(tile: np.ndarray) -> bytes:
    """The JPEG stream tifffile itself writes for one tile (YCbCr 4:2:0), to write pre-encoded tiles fast."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, tile, tile=tile.shape[:2], compression="jpeg", photometric="rgb")
    with tifffile.TiffFile(io.BytesIO(buf.getvalue())) as tif:
        page = tif.pages[0]
        start, count = page.dataoffsets[0], page.databytecounts[0]
    return buf.getvalue()[start : start + count]


def tissue_tile(tile: int, seed: int) -> np.ndarray:
    """A pink, textured H&E-like tile."""
    rng = np.random.default_rng(seed)
    base = np.array([200, 120, 170], np.float32)
    noise = rng.normal(0, 18, (tile // 16, tile // 16, 3)).repeat(16, 0).repeat(16, 1)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def tissue_box(size: int) -> tuple[int, int, int, int]:
    """Level-0 (x0, y0, x1, y1) of the tissue block of a ``big_pyramid`` of side ``size``."""
    return (int(size * 0.30), int(size * 0.40), int(size * 0.45), int(size * 0.52))


def big_pyramid(path: Path, size: int = 50_000, tile: int = 1024, mpp: float = 0.25) -> Path:
    """A size x size RGB pyramidal TIFF (BigTIFF, JPEG tiles, SubIFD levels), blank except one tissue block.

    Tiles are encoded once and written as bytes, tile by tile, so no level is ever held in memory.
    """
    blank = encode_jpeg_tile(np.full((tile, tile, 3), WHITE, np.uint8))
    pink = [encode_jpeg_tile(tissue_tile(tile, seed)) for seed in range(4)]
    x0, y0, x1, y1 = tissue_box(size)
    sizes = [size]
    while sizes[-1] > 2 * tile:
        sizes.append(math.ceil(sizes[-1] / 2))

    partial: dict[tuple, bytes] = {}

    def tiles(level_size: int, factor: int):
        """Tiles of one level: blank, tissue, or (at the tissue's edges) white with tissue in a sub-rectangle."""
        n = math.ceil(level_size / tile)
        bx0, by0 = x0 / factor, y0 / factor
        bx1, by1 = x1 / factor, y1 / factor
        for ty in range(n):
            for tx in range(n):
                lx0, ly0 = tx * tile, ty * tile
                ix0, iy0 = max(lx0, bx0), max(ly0, by0)
                ix1, iy1 = min(lx0 + tile, bx1), min(ly0 + tile, by1)
                if ix1 <= ix0 or iy1 <= iy0:
                    yield blank
                elif ix0 == lx0 and iy0 == ly0 and ix1 == lx0 + tile and iy1 == ly0 + tile:
                    yield pink[(tx + ty) % 4]
                else:
                    rect = (round(ix0 - lx0), round(iy0 - ly0), round(ix1 - lx0), round(iy1 - ly0), (tx + ty) % 4)
                    if rect not in partial:
                        img = np.full((tile, tile, 3), WHITE, np.uint8)
                        img[rect[1] : rect[3], rect[0] : rect[2]] = tissue_tile(tile, rect[4])[
                            rect[1] : rect[3], rect[0] : rect[2]
                        ]
                        partial[rect] = encode_jpeg_tile(img)
                    yield partial[rect]

    options = dict(
        dtype=np.uint8,
        tile=(tile, tile),
        compression="jpeg",
        photometric="ycbcr",
        subsampling=(2, 2),
        metadata=None,
    )
    tmp = path.with_suffix(".partial")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        tw.write(
            tiles(size, 1),
            shape=(size, size, 3),
            subifds=len(sizes) - 1,
            resolution=(1e4 / mpp, 1e4 / mpp),
            resolutionunit="CENTIMETER",
            **options,
        )
        for k, s in enumerate(sizes[1:], 1):
            tw.write(tiles(s, 2**k), shape=(s, s, 3), subfiletype=1, **options)
    tmp.replace(path)
    return path


def ome_pyramid(path: Path, image: np.ndarray, levels: int = 3, mpp: float = 0.5, tile: int = 64) -> Path:
    """A pyramidal OME-TIFF (SubIFDs) of an (h, w, 3) uint8 image, levels made by 2x2 averaging."""
    pyramid = [image]
    for _ in range(levels - 1):
        a = pyramid[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        pyramid.append(a[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8))
    with tifffile.TiffWriter(path, bigtiff=False, ome=True) as tw:
        meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp, "Channel": {"Name": ["R", "G", "B"]}}
        tw.write(
            pyramid[0],
            subifds=levels - 1,
            tile=(tile, tile),
            compression="zlib",
            photometric="rgb",
            metadata=meta,
        )
        for level in pyramid[1:]:
            tw.write(level, tile=(tile, tile), compression="zlib", photometric="rgb", subfiletype=1)
    return path


def ome_zarr(path: Path, image: np.ndarray, *, version: str = "0.4", levels: int = 3, mpp: float = 0.5, chunk=64):
    """An OME-Zarr of a (c, h, w) image: NGFF 0.4 in Zarr v2 or NGFF 0.5 in Zarr v3, written with zarr-python."""
    import zarr

    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(path, mode="w", zarr_format=fmt)
    datasets = []
    data = image
    for k in range(levels):
        if k:
            c, h, w = data.shape
            data = data[:, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
            data = data.astype(image.dtype)
        arr = root.create_array(str(k), shape=data.shape, chunks=(1, chunk, chunk), dtype=data.dtype)
        arr[...] = data
        s = mpp * 2**k
        datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1.0, s, s]}]})
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    multiscales = [{"version": version, "axes": axes, "datasets": datasets, "name": "test"}]
    omero = {"channels": [{"label": f"ch{i}", "window": {"start": 0, "end": 200}} for i in range(image.shape[0])]}
    if fmt == 2:
        root.attrs.update({"multiscales": multiscales, "omero": omero})
    else:
        root.attrs.update({"ome": {"version": version, "multiscales": multiscales, "omero": omero}})
    json.dumps(multiscales)
    return path
