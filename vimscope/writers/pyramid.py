"""2x pyramid levels built in chunk-aligned blocks, so no level is ever held whole in memory.

Images, probabilities and features are averaged over 2x2 blocks; label maps take the 2x2 mode (ties go to the
top-left pixel), so thin classes survive a few levels and no new label values appear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numba
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
    """2x2 mean over the two trailing axes; integers are rounded half up, floats keep their dtype. uint8 and
    uint16 in one compiled pass (``_mean2``), the same values as ``downsample_mean_plain``."""
    if a.dtype in (np.uint8, np.uint16) and a.ndim >= 2 and a.size:
        return _reduced(_mean2, a)
    return downsample_mean_plain(a)


def downsample_mean_plain(a: np.ndarray) -> np.ndarray:
    """``downsample_mean`` with numpy: strided quarters summed in a wider type."""
    a = _pad_even(a)
    q = [a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]]
    if np.issubdtype(a.dtype, np.integer):
        wide = np.uint16 if a.dtype == np.uint8 else np.uint32  # four uint8 values and the +2 fit in 16 bits
        s = q[0].astype(wide)
        for x in q[1:]:
            s += x
        s += 2
        s //= 4
        return s.astype(a.dtype)
    s = sum(x.astype(np.float32) for x in q)
    return (s * 0.25).astype(a.dtype)


def _reduced(kernel, a: np.ndarray) -> np.ndarray:
    """``kernel`` over every (h, w) plane of ``a`` (..., h, w): the (..., ceil(h/2), ceil(w/2)) result, the
    image border replicated where a size is odd (as ``_pad_even``)."""
    h, w = a.shape[-2:]
    planes = np.ascontiguousarray(a).reshape(-1, h, w)
    out = np.empty((planes.shape[0], (h + 1) // 2, (w + 1) // 2), a.dtype)
    kernel(planes, out)
    return out.reshape(*a.shape[:-2], *out.shape[-2:])


@numba.njit(cache=True, nogil=True)
def _mean2(planes, out):  # pragma: no cover - compiled
    n, h, w = planes.shape
    for p in range(n):
        for i in range(out.shape[1]):
            r0, r1 = 2 * i, min(2 * i + 1, h - 1)
            for j in range(out.shape[2]):
                c0, c1 = 2 * j, min(2 * j + 1, w - 1)
                s = np.uint32(planes[p, r0, c0]) + planes[p, r0, c1] + planes[p, r1, c0] + planes[p, r1, c1]
                out[p, i, j] = (s + 2) // 4


@numba.njit(cache=True, nogil=True)
def _mode2(planes, out):  # pragma: no cover - compiled
    n, h, w = planes.shape
    for p in range(n):
        for i in range(out.shape[1]):
            r0, r1 = 2 * i, min(2 * i + 1, h - 1)
            for j in range(out.shape[2]):
                c0, c1 = 2 * j, min(2 * j + 1, w - 1)
                tl, tr, bl, br = planes[p, r0, c0], planes[p, r0, c1], planes[p, r1, c0], planes[p, r1, c1]
                if tl == tr or tl == bl or tl == br:
                    out[p, i, j] = tl
                elif tr == bl or tr == br:
                    out[p, i, j] = tr
                elif bl == br:
                    out[p, i, j] = bl
                else:
                    out[p, i, j] = tl


def downsample_mode(a: np.ndarray) -> np.ndarray:
    """2x2 majority over the two trailing axes for label maps; ties go to the earliest of (tl, tr, bl, br).

    Of four values (a, b, c, d) that is: a if it occurs twice or more; else b if it does; else c if c == d; else
    a (all differ). Integer maps in one compiled pass (``_mode2``); ``downsample_mode_reference`` counts."""
    if a.dtype.kind in "iu" and a.ndim >= 2 and a.size:
        return _reduced(_mode2, a)
    return downsample_mode_plain(a)


def downsample_mode_plain(a: np.ndarray) -> np.ndarray:
    """``downsample_mode`` with comparisons and selections of numpy, no stacked copies."""
    a = _pad_even(a)
    tl, tr, bl, br = a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]
    out = np.where(bl == br, bl, tl)
    out = np.where((tr == bl) | (tr == br), tr, out)
    return np.where((tl == tr) | (tl == bl) | (tl == br), tl, out)


def downsample_mode_reference(a: np.ndarray) -> np.ndarray:
    """``downsample_mode`` by counting: each of the four values' occurrences, the first of the most frequent."""
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
            _reduce_block(read, write, reduce, level, block, shapes[level - 1], on_level0 if level == 1 else None)
        finer = target


