"""Nuclei models: instances labelled on the stitched maps, whole across tile and band seams, exported."""

from __future__ import annotations

import json

import numpy as np
import torch
from scipy import ndimage as ndi

from tests.pipeline.helpers import read_store
from vimscope.config import ClassSpec, ModelSpec
from vimscope.pipeline import PipelineConfig, run


class BlobModel(torch.nn.Module):
    """Per-pixel nucleus logits from the red channel: blobs 20-40 px wide wherever the texture peaks."""

    def __init__(self):
        super().__init__()
        self.spec = ModelSpec(
            name="blobs",
            tile=128,
            halo=16,
            output="nuclei",
            classes=[ClassSpec("background", [0, 0, 0]), ClassSpec("Nucleus", [230, 25, 75])],
            postprocess={"max_size": 96, "min_area": 16},
        )

    def forward(self, x):
        red = x[:, :1] * 0.229 + 0.485  # back to 0-1
        nucleus = 40.0 * (red - 200 / 255)
        return {
            "logits": torch.cat([torch.zeros_like(nucleus), nucleus], dim=1),
            "boundary": torch.full_like(nucleus, -10.0),
            "distance": torch.full_like(nucleus, 1.0),
        }


def test_nuclei_are_whole_across_seams_and_exported(small_slide, tmp_path):
    cfg = PipelineConfig.load(
        device="cpu", tissue=False, chunk=128, band_height=192, outputs=["classes", "geojson", "summary"]
    )
    result = run(small_slide, cfg, out=tmp_path, model=BlobModel())
    got = read_store(result.paths["zarr"])
    labels, classes = got["nuclei"], got["classes"]
    blobs, n_blobs = ndi.label(classes == 1)
    assert n_blobs >= 15
    ids = np.unique(labels[labels > 0])
    assert len(ids) == result.summary["objects"]["Nucleus"]
    # every object is one blob and every big enough blob is one object: nothing split at tile or band seams
    sizes = np.bincount(blobs.ravel())
    big = {b for b in range(1, n_blobs + 1) if sizes[b] >= 16}
    assert len(ids) == len(big)
    for i in ids:
        assert len(np.unique(blobs[labels == i])) == 1
    detections = json.loads(result.paths["nuclei_geojson"].read_text())["features"]
    assert len(detections) == len(ids)
    assert {f["properties"]["objectType"] for f in detections} == {"detection"}
    assert result.paths["objects"].exists()
