"""Reading around damaged tiles: a damaged native tile costs its own pixels, never the rest of a region.

WHY: a decoder error is raised for a whole request (a 2220 x 1888 strip of an overview, a model tile), but the
damage is one native tile or strip of the file. ``salvage`` reads the request again tile by tile, keeps every
tile that decodes, fills the others with a value and names them. ``DamageLog`` is what a caller collects
(``SlideReader.collect_damage``): the damaged native tiles, each once, with level and level-0 boxes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vimscope.errors import DamagedTileError
from vimscope.types import Box

SALVAGE_BLOCK = 256  # cell side for salvaging levels without a native tile grid (computed levels never need it)


@dataclass(frozen=True)
class DamagedArea:
    """One damaged native tile (or strip, or chunk) of the file."""

    level: int  # the native level it belongs to
    box: Box  # in that level's pixels: the whole tile, clipped to the level
    box0: Box  # the same in level-0 pixels (rounded outwards, clipped to the image)
    reason: str  # what the decoder or the check said, one line

    def to_dict(self) -> dict:
        return {"level": self.level, "box": self.box.to_list(), "box0": self.box0.to_list(), "reason": self.reason}


def reason_of(error: DamagedTileError) -> str:
    """The decoder's complaint without the path and box the message also carries."""
    return getattr(error, "reason", None) or str(error) or "damaged tile"


def level0_box(box: Box, downsample: float, size0: tuple[int, int]) -> Box:
    """A level box in level-0 pixels, rounded outwards and clipped to the image."""
    x0, y0 = math.floor(box.x * downsample), math.floor(box.y * downsample)
    x1 = min(size0[0], math.ceil(box.x1 * downsample))
    y1 = min(size0[1], math.ceil(box.y1 * downsample))
    return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def grid_cells(box: Box, tile: tuple[int, int], size: tuple[int, int]) -> list[Box]:
    """The native tiles (full, clipped to the level of ``size``) that ``box`` touches, row-major."""
    tw, th = tile
    w, h = size
    return [
        Box(tx * tw, ty * th, min(tw, w - tx * tw), min(th, h - ty * th))
        for ty in range(box.y // th, (box.y1 - 1) // th + 1)
        for tx in range(box.x // tw, (box.x1 - 1) // tw + 1)
    ]


def salvage(
    read: Callable[[Box], np.ndarray],
    box: Box,
    tile: tuple[int, int] | None,
    size: tuple[int, int],
    fill,
    dtype,
    channels: int,
) -> tuple[np.ndarray, list[tuple[Box, str]]]:
    """(pixels of ``box``, [(damaged tile box, reason)]): ``read(box)`` at once, or tile by tile after an error.

    Tiles whose read raises DamagedTileError are filled with ``fill`` and listed; the others are exact.
    ``read`` returns (h, w, ``channels``) arrays of ``dtype``.
    """
    try:
        return read(box), []
    except DamagedTileError:
        pass
    out = np.empty((box.h, box.w, channels), dtype)
    out[...] = np.asarray(fill).astype(dtype)
    damaged: list[tuple[Box, str]] = []
    for cell in grid_cells(box, tile or (SALVAGE_BLOCK, SALVAGE_BLOCK), size):
        part = cell.intersect(box)
        try:
            data = read(part)
        except DamagedTileError as e:
            damaged.append((cell, reason_of(e)))
            continue
        out[part.y - box.y : part.y1 - box.y, part.x - box.x : part.x1 - box.x] = data
    return out, damaged


class DamageLog:
    """Damaged native tiles met by one thread's reads inside ``SlideReader.collect_damage``; each listed once."""

    def __init__(self, fill) -> None:
        self.fill = fill
        self._areas: dict[tuple[int, tuple[int, ...]], DamagedArea] = {}
        self._lock = threading.Lock()

    def add(self, area: DamagedArea) -> None:
        with self._lock:
            self._areas.setdefault((area.level, tuple(area.box.to_list())), area)

    @property
    def areas(self) -> list[DamagedArea]:
        """The damaged tiles in the order they were met."""
        with self._lock:
            return list(self._areas.values())

    def __len__(self) -> int:
        return len(self._areas)

    def __bool__(self) -> bool:
        return bool(self._areas)

    def summary(self) -> str:
        """One line: how many damaged tiles, and the first one's level-0 box and reason."""
        areas = self.areas
        if not areas:
            return ""
        first = areas[0]
        more = f" (and {len(areas) - 1} more)" if len(areas) > 1 else ""
        return f"{len(areas)} damaged tile(s): level-0 box {first.box0.to_list()}: {first.reason}{more}"


def unique_areas(areas) -> list[dict]:
    """DamagedArea objects or their dicts (a run's record, a tissue mask), each tile once, as dicts in first-seen
    order: what a summary lists as the damaged tiles of the slide."""
    seen: dict[tuple, dict] = {}
    for a in areas:
        d = a.to_dict() if isinstance(a, DamagedArea) else dict(a)
        seen.setdefault((d["level"], tuple(d["box"])), d)
    return list(seen.values())


def describe_areas(areas: list[dict], limit: int = 3) -> str:
    """One phrase for a report line, e.g. "1 damaged tile of the slide (level-0 x,y,w,h: 1200,720,240,240)"."""
    if not areas:
        return ""
    boxes = "; ".join(",".join(str(int(v)) for v in a["box0"]) for a in areas[:limit])
    more = f" and {len(areas) - limit} more" if len(areas) > limit else ""
    n = len(areas)
    return f"{n} damaged tile{'s' if n > 1 else ''} of the slide (level-0 x,y,w,h: {boxes}{more})"
