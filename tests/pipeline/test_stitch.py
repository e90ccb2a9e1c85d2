"""The chunk assembler: every chunk exactly once, chunk-aligned, exact in every mode, order-independent blending."""

from __future__ import annotations

import numpy as np
import pytest

from vimscope.stitch.assembler import (
    NUMPY,
    P_ONE,
    ChunkAssembler,
    class_map,
    finalize_split,
    quantise_probabilities,
)
from vimscope.stitch.windows import window_2d
from vimscope.types import Box

H, W, CHUNK, TILE, HALO = 300, 410, 64, 96, 16
CORE = TILE - 2 * HALO


def grid_tiles(h=H, w=W, tile=TILE, halo=HALO):
    """(core box, window box) per tile of a plain row-major grid; windows may stick out of the image."""
    core = tile - 2 * halo
    out = []
    for y in range(0, h, core):
        for x in range(0, w, core):
            c = Box(x, y, min(core, w - x), min(core, h - y))
            out.append((c, Box(x - halo, y - halo, tile, tile)))
    return out


def window_of(ref: np.ndarray, win: Box) -> np.ndarray:
    """``ref`` cut at ``win``, zero outside the image (what a tile would hold)."""
    out = np.zeros((win.h, win.w) + ref.shape[2:], ref.dtype)
    inner = win.intersect(Box(0, 0, ref.shape[1], ref.shape[0]))
    out[inner.y - win.y : inner.y1 - win.y, inner.x - win.x : inner.x1 - win.x] = ref[
        inner.y : inner.y1, inner.x : inner.x1
    ]
    return out


def drain(asm: ChunkAssembler, tiles, values, order=None):
    """Feed tiles; return the assembled output and the list of emitted boxes."""
    got, boxes = {}, []
    for i in order if order is not None else range(len(tiles)):
        _, win = tiles[i]
        for box, named in asm.add(i, values(i, win), (win.x, win.y)):
            boxes.append(box)
            for name, a in named.items():
                got.setdefault(name, []).append((box, a))
    return got, boxes


def paste(blocks, shape, dtype):
    out = np.zeros(shape, dtype)
    for box, a in blocks:
        out[box.y : box.y1, box.x : box.x1] = a
    return out


