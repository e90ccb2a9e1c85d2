"""Images the IO tests write: a big mostly-glass pyramidal TIFF and a small pyramidal OME-TIFF (both made by
``vimscope.synthetic``, the one slide maker), and OME-Zarr stores (NGFF 0.4 / Zarr v2 and NGFF 0.5 / Zarr v3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vimscope.synthetic import jpeg_pyramid, write_ome_tiff


def tissue_box(size: int) -> tuple[int, int, int, int]:
    """Level-0 (x0, y0, x1, y1) of the tissue block of a ``big_pyramid`` of side ``size``."""
    return (int(size * 0.30), int(size * 0.40), int(size * 0.45), int(size * 0.52))


def big_pyramid(path: Path, size: int = 50_000) -> Path:
    """A size x size JPEG-tiled pyramidal BigTIFF (1024 px tiles), glass except the ``tissue_box`` block."""
    return jpeg_pyramid(path, size, tile=1024, tissue_box=tissue_box(size))


def ome_pyramid(path: Path, image: np.ndarray, levels: int = 3, mpp: float = 0.5, tile: int = 64) -> Path:
    """A pyramidal OME-TIFF (SubIFDs) of an (h, w, 3) uint8 image, levels made by 2x2 averaging."""
    return write_ome_tiff(path, image, mpp=mpp, tile=tile, levels=levels)


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
