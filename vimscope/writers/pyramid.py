"""2x pyramid levels built in chunk-aligned blocks, so no level is ever held whole in memory.

Images, probabilities and features are averaged over 2x2 blocks; label maps take the 2x2 mode (ties go to the
top-left pixel), so thin classes survive a few levels and no new label values appear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from vimscope.types import Box

# bytes of one level held at a time while building the next (input block)
BLOCK_BYTES = 64 << 20


def level_shapes(shape: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """(height, width) of each level: level l is ceil(shape / 2**l)."""
    h, w = shape
    return [(max(1, math.ceil(h / 2**i)), max(1, math.ceil(w / 2**i))) for i in range(levels)]


def default_levels(shape: tuple[int, int], chunk: int) -> int:
    """Enough levels that the coarsest fits in one chunk."""
    levels, longest = 1, max(shape)
    while longest > chunk:
        longest = math.ceil(longest / 2)
        levels += 1
    return levels


def _pad_even(a: np.ndarray) -> np.ndarray:
    """Replicate the last row/column of the two trailing axes when their size is odd (the image border)."""
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    return np.pad(a, pad, mode="edge") if h % 2 or w % 2 else a


def downsample_mean(a: np.ndarray) -> np.ndarray:
    """2x2 mean over the two trailing axes; integers are rounded half up, floats keep their dtype."""
    a = _pad_even(a)
    q = [a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]]
    if np.issubdtype(a.dtype, np.integer):
        s = sum(x.astype(np.uint32) for x in q)
        return ((s + 2) // 4).astype(a.dtype)
    s = sum(x.astype(np.float32) for x in q)
    return (s * 0.25).astype(a.dtype)


def downsample_mode(a: np.ndarray) -> np.ndarray:
    """2x2 majority over the two trailing axes for label maps; ties go to the earliest of (tl, tr, bl, br)."""
    a = _pad_even(a)
    v = np.stack([a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]])
    counts = np.stack([sum((v[i] == v[j]).astype(np.uint8) for j in range(4)) for i in range(4)])
    pick = np.argmax(counts, axis=0)
    return np.take_along_axis(v, pick[None], axis=0)[0]


def aligned_parent_box(box: Box, chunk: int, shape: tuple[int, int]) -> Box:
    """The box of the coarser level that ``box`` (finer level) touches, grown to whole chunks and clipped."""
    coarse = box.scale(2)
    h, w = shape
    x0, y0 = (coarse.x // chunk) * chunk, (coarse.y // chunk) * chunk
    x1, y1 = min(w, math.ceil(coarse.x1 / chunk) * chunk), min(h, math.ceil(coarse.y1 / chunk) * chunk)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def iter_blocks(box: Box, chunk: int, bytes_per_px: int, budget: int | None = None) -> Iterator[Box]:
    """Chunk-aligned sub-boxes of a (chunk-aligned) coarse ``box``, each needing at most ``budget`` input bytes."""
    budget = BLOCK_BYTES if budget is None else budget
    rows = chunk
    # input (finer) block is 2*rows x 2*cols; keep it inside the budget, whole chunks wide
    cols = max(chunk, (budget // max(1, 4 * rows * bytes_per_px)) // chunk * chunk)
    for y in range(box.y, box.y1, rows):
        for x in range(box.x, box.x1, cols):
            yield Box(x, y, min(cols, box.x1 - x), min(rows, box.y1 - y))


def build_region(
    read: Callable[[int, Box], np.ndarray],
    write: Callable[[int, Box, np.ndarray], None],
    reduce: Callable[[np.ndarray], np.ndarray],
    shapes: list[tuple[int, int]],
    chunk: int,
    box: Box | None = None,
    bytes_per_px: int = 4,
    on_level0: Callable[[Box, np.ndarray], None] | None = None,
) -> None:
    """Recompute every coarser-level chunk that ``box`` (level 0; all of it when None) touches.

    ``read(level, box)`` returns a (..., h, w) block of that level and ``write(level, box, data)`` stores one; both
    are chunk-aligned, so blocks never share a chunk and could be written by several workers without locks.
    ``on_level0`` sees every level-0 block read (used to count class pixels in the same pass).
    """
    finer = box or Box(0, 0, shapes[0][1], shapes[0][0])
    for level in range(1, len(shapes)):
        target = aligned_parent_box(finer, chunk, shapes[level])
        if target.area == 0:
            return
        for block in iter_blocks(target, chunk, bytes_per_px):
            src = Box(2 * block.x, 2 * block.y, 2 * block.w, 2 * block.h)
            fh, fw = shapes[level - 1]
            src = Box(src.x, src.y, min(src.w, fw - src.x), min(src.h, fh - src.y))
            data = read(level - 1, src)
            if level == 1 and on_level0 is not None:
                on_level0(src, data)
            out = reduce(data)
            write(level, block, out[..., : block.h, : block.w])
        finer = target
