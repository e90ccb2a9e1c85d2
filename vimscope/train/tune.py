"""Choosing the instance post-processing thresholds on the validation images (never on training or test images).

The model's maps are predicted once per image; the watershed then runs for every combination of thresholds on a
small grid, and the combination with the best mean per-image AJI goes into the model's IO contract
(``spec.postprocess``), so ``vimscope segment`` uses what validation chose.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vimscope.train.metrics import aji

__all__ = ["GRID", "tune_postprocess"]

# 27 combinations for a model with both maps: one watershed + AJI costs ~0.6 s on a 1000x1000 MoNuSeg image
# (2 cores here), so six validation images take ~100 s of CPU, spread over the host's cores by threads.
GRID = {
    "nucleus_threshold": [0.4, 0.5, 0.6],
    "boundary_threshold": [0.3, 0.5, 0.7],
    "distance_threshold": [0.2, 0.3, 0.4],
}


def tune_postprocess(
    maps_per_image: list[dict[str, np.ndarray]],
    gt_instances: list[np.ndarray],
    base: dict | None = None,
    grid: dict[str, list[float]] | None = None,
    mpp: float | None = None,
) -> dict:
    """Best thresholds by mean AJI. ``maps_per_image``: 0-1 maps ``nucleus`` (+ ``boundary`` / ``distance``) at
    ``mpp`` µm per pixel (the model's limits in µm² apply with it, as in ``vimscope segment``).

    Returns ``{"params": the full postprocess dict, "aji": best mean AJI, "default_aji": AJI with ``base``,
    "tried": number of combinations}``."""
    from vimscope.instances import InstanceParams, label_instances

    grid = dict(grid or GRID)
    present = set().union(*(m.keys() for m in maps_per_image)) if maps_per_image else set()
    keys = ["nucleus_threshold"] + [f"{name}_threshold" for name in ("boundary", "distance") if name in present]
    base_params = InstanceParams.from_dict(base).to_dict()
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]

    def score(params: dict) -> float:
        full = {**base_params, **params}
        return float(np.mean([aji(label_instances(m, full, mpp=mpp), g) for m, g in zip(maps_per_image, gt_instances)]))

    with ThreadPoolExecutor(max_workers=min(len(combos), os.cpu_count() or 1)) as pool:
        scores = list(pool.map(score, combos))
    best = int(np.argmax(scores))
    return {
        "params": {**base_params, **combos[best]},
        "aji": scores[best],
        "default_aji": score({}),
        "tried": len(combos),
    }
