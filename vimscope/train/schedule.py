"""The learning-rate schedule as a pure function of the step: linear warm-up, then cosine decay to a floor.

A pure function means resuming needs nothing but the step count, and the schedule of a resumed run is the
schedule of an uninterrupted one by construction.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, total: int, base_lr: float, warmup: int, min_lr_ratio: float = 0.01) -> float:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    floor = base_lr * min_lr_ratio
    return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
