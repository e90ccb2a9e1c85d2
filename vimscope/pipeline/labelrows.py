"""The instance label map of the rows still being painted, held in memory and written once.

Cells are painted in order, each over its window (cell plus margin), a later cell's objects over an earlier one's
where their windows overlap. Painting each window into the store meant reading back and rewriting every chunk the
window touches, the margin rows twice, all on the one thread that keeps the ids in order: the longest serial step
of a nuclei run. Here the rows no later window reaches are written to the store once, in whole chunk rows, and the
rest stay in memory, a chunk row of the full width each (at most a window plus a chunk row: about 0.9 GB for an
80,000 px wide output). Painting is one compiled pass over the window's labels. Same values as before, fewer
bytes coded.
"""

from __future__ import annotations

import numba
import numpy as np

from vimscope.types import Box


@numba.njit(cache=True, nogil=True)
def _paint(rows, y0, x0, labels, table):
    """rows[y0 + i, x0 + j] = table[labels[i, j]] wherever that is not 0."""
    h, w = labels.shape
    for i in range(h):
        for j in range(w):
            label = labels[i, j]
            if label:
                value = table[label]
                if value:
                    rows[y0 + i, x0 + j] = value


class LabelRows:
    """The chunk rows of label array ``name`` of ``writer`` (height x width, uint32) that are still being painted,
    in memory, one array per chunk row; every chunk row above ``top`` is in the store."""

    def __init__(self, writer, name: str, shape: tuple[int, int], chunk: int) -> None:
        self.writer, self.name, self.chunk = writer, name, int(chunk)
        self.height, self.width = (int(v) for v in shape)
        self.top = 0
        self.blocks: dict[int, np.ndarray] = {}  # chunk row -> its rows (chunk, or fewer at the bottom)

    def _block(self, row: int) -> np.ndarray:
        block = self.blocks.get(row)
        if block is None:
            rows = min(self.chunk, self.height - row * self.chunk)
            block = self.blocks[row] = np.zeros((rows, self.width), np.uint32)
        return block

    def paint(self, window: Box, labels: np.ndarray, table: np.ndarray) -> None:
        """Paint ``table[labels]`` (0: leave as is) over ``window``; its rows must not have been released."""
        if window.y < self.top:
            raise ValueError(f"rows above {self.top} are written already; window {window} starts above")
        table = np.asarray(table, np.uint32)
        for row in range(window.y // self.chunk, -(-window.y1 // self.chunk)):
            y0, y1 = max(window.y, row * self.chunk), min(window.y1, (row + 1) * self.chunk)
            part = np.ascontiguousarray(labels[y0 - window.y : y1 - window.y])
            _paint(self._block(row), y0 - row * self.chunk, window.x, part, table)

    def release(self, final: int) -> None:
        """Write the whole chunk rows above row ``final`` (no later window reaches them; the image's last row
        ends one too) and drop them."""
        final = min(int(final), self.height)
        end = final if final == self.height else (final // self.chunk) * self.chunk
        for row in range(self.top // self.chunk, -(-end // self.chunk)):
            block = self._block(row)
            self.writer.write_block(self.name, Box(0, row * self.chunk, self.width, len(block)), block)
            del self.blocks[row]
        self.top = max(self.top, end)
