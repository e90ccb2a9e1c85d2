"""Damage checks on the raw tiles of a TIFF before they are decoded, shared by the TIFF-based backends.

A tile is damaged when its bytes run past the end of the file, when its own codec stream (JPEG, PNG, WebP, JPEG
2000) claims more pixels than the tile holds (``frames``: decoders allocate what the stream claims), or (JPEG) when
``check`` finds what libjpeg would warn about. Each tile is checked once per reader; the verdicts are shared by all
threads.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

from vimscope.errors import DamagedTileError
from vimscope.io.jpeg.frames import HEAD_BYTES, SELF_DESCRIBING, oversized
from vimscope.types import Box

JPEG = 7
PAST_END = "tile data runs past the end of the file"


class TileChecker:
    """Checks the tiles of one TIFF file; ``check`` raises DamagedTileError naming the damaged tiles."""

    def __init__(self, source: str, label: str):
        self.source = source
        self.label = label
        self._state: dict[tuple[int, int], np.ndarray] = {}  # 0 unknown, 1 good, 2 damaged
        self._reasons: dict[tuple[int, int, int], str] = {}  # (level, page position, tile) -> what was wrong
        self._lock = threading.Lock()

    def _relevant_pages(self, series, level: int, bands: list[int]) -> list[tuple[int, object]]:
        """(position, page) of the level's pages that hold the requested bands at index 0 of other axes."""
        lvl = series.levels[level]
        pages = lvl.pages
        page_axes = lvl.keyframe.axes
        grid = [(a, int(n)) for a, n in zip(lvl.axes, lvl.shape) if a not in page_axes]
        if not grid or len(pages) != math.prod(n for _, n in grid):
            return [(0, pages[0])]
        choices = [sorted(set(bands)) if a == "C" and "S" not in lvl.axes else [0] for a, _ in grid]
        positions = np.ravel_multi_index(np.meshgrid(*choices, indexing="ij"), [n for _, n in grid]).ravel()
        return [(int(p), pages[int(p)]) for p in positions if pages[int(p)] is not None]

    @staticmethod
    def _tile(kf) -> tuple[int, int]:
        """(width, height) of one tile or strip of a page, as stored (edge tiles full size)."""
        if kf.is_tiled:
            return int(kf.tilewidth), int(kf.tilelength)
        height = int(kf.imagelength)
        return int(kf.imagewidth), int(min(kf.rowsperstrip or height, height))

    def _segments(self, page, box: Box) -> list[tuple[int, Box]]:
        """(segment index, segment box in level pixels) of the tiles or strips of ``page`` that ``box`` touches."""
        kf = page.keyframe
        width, height = int(kf.imagewidth), int(kf.imagelength)
        tw, th = self._tile(kf)
        nx, ny = math.ceil(width / tw), math.ceil(height / th)
        out = []
        for ty in range(box.y // th, (box.y1 - 1) // th + 1):
            for tx in range(box.x // tw, (box.x1 - 1) // tw + 1):
                seg = Box(tx * tw, ty * th, min(tw, width - tx * tw), min(th, height - ty * th))
                out.append((ty * nx + tx, seg))
        planes = int(kf.samplesperpixel) if int(kf.planarconfig) == 2 else 1
        return [(p * nx * ny + i, seg) for p in range(planes) for i, seg in out]

    def check(self, tif, series, box: Box, level: int, bands: list[int]) -> None:
        from vimscope.io.jpeg.check import check_jpeg

        size = os.stat(self.source).st_size  # now, not at open: a file cut short while open is caught too
        damaged: list[tuple[Box, str]] = []
        for position, page in self._relevant_pages(series, level, bands):
            kf = page.keyframe
            if kf.is_ndpi:
                continue  # one big restart-marked JPEG per page; its strips are not separate streams
            key = (level, position)
            offsets, counts = page.dataoffsets, page.databytecounts
            state = self._state.get(key)
            if state is None:
                with self._lock:
                    state = self._state.setdefault(key, np.zeros(len(offsets), np.int8))
            compression, tile = int(kf.compression), self._tile(kf)
            for index, seg in self._segments(page, box):
                if index >= len(offsets) or state[index] == 1:
                    continue
                if state[index] == 2:
                    damaged.append((seg, self._reasons.get((*key, index), "damaged")))
                    continue
                offset, count = int(offsets[index]), int(counts[index])
                problem = None
                if count and offset + count > size:
                    problem = PAST_END
                elif count and compression in SELF_DESCRIBING:
                    fh = tif.filehandle
                    with fh.lock:
                        fh.seek(offset)
                        raw = fh.read(count if compression == JPEG else min(count, HEAD_BYTES))
                    problem = oversized(raw[:HEAD_BYTES], compression, tile)
                    if problem is None and compression == JPEG:
                        problem = check_jpeg(raw, kf.jpegtables)
                if problem:
                    self._reasons[(*key, index)] = problem
                    damaged.append((seg, problem))
                state[index] = 2 if problem else 1
        if damaged:
            raise DamagedTileError(
                f"{self.label}: {len(damaged)} damaged tile(s) in {box.to_list()} at level {level}: {damaged[0][1]}",
                box,
                level,
                tiles=[seg for seg, _ in damaged],
                reason=damaged[0][1],
            )
