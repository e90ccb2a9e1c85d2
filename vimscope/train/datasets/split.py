"""Train/validation split by image, never by tile: tiles of one image are correlated, so a tile-level split would
let validation see its own training data. A fractional split is spread over groups (organs, sites)."""

from __future__ import annotations

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import LabelledImage

__all__ = ["choose_validation", "split_images"]


def choose_validation(images: list[LabelledImage], fraction: float, seed: int = 0) -> list[str]:
    """``round(fraction * n)`` image names (at least one when fraction > 0), one group at a time in turn."""
    if fraction <= 0:
        return []
    count = max(1, round(fraction * len(images)))
    if count >= len(images):
        raise ConfigError(f"split.fraction {fraction} leaves no training image out of {len(images)}")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for im in sorted(images, key=lambda im: im.name):
        groups.setdefault(im.group, []).append(im.name)
    order = sorted(groups)
    rng.shuffle(order)
    pools = {g: list(rng.permutation(groups[g])) for g in order}
    chosen: list[str] = []
    while len(chosen) < count:
        for g in order:
            if pools[g] and len(chosen) < count:
                chosen.append(str(pools[g].pop()))
    return sorted(chosen)


def split_images(images: list[LabelledImage], validation: list[str]) -> tuple[list[LabelledImage], list[LabelledImage]]:
    names = {im.name for im in images}
    missing = sorted(set(validation) - names)
    if missing:
        raise ConfigError(f"split.validation names an image that is not in the data: {missing[0]!r}")
    held = set(validation)
    train = [im for im in images if im.name not in held]
    val = [im for im in images if im.name in held]
    if not train:
        raise ConfigError("the split leaves no training image")
    return train, val
