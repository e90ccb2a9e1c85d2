"""The maps the instance step reads, from what a nuclei model writes: class probabilities and extra maps.

Foreground is what the model calls a nucleus: the summed probability of its non-background classes, and nothing
where the class map says background. Never 1 - P(background): areas no tile wrote (blank glass outside the
tissue, outside the region, damaged tiles) hold zeros in every channel and would read as certain nuclei.
"""

from __future__ import annotations

import numpy as np

# How a model's raw extra maps become the 0-1 maps the instance step reads (models return them before activation).
MAP_ACTIVATIONS = {"boundary": "sigmoid", "distance": "clamp"}


def activation(name: str) -> str:
    """``"sigmoid"`` or ``"clamp"``: how the raw extra map ``name`` becomes a 0-1 map."""
    return MAP_ACTIVATIONS.get(name, "sigmoid")


def nucleus_map(block: np.ndarray, n_classes: int, class_map: np.ndarray | None = None) -> np.ndarray:
    """(h, w) uint8: P(any nucleus class) of a (c, h, w) uint8 probabilities block, 0 where ``class_map`` is 0."""
    if n_classes < 2:
        raise ValueError(f"an instance model needs a background and at least one nucleus class (got {n_classes})")
    if n_classes == 2:
        nucleus = block[1]
    else:
        nucleus = np.minimum(block[1:n_classes].sum(axis=0, dtype=np.uint16), 255).astype(np.uint8)
    if class_map is not None:
        nucleus = np.where(class_map > 0, nucleus, np.uint8(0))
    return nucleus


def maps_of(
    block: np.ndarray, n_classes: int, extra_maps: list[str], class_map: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The instance maps of a (c, h, w) uint8 probabilities block: ``nucleus`` (``nucleus_map``) and the model's
    extra maps (boundary, distance) by name."""
    maps = {"nucleus": nucleus_map(block, n_classes, class_map)}
    for i, name in enumerate(extra_maps):
        maps[name] = block[n_classes + i]
    return maps
