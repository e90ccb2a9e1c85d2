"""Generated slides for the pipeline tests: tiled TIFFs written tile by tile, cached once in the pytest cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def texture(y0: int, x0: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Deterministic RGB content of any window of an endless image: smooth waves plus fine detail.

    Enough variation that a random model gives several classes, cheap enough for gigapixel-sized files.
    """
    y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
    x = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
    r = 128 + 90 * np.sin(x / (37.0 + seed)) * np.cos(y / 53.0)
    g = 128 + 90 * np.sin((x + y) / 71.0 + seed)
    b = 128 + 60 * np.cos(x / 13.0) + 30 * np.sin(y / 7.0)
    return np.clip(np.stack(np.broadcast_arrays(r, g, b), axis=-1), 0, 255).astype(np.uint8)


def write_tiff(
    path: Path,
    height: int,
    width: int,
    *,
    tile: int = 256,
    mpp: float | None = 0.5,
    seed: int = 0,
    compression: str = "zlib",
    flat: bool = False,
) -> Path:
    """A tiled (deflate) RGB TIFF; ``flat`` repeats one tile (fast to make and read, for size tests)."""
    import tifffile

    def tiles():
        base = texture(0, 0, tile, tile, seed) if flat else None
        for ty in range(0, height, tile):
            for tx in range(0, width, tile):
                yield base if flat else texture(ty, tx, tile, tile, seed)

    kw = {}
    if mpp:
        kw = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    part = path.with_name(path.name + ".part")
    tifffile.imwrite(
        part,
        tiles(),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression=compression,
        compressionargs={"level": 1} if compression == "zlib" else None,
        bigtiff=height * width * 3 > 2**31,
        maxworkers=2,
        **kw,
    )
    part.rename(path)
    return path


@pytest.fixture(scope="session")
def slide_cache(request) -> Path:
    return Path(request.config.cache.mkdir("vimscope-pipeline-slides"))


def cached_slide(cache: Path, name: str, height: int, width: int, **kw) -> Path:
    """A generated slide, made once and then reused from the pytest cache."""
    path = cache / f"{name}-{height}x{width}.tif"
    if not path.exists():
        write_tiff(path, height, width, **kw)
    return path


@pytest.fixture(scope="session")
def small_slide(slide_cache) -> Path:
    """700 x 900 px, textured: seams, resume, cancel, regions."""
    return cached_slide(slide_cache, "small", 700, 900, tile=128)


@pytest.fixture(scope="session")
def mini_slide(slide_cache) -> Path:
    """384 x 480 px, textured: tests that run several configurations."""
    return cached_slide(slide_cache, "mini", 384, 480, tile=128, seed=1)
