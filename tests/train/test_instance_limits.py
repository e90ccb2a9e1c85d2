"""Evaluation and training validation label instances as ``vimscope segment`` does: the model's limits in µm²
apply at the maps' pixel size (the model's), not only the limits in pixels."""

from __future__ import annotations

import numpy as np

from vimscope.train.infer import maps_to_labels
from vimscope.train.tune import tune_postprocess

POST = {"min_area": 4, "max_area_um2": 100.0, "min_marker_area": 1}  # 100 µm² = 1,600 px at 0.25 µm/px


def two_blobs() -> dict:
    """A background/nucleus probability pair with a 20 x 20 px blob (400 px) and a 50 x 50 px one (2,500 px)."""
    nucleus = np.zeros((80, 140), np.float32)
    nucleus[10:30, 10:30] = 1.0
    nucleus[10:60, 60:110] = 1.0
    return {"probabilities": np.stack([1.0 - nucleus, nucleus])}


def test_max_area_in_um2_applies_at_the_model_pixel_size():
    maps = two_blobs()
    without = maps_to_labels(maps, POST, True)["instances"]
    with_mpp = maps_to_labels(maps, POST, True, mpp=0.25)["instances"]
    assert len(np.unique(without)) - 1 == 2
    kept = np.unique(with_mpp[with_mpp > 0])
    assert len(kept) == 1 and (with_mpp > 0).sum() == 400  # the 2,500 px blob is 156 µm²: over the limit


def test_threshold_tuning_scores_what_segment_would_keep():
    maps = two_blobs()
    truth = np.zeros((80, 140), np.int32)
    truth[10:30, 10:30] = 1  # only the small one is a nucleus
    entry = {"nucleus": maps["probabilities"][1]}
    grid = {"nucleus_threshold": [0.5]}
    assert tune_postprocess([entry], [truth], base=POST, grid=grid, mpp=0.25)["aji"] == 1.0
    assert tune_postprocess([entry], [truth], base=POST, grid=grid)["aji"] < 0.2
