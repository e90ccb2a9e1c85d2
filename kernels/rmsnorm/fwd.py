"""Triton forward of the residual add + RMSNorm: rows of D <= 4096 channels, one block of rows per program."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import new_buffer, note


@triton.jit(do_not_specialize=["M"])
def _add_rmsnorm_fwd_kernel(p_h, p_r, p_w, p_y, p_rout, M, D, eps, HAS_RES: tl.constexpr, BM: tl.constexpr,
                            BD: tl.constexpr):  # fmt: skip
    """Grid (cdiv(M, BM),). Rows of hidden, residual, y, r_out contiguous (stride D); r_out and math in fp32."""
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    cols = tl.arange(0, BD)
    m = (rows < M)[:, None] & (cols < D)[None, :]
    o = rows[:, None] * D + cols[None, :]
    x = tl.load(p_h + o, mask=m, other=0.0).to(tl.float32)
    if HAS_RES:
        x += tl.load(p_r + o, mask=m, other=0.0)
    tl.store(p_rout + o, x, mask=m)
    inv = tl.rsqrt(tl.sum(x * x, axis=1) / D + eps)  # [BM]
    w = tl.load(p_w + cols, mask=cols < D, other=0.0).to(tl.float32)
    tl.store(p_y + o, (x * inv[:, None] * w[None, :]).to(p_y.dtype.element_ty), mask=m)


def add_rmsnorm_forward(hidden, residual, weight, eps: float, y=None, r_out=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y in weight's dtype, r_out float32), both shaped like hidden; inputs contiguous with the channel last.
    ``y`` / ``r_out``: where to write (hidden and residual themselves are allowed: each program reads its rows
    before it writes them); new buffers when None."""
    d = hidden.shape[-1]
    rows = hidden.numel() // max(d, 1)
    y = new_buffer(hidden, hidden.shape, weight.dtype) if y is None else y
    r_out = new_buffer(hidden, hidden.shape, torch.float32) if r_out is None else r_out
    block_d = triton.next_power_of_2(d)
    block_m = max(1, 2048 // block_d)
    compiled = _add_rmsnorm_fwd_kernel[(triton.cdiv(rows, block_m),)](
        hidden, residual if residual is not None else hidden, weight, y, r_out, rows, d, float(eps),
        HAS_RES=residual is not None, BM=block_m, BD=block_d, num_warps=4,
    )  # fmt: skip
    note("add_rmsnorm_fwd_kernel", compiled)
    return y, r_out
