"""Plain value types shared by every stage (layer 0: stdlib and numpy only)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Box:
    """An axis-aligned pixel rectangle: columns [x, x + w), rows [y, y + h), in the pixels of one level."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return max(self.w, 0) * max(self.h, 0)

    def intersect(self, other: Box) -> Box | None:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        if x1 <= x0 or y1 <= y0:
            return None
        return Box(x0, y0, x1 - x0, y1 - y0)

    def scale(self, factor: float) -> Box:
        """The box in a level ``factor`` times coarser (factor > 1) or finer (< 1), rounded outwards."""
        import math

        x0, y0 = math.floor(self.x / factor), math.floor(self.y / factor)
        x1, y1 = math.ceil(self.x1 / factor), math.ceil(self.y1 / factor)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    @classmethod
    def from_list(cls, v) -> Box:
        x, y, w, h = (int(a) for a in v)
        return cls(x, y, w, h)


class CancelToken:
    """Set from any thread (a GUI button, a signal handler); the pipeline checks it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Progress:
    """One event of ``pipeline.iter_run``: how far the run is, what was just written, where the outputs are."""

    stage: str  # "plan", "tiles", "band", "postprocess", "write", "done"
    done: int = 0
    total: int = 0
    box: Box | None = None  # level-0 box just written, for faces that show partial results
    outputs: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0
