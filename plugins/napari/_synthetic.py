"""A small H&E-like slide made locally (no network): pink tissue islands with purple nuclei on white glass.

Written as a tiled, pyramidal OME-TIFF with a pixel size, so it exercises the same lazy path as a real slide
and the widget can segment it. Deterministic for a given seed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SYNTHETIC_NAME = "vimscope-synthetic-slide.ome.tif"


def synthetic_rgb(height: int = 1536, width: int = 2048, seed: int = 0, tissue_scale: int = 48) -> np.ndarray:
    """An (height, width, 3) uint8 image: glass, eosin-pink tissue, haematoxylin-purple nuclei.

    ``tissue_scale``: pixels per cell of the smoothed noise that shapes the tissue (islands are ~6 cells wide).
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cells = (height // tissue_scale + 2, width // tissue_scale + 2)
    coarse = ndimage.gaussian_filter(rng.standard_normal(cells), 1.5)
    tissue = ndimage.zoom(coarse, tissue_scale, order=1)[:height, :width] > 0.0
    texture = ndimage.gaussian_filter(rng.standard_normal((height, width)), 2)

    img = np.empty((height, width, 3), np.float32)
    img[:] = (242, 240, 245)
    pink = np.array([226, 150, 190], np.float32) + 40 * texture[..., None]
    img[tissue] = pink[tissue]

    nuclei = np.zeros((height, width), bool)
    yy, xx = np.mgrid[-8:9, -8:9]
    n = height * width // 500
    rows = rng.integers(8, height - 8, n)
    cols = rng.integers(8, width - 8, n)
    for r, c in zip(rows, cols):
        if not tissue[r, c]:
            continue
        a, b = rng.uniform(3, 7), rng.uniform(3, 7)
        t = rng.uniform(0, np.pi)
        u = xx * np.cos(t) + yy * np.sin(t)
        v = -xx * np.sin(t) + yy * np.cos(t)
        nuclei[r - 8 : r + 9, c - 8 : c + 9] |= (u / a) ** 2 + (v / b) ** 2 <= 1
    img[nuclei] = (90, 50, 135) + 25 * texture[nuclei][:, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_slide(
    path: str | Path,
    *,
    height: int = 1536,
    width: int = 2048,
    mpp: float = 0.5,
    seed: int = 0,
    tissue_scale: int = 48,
) -> Path:
    """Write the synthetic slide as a pyramidal OME-TIFF (256 px tiles, zlib, levels down to ~256 px)."""
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = [synthetic_rgb(height, width, seed, tissue_scale)]
    while max(levels[-1].shape[:2]) > 512:
        prev = levels[-1]
        h, w = prev.shape[0] // 2 * 2, prev.shape[1] // 2 * 2
        levels.append(prev[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8))
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    options = dict(tile=(256, 256), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(tmp, ome=True) as tif:
        tif.write(
            levels[0],
            subifds=len(levels) - 1,
            resolution=(1e4 / mpp, 1e4 / mpp),
            resolutionunit="CENTIMETER",
            metadata={
                "axes": "YXS",
                "Name": "vimscope synthetic slide",
                "PhysicalSizeX": mpp,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": mpp,
                "PhysicalSizeYUnit": "µm",
            },
            **options,
        )
        for k, level in enumerate(levels[1:], start=1):
            scale = mpp * 2**k
            tif.write(
                level,
                subfiletype=1,
                resolution=(1e4 / scale, 1e4 / scale),
                resolutionunit="CENTIMETER",
                **options,
            )
    os.replace(tmp, path)
    return path


def synthetic_slide_path() -> Path:
    """The synthetic slide in vimscope's cache (made on first use), or in the temp folder if that is read-only."""
    from vimscope.demo import cache_dir

    for folder in (cache_dir(), Path(tempfile.gettempdir()) / "vimscope"):
        path = folder / SYNTHETIC_NAME
        if path.is_file():
            return path
        try:
            return write_synthetic_slide(path)
        except OSError:
            continue
    raise OSError("cannot write the synthetic slide to the vimscope cache or the temp folder")
