"""Chunk states of the scan: each chunk's local state (forward) or gradient carry (backward), and the sequential
combine that turns them into the state entering every chunk.

The sequence is cut into chunks of ``CL`` positions so that batch 1 on a 16k-token tile still gives thousands of
programs. With several chunks, ``fwd.launch_chunk_state`` (or ``bwd.launch_grad_chunk_state``) scans each chunk from
a zero state, ``_chunk_combine_kernel`` walks the chunks in scan order, and the output pass rescans each chunk from
its entering state. This module sits above ``fwd`` and ``bwd`` (they never import each other).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import new_buffer

# ----------------------------------------------------------------------------------------------- kernels


@triton.jit
def _chunk_combine_kernel(p_decay, p_state, B, n_chunks, EN, BLK: tl.constexpr, FLIP: tl.constexpr):
    """Grid (cdiv(E*N, BLK), ND * B). In place: p_state[c] (a chunk's local end state) becomes the state entering
    chunk c in scan order. Direction 0 walks chunks upwards, direction 1 downwards (swapped when FLIP: the
    gradient carry runs against the scan). The last chunk of the walk feeds no chunk: never read (with SKIP_LAST
    nobody computes it)."""
    i_blk = tl.program_id(0).to(tl.int64)
    i_db = tl.program_id(1).to(tl.int64)
    d = i_db // B
    desc = (d == 1) != FLIP
    o = i_blk * BLK + tl.arange(0, BLK)
    m = o < EN
    base = i_db * n_chunks * EN
    h = tl.zeros([BLK], tl.float32)
    for k in range(n_chunks):
        c = tl.where(desc, n_chunks - 1 - k, k).to(tl.int64)
        off = base + c * EN + o
        m_k = m & (k + 1 < n_chunks)
        dec = tl.load(p_decay + off, mask=m_k, other=1.0)
        local = tl.load(p_state + off, mask=m_k, other=0.0)
        tl.store(p_state + off, h, mask=m)
        h = dec * h + local


# ----------------------------------------------------------------------------------------------- launchers


def chunk_states(src: dict, cfg: dict, *, reverse_carry: bool = False, grad: bool = False) -> torch.Tensor:
    """State entering every chunk, [ND, B, n_chunks, E, N] fp32 (forward states, or with ``grad`` the gradient
    carried into each chunk from the chunks after it in scan order)."""
    decay, state = local_chunk_states(src, cfg, grad=grad)
    combine_chunks(decay, state, reverse_carry=reverse_carry)
    return state


def local_chunk_states(src: dict, cfg: dict, *, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Each chunk's total decay and its local end state (or gradient carry with ``grad``), [ND, B, n_chunks, E, N]."""
    from .bwd import launch_grad_chunk_state
    from .fwd import launch_chunk_state

    nd, batch, n_chunks, channels, n = src["ND"], src["B"], cfg["n_chunks"], src["E"], src["N"]
    decay = new_buffer(src["u"], (nd, batch, n_chunks, channels, n), torch.float32)
    state = new_buffer(decay, decay.shape)
    (launch_grad_chunk_state if grad else launch_chunk_state)(src, cfg, decay, state)
    return decay, state


def combine_chunks(decay: torch.Tensor, state: torch.Tensor, *, reverse_carry: bool = False) -> None:
    """In place: local chunk states -> the state entering each chunk (a sequential walk over the chunks)."""
    nd, batch, n_chunks, channels, n = state.shape
    block = 256
    grid = (triton.cdiv(channels * n, block), nd * batch)
    _chunk_combine_kernel[grid](decay, state, batch, n_chunks, channels * n, BLK=block, FLIP=reverse_carry)


def states_for(src: dict, cfg: dict, h_in: torch.Tensor | None, new_cfg: dict) -> torch.Tensor | None:
    """The states entering ``new_cfg``'s chunks (the backward's), from the forward's ``h_in`` at ``cfg``'s chunks:
    None for one chunk; the same; every k-th when a new chunk is k old ones; else recomputed (chunk states and
    combine with the forward's tiles at the new chunk length)."""
    if new_cfg["n_chunks"] == 1:
        return None
    if new_cfg["chunk_len"] == cfg["chunk_len"]:
        return h_in
    if h_in is not None and new_cfg["chunk_len"] % cfg["chunk_len"] == 0:
        # new chunk c spans old chunks [c k, min(c k + k, n_old)): direction 0 enters at the first, 1 at the last
        k, n_old = new_cfg["chunk_len"] // cfg["chunk_len"], h_in.shape[2]
        first = torch.arange(new_cfg["n_chunks"], device=h_in.device) * k
        enter = (first, torch.clamp(first + k, max=n_old) - 1)
        return torch.stack([h_in[d].index_select(1, enter[d]) for d in range(h_in.shape[0])])
    chunking = {k: new_cfg[k] for k in ("chunk_len", "n_chunks")}
    return chunk_states(src, cfg | chunking | {"block_t": min(cfg["block_t"], new_cfg["chunk_len"])})
