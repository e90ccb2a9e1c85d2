"""Integer blending windows: 1 in a tile's core, a smooth fade across the overlap, 0 in an outer margin.

Neighbouring tiles overlap by ``2 * halo``. A window fades from 1 to 0 over the ``halo``-wide band centred on
the core edge (cosine: a squared-sine ramp; gaussian: a normal-CDF ramp) and is exactly 0 in the outer
``margin = halo / 2`` of the tile, where the model saw the least context. The ramps of two neighbours add up to 1
(and products of them in 2-D too), so blending is a convex mix of predictions that each had at least ``margin``
pixels of context: a model whose receptive field radius is at most ``margin`` gives seamless, exact output
(cropping needs ``halo`` >= that radius). Weights are integers so blended sums are exact and independent of
the order tiles arrive in (resume, GPU vs CPU): where every tile agrees, the blend returns the value itself.
"""

from __future__ import annotations

import math

import numpy as np

# weight of a pixel fully inside a tile's core; with 12-bit probabilities a pixel can take 32 tiles in int32
WEIGHT_ONE = 1 << 14
MODES = ("crop", "cosine", "gaussian")


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def window_1d(size: int, mode: str, *, halo: int, margin: float | None = None) -> np.ndarray:
    """Weights in [0, 1] along one tile axis (pixel centres). ``crop``: 1 in the core, 0 in the halo."""
    if mode not in MODES:
        raise ValueError(f"unknown stitch mode {mode!r} (known: {', '.join(MODES)})")
    i = np.arange(size, dtype=np.float64) + 0.5
    d = np.minimum(i, size - i)  # distance of the pixel centre from the nearer tile edge
    if mode == "crop" or halo == 0:
        return (d > halo).astype(np.float64)
    m = halo / 2.0 if margin is None else float(margin)
    if not 0 <= m < halo:
        raise ValueError(f"blend margin must be in [0, halo), got {m} for halo {halo}")
    u = np.clip((d - m) / (2.0 * (halo - m)), 0.0, 1.0)  # 0 at the margin, 1/2 on the core edge, 1 inside
    if mode == "cosine":
        w = np.sin(0.5 * math.pi * u) ** 2
    else:
        lo = _normal_cdf(np.array(-3.0))
        w = (_normal_cdf(6.0 * (u - 0.5)) - lo) / (1.0 - 2.0 * lo)  # rescaled to reach exactly 0 and 1
    w[d <= m] = 0.0
    return w


def window_2d(size: int, mode: str, *, halo: int, margin: float | None = None) -> np.ndarray:
    """(size, size) int32 weights, WEIGHT_ONE in the core and 0 in the outer margin."""
    w1 = window_1d(size, mode, halo=halo, margin=margin)
    return np.rint(np.outer(w1, w1) * WEIGHT_ONE).astype(np.int32)
