"""A label map on its own as NGFF 0.4 labels: ``<store>/labels/<name>``, a 2x mode pyramid, colours and names.

For label maps made outside a run (a napari labels layer, an annotation rasterised elsewhere): the store has no
image, so readers show the labels over whatever image they sit on, placed by ``scale`` and ``origin``. Level 0
is read from ``data`` (numpy, dask or zarr) a band of rows at a time, so memory stays bounded however large the
map; the store is written under ``<path>.partial`` and renamed when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vimscope.types import Box
from vimscope.writers.atomic import commit_path, output_errors, partial_path, remove_tree
from vimscope.writers.omezarr import ngff
from vimscope.writers.omezarr.codecs import label_codec
from vimscope.writers.pyramid import build_region, default_levels, downsample_mode, level_shapes

CHUNK = 512
BAND_BYTES = 64 << 20  # level-0 rows read from ``data`` at a time
MAX_CLASSES = 256  # more distinct values: an instance map, written without per-value colours

Classes = Sequence[dict] | Callable[[list[int]], Sequence[dict]] | None


def label_dtype(dtype) -> np.dtype:
    """The unsigned type a label map is stored in: uint8 for booleans and bytes, else uint16 or uint32."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or dtype.itemsize == 1:
        return np.dtype("uint8")
    return np.dtype("uint16" if dtype.itemsize == 2 else "uint32")


def write_labels(
    path: str | os.PathLike,
    data,
    *,
    name: str = "labels",
    scale: float | Sequence[float] = 1.0,
    origin: Sequence[float] = (0.0, 0.0),
    unit: str | None = None,
    classes: Classes = None,
    metadata: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write the 2-D label map ``data`` as ``labels/<name>`` of a new store at ``path``; returns the final path.

    ``scale``: (y, x) size of a pixel in ``unit`` (an NGFF space unit such as ``"micrometer"``, else left out);
    ``origin``: where the centre of pixel (0, 0) sits. ``classes``: ``{"value", "name", "color"}`` per label value
    (colours 0-255 RGB), or a function of the sorted values found in the map (0 included) that makes them, or None;
    a map of more than ``MAX_CLASSES`` values gets none. ``metadata`` goes to the root's ``vimscope`` attributes.
    """
    import zarr

    final = Path(path)
    partial = partial_path(final)
    if data.ndim != 2:
        raise ValueError(f"a label map is 2-D, not of shape {tuple(data.shape)}")
    shape = (int(data.shape[0]), int(data.shape[1]))
    dtype = label_dtype(data.dtype)
    shapes = level_shapes(shape, default_levels(shape, CHUNK))
    with output_errors(final, partial):
        if partial.exists():
            remove_tree(partial)
        root = zarr.open_group(str(partial), mode="w", zarr_format=2)
        arrays = [
            root.create_array(
                f"labels/{name}/{level}",
                shape=s,
                chunks=(CHUNK, CHUNK),
                dtype=dtype,
                compressors=label_codec(),
                fill_value=0,
                chunk_key_encoding={"name": "v2", "separator": "/"},
            )
            for level, s in enumerate(shapes)
        ]
        values = _copy_level0(data, arrays[0], dtype)

        def read(level, b: Box):
            return arrays[level][b.y : b.y1, b.x : b.x1]

        def write(level, b: Box, block):
            arrays[level][b.y : b.y1, b.x : b.x1] = block

        build_region(read, write, downsample_mode, shapes, CHUNK, None, bytes_per_px=4)
        found = sorted(values | {0}) if values is not None else None
        table = [] if found is None else list(classes(found) if callable(classes) else classes or [])
        ms = ngff.multiscales(name, len(shapes), scale, channel=False, unit=unit, origin=origin, downscale="mode")
        label = ngff.image_label(_dense(table), source=None) if table else {"version": ngff.NGFF_VERSION}
        attrs = {"multiscales": ms, "image-label": label}
        zarr.open_group(store=root.store, path=f"labels/{name}", mode="a", zarr_format=2).attrs.update(attrs)
        zarr.open_group(store=root.store, path="labels", mode="a", zarr_format=2).attrs.update({"labels": [name]})
        root.attrs.update({"vimscope": {"complete": True, "classes": table, "metadata": dict(metadata or {})}})
    commit_path(partial, final, overwrite=overwrite)
    return final


def _copy_level0(data, array, dtype: np.dtype) -> set[int] | None:
    """Copy ``data`` into level 0 in bands of chunk rows; the distinct values seen (None past ``MAX_CLASSES``)."""
    h, w = array.shape
    rows = CHUNK * max(1, BAND_BYTES // max(1, w * CHUNK * 4))
    values: set[int] | None = set()
    for y in range(0, h, rows):
        block = np.asarray(data[y : y + rows]).astype(dtype, copy=False)
        array[y : y + block.shape[0]] = block
        if values is not None:
            values.update(np.unique(block).tolist())
            if len(values) > MAX_CLASSES:
                values = None
    return values


def _dense(classes: Sequence[dict]) -> list[dict]:
    """One entry per value 0..max (``image-label`` numbers classes by their index); unnamed values are black."""
    by_value = {int(c["value"]): c for c in classes}
    top = max(by_value) if by_value else 0
    return [by_value.get(v, {"name": str(v), "color": [0, 0, 0]}) for v in range(top + 1)]