def test_place_mode_writes_each_chunk_once_aligned_and_exact():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (H, W, 2), dtype=np.uint8)
    tiles = grid_tiles()
    asm = ChunkAssembler(
        shape=(H, W),
        chunk=CHUNK,
        boxes={i: c for i, (c, _) in enumerate(tiles)},
        channels=2,
        mode="place",
        finalize=finalize_split([("a", 1), ("b", 1)]),
        dtype="uint8",
    )
    got, boxes = drain(asm, tiles, lambda i, win: window_of(ref, win))
    assert len(boxes) == len(set(boxes)) == asm.total_chunks == -(-H // CHUNK) * -(-W // CHUNK)
    assert all(b.x % CHUNK == 0 and b.y % CHUNK == 0 for b in boxes)
    assert np.array_equal(paste(got["a"], (H, W), np.uint8), ref[..., 0])
    assert np.array_equal(paste(got["b"], (H, W), np.uint8), ref[..., 1])
    assert asm.open_chunks == 0 and asm.pending_chunks == 0
    # row-major tiles keep about two chunk rows open, never the whole image
    assert asm.peak_open <= 2 * -(-W // CHUNK) + 2


@pytest.mark.parametrize("mode", ["cosine", "gaussian"])
def test_blending_tiles_that_agree_gives_the_values_exactly(mode):
    """Integer blending of identical per-pixel values returns them bit for bit (no seams, no rounding)."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), size=(H, W))
    p_q = np.rint(p * P_ONE).astype(np.int32)
    tiles = grid_tiles()
    asm = ChunkAssembler(
        shape=(H, W),
        chunk=CHUNK,
        boxes={i: w.intersect(Box(0, 0, W, H)) for i, (_, w) in enumerate(tiles)},
        channels=3,
        mode="accumulate",
        finalize=lambda acc, wsum, ops: {
            "classes": class_map(acc, ops),
            "probabilities": quantise_probabilities(acc, wsum, ops),
        },
        dtype="int32",
        weight=window_2d(TILE, mode, halo=HALO),
    )
    got, _ = drain(asm, tiles, lambda i, win: window_of(p_q, win))
    ones = np.ones((H, W), np.int32)
    assert np.array_equal(paste(got["classes"], (H, W), np.uint8), class_map(p_q))
    assert np.array_equal(paste(got["probabilities"], (H, W, 3), np.uint8), quantise_probabilities(p_q, ones))


def test_blending_is_independent_of_tile_order():
    rng = np.random.default_rng(2)
    tiles = grid_tiles()
    per_tile = [rng.integers(0, P_ONE, (TILE, TILE, 2)).astype(np.int32) for _ in tiles]

    def build():
        return ChunkAssembler(
            shape=(H, W),
            chunk=CHUNK,
            boxes={i: w.intersect(Box(0, 0, W, H)) for i, (_, w) in enumerate(tiles)},
            channels=2,
            mode="accumulate",
            finalize=lambda acc, wsum, ops: {"p": quantise_probabilities(acc, wsum, ops)},
            dtype="int32",
            weight=window_2d(TILE, "cosine", halo=HALO),
        )

    a, _ = drain(build(), tiles, lambda i, win: per_tile[i])
    order = rng.permutation(len(tiles))
    b, _ = drain(build(), tiles, lambda i, win: per_tile[i], order=order)
    assert np.array_equal(paste(a["p"], (H, W, 2), np.uint8), paste(b["p"], (H, W, 2), np.uint8))


def test_skipped_tiles_leave_their_finished_chunks_closed():
    """Resume: chunks whose tiles were all done are not written again; open ones name the tiles to redo."""
    tiles = grid_tiles()
    boxes = {i: c for i, (c, _) in enumerate(tiles)}
    per_row = -(-W // CORE)
    done = set(range(2 * per_row))  # the first two tile rows: 128 px, exactly two chunk rows
    kw = dict(
        shape=(H, W),
        chunk=CHUNK,
        boxes=boxes,
        channels=1,
        mode="place",
        finalize=finalize_split([("a", 1)]),
        dtype="uint8",
    )
    full = ChunkAssembler(**kw)
    resumed = ChunkAssembler(**kw, skip_tiles=done)
    assert resumed.total_chunks == full.total_chunks
    assert resumed.pending_chunks == full.total_chunks - 2 * -(-W // CHUNK)
    assert resumed.needed_tiles == set(range(len(tiles))) - done
    # chunks of 96 px cut the 64 px tile rows: done tiles feeding an open chunk are recomputed, the rest not
    kw96 = {**kw, "chunk": 96}
    row = lambda r: set(range(r * per_row, (r + 1) * per_row))  # noqa: E731
    assert ChunkAssembler(**kw96, skip_tiles=row(0)).needed_tiles == set(range(len(tiles)))
    after3 = ChunkAssembler(**kw96, skip_tiles=row(0) | row(1) | row(2))  # 192 px: chunk rows 0 and 1 closed
    assert after3.needed_tiles == set(range(len(tiles))) - row(0) - row(1) - row(2)
    after2 = ChunkAssembler(**kw96, skip_tiles=row(0) | row(1))  # 128 px: chunk row 1 (96-192) still open
    assert after2.needed_tiles == set(range(len(tiles))) - row(0)


@pytest.mark.parametrize("mode", ["cosine", "gaussian"])
def test_windows_are_a_partition_of_unity_with_a_dead_margin(mode):
    from vimscope.stitch.windows import WEIGHT_ONE, window_1d

    crop = window_2d(TILE, "crop", halo=HALO)
    assert (crop > 0).sum() == CORE * CORE and (crop[HALO:-HALO, HALO:-HALO] == WEIGHT_ONE).all()
    w1 = window_1d(TILE, mode, halo=HALO)
    assert (w1[: HALO // 2] == 0).all() and (w1[-(HALO // 2) :] == 0).all()  # no weight where context is thin
    assert (w1[HALO + HALO // 2 : -(HALO + HALO // 2)] == 1).all()  # the core away from the overlap: only itself
    # two neighbours (offset by the core) add up to one across their overlap
    overlap = np.arange(CORE, CORE + 2 * HALO)  # in the first tile's window; the second starts at CORE
    assert np.allclose(w1[overlap] + w1[overlap - CORE], 1.0)
    w = window_2d(TILE, mode, halo=HALO)
    assert w.dtype == np.int32 and w.max() == WEIGHT_ONE and w.min() == 0
    assert np.array_equal(w, w.T) and np.array_equal(w, w[::-1, ::-1])


def test_torch_blending_matches_numpy():
    """stitch/device.py blends with the same integer formulas on torch tensors (the GPU path, run here on CPU)."""
    import torch

    from vimscope.stitch.device import TorchOps
    from vimscope.stitch.run import _finalize_segmentation

    rng = np.random.default_rng(3)
    tiles = grid_tiles()
    per_tile = [rng.integers(0, P_ONE, (TILE, TILE, 3)).astype(np.int32) for _ in tiles]
    weight = window_2d(TILE, "gaussian", halo=HALO)

    def build(ops, w):
        return ChunkAssembler(
            shape=(H, W),
            chunk=CHUNK,
            boxes={i: win.intersect(Box(0, 0, W, H)) for i, (_, win) in enumerate(tiles)},
            channels=3,
            mode="accumulate",
            finalize=_finalize_segmentation(2, True),
            dtype="int32",
            ops=ops,
            weight=w,
        )

    a, _ = drain(build(NUMPY, weight), tiles, lambda i, win: per_tile[i])
    b, _ = drain(build(TorchOps("cpu"), torch.from_numpy(weight)), tiles, lambda i, win: torch.from_numpy(per_tile[i]))
    for name in ("classes", "probabilities"):
        shape = (H, W) if name == "classes" else (H, W, 3)
        assert np.array_equal(paste(a[name], shape, np.uint8), paste(b[name], shape, np.uint8))


def test_stripe_edges_hold_thin_strips_not_whole_chunks():
    """Blending across a stripe edge: the chunks there wait for the next stripe, holding only the halo-wide sums
    (and the finished columns as uint8), so the edge buffer grows with the height at a fraction of a chunk."""
    h, w = 1536, 2 * 192
    tiles = grid_tiles(h, w)
    cols = -(-w // CORE)
    stripe_of = {i: (i % cols) // 2 for i in range(len(tiles))}  # two tile columns (192 px = 3 chunks) per stripe
    order = sorted(range(len(tiles)), key=lambda i: (stripe_of[i], i))
    values = np.full((TILE, TILE, 2), P_ONE // 2, np.int32)
    asm = ChunkAssembler(
        shape=(h, w),
        chunk=CHUNK,
        boxes={i: win.intersect(Box(0, 0, w, h)) for i, (_, win) in enumerate(tiles)},
        channels=2,
        mode="accumulate",
        finalize=lambda acc, wsum, ops: {"p": quantise_probabilities(acc, wsum, ops)},
        dtype="int32",
        weight=window_2d(TILE, "cosine", halo=HALO),
    )
    got, boxes = drain(asm, tiles, lambda i, win: values, order=order)
    assert len(boxes) == asm.total_chunks and (paste(got["p"], (h, w, 2), np.uint8) == 128).all()
    whole_chunk = CHUNK * CHUNK * (2 + 1) * 4  # int32 sums of 2 channels and the weights
    edge_chunks = 2 * (h // CHUNK)  # both chunk columns beside the stripe edge wait for the second stripe
    # without the thin strips the edge alone would hold edge_chunks whole chunks of sums
    assert asm.peak_bytes < 0.5 * edge_chunks * whole_chunk