def _reduce_block(read, write, reduce, level: int, block: Box, finer_shape: tuple[int, int], on_read=None) -> None:
    """Write ``block`` of ``level`` from the reduction of the finer level's block under it (clipped to that level);
    ``on_read(box, data)`` sees what was read."""
    fh, fw = finer_shape
    x, y = 2 * block.x, 2 * block.y
    src = Box(x, y, min(2 * block.w, fw - x), min(2 * block.h, fh - y))
    data = read(level - 1, src)
    if on_read is not None:
        on_read(src, data)
    out = reduce(data)
    write(level, block, out[..., : block.h, : block.w])


def final_rows(final: int | None, level: int, chunk: int, shapes: list[tuple[int, int]]) -> int:
    """Rows of ``level`` that may be built when level-0 rows above ``final`` are final (None: all): whole
    chunk rows whose level-0 rows are all final."""
    height = shapes[level][0]
    if final is None or final >= shapes[0][0]:
        return height
    return min(height, (final >> level) // chunk * chunk)


def build_levels(
    read: Callable[[int, Box], np.ndarray],
    write: Callable[[int, Box, np.ndarray], None],
    reduce: Callable[[np.ndarray], np.ndarray],
    shapes: list[tuple[int, int]],
    chunk: int,
    dirty: list[tuple[int, Box]],
    *,
    final: int | None = None,
    bytes_per_px: int = 4,
) -> list[tuple[int, Box]]:
    """Rebuild the coarser-level chunks above ``dirty`` ((level, box) pairs in that level's elements), but only
    those whose finer rows are all final (level-0 rows above ``final``; None: everything). Returns the
    (level, box) pairs left for a later call; the chunks it builds are the ones ``build_region`` would, each
    computed once its data is final rather than again at every call (a band's last chunk row waits for the next)."""
    pending: dict[int, list[Box]] = {}
    for level, box in dirty:
        pending.setdefault(level, []).append(box)
    left: list[tuple[int, Box]] = []
    for level in range(len(shapes) - 1):
        coarse = level + 1
        limit = final_rows(final, coarse, chunk, shapes)
        keys: set[tuple[int, int]] = set()  # coarse chunks to build: each once, whatever boxes reach it
        for box in _merge_rows(pending.pop(level, [])):
            target = aligned_parent_box(box, chunk, shapes[coarse])
            if target.area == 0:
                continue
            if target.y1 > limit:  # the rows below ``limit`` wait; so do the finer rows that feed them
                rest = max(box.y, 2 * max(limit, target.y))
                if rest < box.y1:
                    left.append((level, Box(box.x, rest, box.w, box.y1 - rest)))
                if limit <= target.y:
                    continue
                target = Box(target.x, target.y, target.w, limit - target.y)
            for ky in range(target.y // chunk, -(-target.y1 // chunk)):
                for kx in range(target.x // chunk, -(-target.x1 // chunk)):
                    keys.add((ky, kx))
        for run in _row_runs(keys, chunk, shapes[coarse]):
            for block in iter_blocks(run, chunk, bytes_per_px):
                _reduce_block(read, write, reduce, coarse, block, shapes[level])
            pending.setdefault(coarse, []).append(run)
    return left


def _row_runs(keys: set[tuple[int, int]], chunk: int, shape: tuple[int, int]) -> list[Box]:
    """Chunk keys as boxes: runs of neighbouring chunks along each chunk row, clipped to ``shape``."""
    h, w = shape
    runs: list[Box] = []
    for ky, kx in sorted(keys):
        y0, x0 = ky * chunk, kx * chunk
        box = Box(x0, y0, min(chunk, w - x0), min(chunk, h - y0))
        if runs and runs[-1].y == y0 and runs[-1].x1 == x0:
            last = runs[-1]
            runs[-1] = Box(last.x, last.y, last.w + box.w, last.h)
        else:
            runs.append(box)
    return runs


def _merge_rows(boxes: list[Box]) -> list[Box]:
    """Fewer boxes, the same rows and columns: boxes of one row span joined when they touch or overlap."""
    boxes = sorted(set(boxes), key=lambda b: (b.y, b.h, b.x))
    merged: list[Box] = []
    for b in boxes:
        if merged:
            m = merged[-1]
            if m.y == b.y and m.h == b.h and m.x1 >= b.x:
                merged[-1] = Box(m.x, m.y, max(m.x1, b.x1) - m.x, m.h)
                continue
        merged.append(b)
    return merged
