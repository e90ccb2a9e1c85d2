"""A pyramidal OME-TIFF of a class map (or instance labels) for viewers that do not read OME-Zarr.

Written tile by tile with tifffile from any sliceable levels (the zarr pyramid of ``OmeZarrWriter``): reduced
levels go into SubIFDs as the OME-TIFF pyramid convention asks, so memory holds one tile row at a time. uint8
class maps carry a palette (class colours), which Bio-Formats, QuPath and Fiji display.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vimscope.writers.atomic import commit_path, output_errors, partial_path, remove_tree


def iter_tiles(level, tile: int) -> Iterator[np.ndarray]:
    """Tiles of a (h, w) or (h, w, c) sliceable array, row-major, one tile row read at a time."""
    h, w = level.shape[:2]
    for y in range(0, h, tile):
        row = np.asarray(level[y : y + tile])
        for x in range(0, w, tile):
            yield row[:, x : x + tile]


def palette(classes: Sequence) -> np.ndarray:
    """A TIFF colormap (3, 256) uint16 with each class's colour at its value."""
    cmap = np.zeros((3, 256), np.uint16)
    for value, cls in enumerate(classes[:256]):
        color = cls["color"] if isinstance(cls, dict) else cls.color
        cmap[:, value] = np.asarray(color, np.uint16) * 257
    return cmap


def _needs_bigtiff(levels) -> bool:
    total = sum(int(np.prod(lv.shape)) * np.dtype(lv.dtype).itemsize for lv in levels)
    return total > 2**31


def write_ome_tiff(
    path: str | os.PathLike,
    levels: Sequence,
    *,
    pixel_size_um: float | None = None,
    classes: Sequence | None = None,
    name: str = "classes",
    tile: int = 512,
    compression: str = "zlib",
    overwrite: bool = False,
) -> Path:
    """Write ``levels`` (level 0 first, each half the previous) as one pyramidal OME-TIFF; returns the path."""
    import tifffile

    final = Path(path)
    partial = partial_path(final)
    base = levels[0]
    dtype = np.dtype(base.dtype)
    kwargs = {"tile": (tile, tile), "compression": compression, "dtype": dtype}
    if classes is not None and dtype == np.uint8:
        kwargs.update(photometric="palette", colormap=palette(classes))
    else:
        kwargs.update(photometric="minisblack")
    metadata = {"axes": "YX", "Name": name, "Channel": {"Name": [name]}}
    resolution = None
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeXUnit="µm")
        metadata.update(PhysicalSizeY=pixel_size_um, PhysicalSizeYUnit="µm")
        resolution = (1e4 / pixel_size_um, 1e4 / pixel_size_um)  # pixels per cm
    try:
        with output_errors(final, None):
            with tifffile.TiffWriter(partial, bigtiff=_needs_bigtiff(levels), ome=True) as tw:
                tw.write(
                    iter_tiles(base, tile),
                    shape=base.shape,
                    subifds=len(levels) - 1,
                    metadata=metadata,
                    resolution=resolution,
                    resolutionunit="CENTIMETER" if resolution else None,
                    **kwargs,
                )
                for i, level in enumerate(levels[1:], start=1):
                    res = (resolution[0] / 2**i, resolution[1] / 2**i) if resolution else None
                    tw.write(
                        iter_tiles(level, tile),
                        shape=level.shape,
                        subfiletype=1,
                        resolution=res,
                        resolutionunit="CENTIMETER" if res else None,
                        **kwargs,
                    )
            commit_path(partial, final, overwrite=overwrite)
    except BaseException:
        remove_tree(partial)
        raise
    return final
