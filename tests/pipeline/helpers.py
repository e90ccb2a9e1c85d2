"""Whole-image references and store readers shared by the pipeline tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from vimscope.types import Box


def whole_image_outputs(slide: Path, model, *, scale: float = 1.0, with_probabilities: bool = True) -> dict:
    """The model run once on the whole image (no tiles): the ground truth for seam tests.

    The input is read with the loader's own resampler over the whole output grid, normalised as batches are,
    and quantised with the stitcher's formulas.
    """
    from vimscope.io import open_slide
    from vimscope.stitch.device import fixed_point_probabilities, placed_segmentation
    from vimscope.tiling.loader import TileBatch, read_resampled

    reader = open_slide(slide)
    w0, h0 = reader.meta.dimensions
    out_w, out_h = int(np.ceil(w0 / scale)), int(np.ceil(h0 / scale))
    pixels = read_resampled(reader, 0, scale, Box(0, 0, out_w, out_h), (w0, h0))
    batch = TileBatch(tiles=[0], pixels=torch.from_numpy(pixels[None].copy()), windows=[Box(0, 0, out_w, out_h)])
    x = batch.to_device("cpu", model.spec.mean, model.spec.std)
    with torch.inference_mode():
        logits = model(x)["logits"]
    n = logits.shape[1]
    v = placed_segmentation(fixed_point_probabilities(logits), with_probabilities, n)[0].numpy()  # (h, w, 1 + K)
    out = {"classes": v[..., 0], "image": pixels}
    if with_probabilities:
        out["probabilities"] = np.moveaxis(v[..., 1:], -1, 0)
    reader.close()
    return out


def read_store(store: Path) -> dict:
    """Level 0 of every output array in an OME-Zarr written by the pipeline."""
    import zarr

    root = zarr.open_group(str(store), mode="r")
    out = {}
    for key, path in (
        ("classes", "labels/classes/0"),
        ("classes", "classes/0"),
        ("probabilities", "probabilities/0"),
        ("features", "features/0"),
        ("nuclei", "labels/nuclei/0"),
        ("nuclei", "nuclei/0"),
        ("image", "0"),
    ):
        try:
            arr = root[path]
        except KeyError:
            continue
        out.setdefault(key, np.asarray(arr[...]))
    return out


def store_digest(store: Path, skip=(".vimscope_resume.json",)) -> dict[str, str]:
    """sha256 of every file of a store (path relative to it)."""
    out = {}
    for p in sorted(Path(store).rglob("*")):
        if p.is_file() and p.name not in skip:
            out[str(p.relative_to(store))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
