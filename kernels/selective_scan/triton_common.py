"""Triton building blocks shared by the forward and backward scan kernels.

Layout conventions (every kernel):
    tokens are (B, L, channels) with the channel stride 1, exactly as ``in_proj`` writes them; a tile is ``T``
    consecutive positions of one chunk *in scan order* (ascending for direction 0, descending for direction 1),
    so the same associative scan along axis 0 serves both directions without flipped copies.
    Per-direction parameters are stacked on a leading axis of size ND (1 or 2).
    Positions outside [chunk start, chunk end) are masked: delta = 0 there, so a = exp(0) = 1 and b = 0 and a
    padded step is an exact identity of the state.
All address arithmetic is int64 (program ids are widened first), so offsets past 2**31 are safe.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def softplus(x):
    """PyTorch's softplus (threshold 20): exact pass-through above 20, log(1 + e^x) below."""
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def scan_combine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1 then h -> a2 h + b2 (1 is the earlier step in scan order)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def grad_combine(la1, q1, f1, la2, q2, f2):
    """Reverse scan of g[t] = c[t] + a[t+1] g[t+1] without shifting a by one step in registers.

    A segment is summarised by (la: the a of its earliest step, q: product of the other a's, f: g at its earliest
    step with no gradient entering from later). With reverse=True, 1 is the later segment.
    """
    w = q2 * la1
    return la2, w * q1, f2 + w * f1


@triton.jit
def first_row(x, o_t, ROW: tl.constexpr):
    """x[ROW] of a [T, ...] register tile (a masked sum: registers cannot be indexed)."""
    return tl.sum(tl.where((o_t == ROW)[:, None, None], x, 0.0), axis=0)


@triton.jit
def tile_positions(c0, c1, j, o_t, d, T: tl.constexpr):
    """Positions of tile j of chunk [c0, c1) in scan order of direction d, and their validity mask."""
    start = c0 + d * (c1 - 1 - c0)
    pos = start + (1 - 2 * d) * (j * T + o_t)
    return pos, (pos >= c0) & (pos < c1)


@triton.jit
def load_u(
    p_x,
    p_cw,
    p_cb,
    i_b,
    pos,
    m_t,
    o_e,
    m_e,
    d,
    L,
    E,
    s_xb,
    s_xl,
    T: tl.constexpr,
    BE: tl.constexpr,
    K: tl.constexpr,
    CONV: tl.constexpr,
):
    """[T, BE] scan input u: silu(conv1d(x)) recomputed from x (taps behind for d=0, ahead for d=1), or u itself.

    Returns (u, pre) where pre is the conv output before SiLU (u itself when CONV is off).
    """
    base = p_x + i_b * s_xb
    if CONV:
        sgn = 1 - 2 * d
        bias = tl.load(p_cb + d * E + o_e, mask=m_e, other=0.0).to(tl.float32)
        pre = tl.zeros([T, BE], tl.float32) + bias[None, :]
        for k in tl.static_range(K):
            q = pos - sgn * (K - 1 - k)
            m_q = (q >= 0) & (q < L)
            w = tl.load(p_cw + (d * E + o_e) * K + k, mask=m_e, other=0.0).to(tl.float32)
            xk = tl.load(base + q[:, None] * s_xl + o_e[None, :], mask=m_q[:, None] & m_e[None, :], other=0.0)
            pre += w[None, :] * xk.to(tl.float32)
        u = pre * tl.sigmoid(pre)
    else:
        pre = tl.load(base + pos[:, None] * s_xl + o_e[None, :], mask=m_t[:, None] & m_e[None, :], other=0.0)
        pre = pre.to(tl.float32)
        u = pre
    return u, pre


@triton.jit
def load_delta(
    p_dt,
    w_dt,
    bias,
    i_b,
    pos,
    m_t,
    o_e,
    m_e,
    o_r,
    m_r,
    d,
    s_dtd,
    s_dtb,
    s_dtl,
    DTPROJ: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):
    """[T, BE] step sizes delta (0 on masked rows), the pre-softplus value, and the [T, RP] low-rank dt rows.

    With DTPROJ the kernel does the dt projection itself: delta_raw = dt_rows @ w_dt^T (rank R, w_dt: [BE, RP]).
    """
    base = p_dt + d * s_dtd + i_b * s_dtb + pos[:, None] * s_dtl
    if DTPROJ:
        dtr = tl.load(base + o_r[None, :], mask=m_t[:, None] & m_r[None, :], other=0.0).to(tl.float32)  # [T, RP]
        raw = tl.sum(dtr[:, None, :] * w_dt[None, :, :], axis=2)  # [T, BE]
    else:
        raw = tl.load(base + o_e[None, :], mask=m_t[:, None] & m_e[None, :], other=0.0).to(tl.float32)
        dtr = raw
    if HAS_BIAS:
        raw += bias[None, :]
    if SOFTPLUS:
        delta = softplus(raw)
    else:
        delta = raw
    delta = tl.where(m_t[:, None] & m_e[None, :], delta, 0.0)
    return delta, raw, dtr


@triton.jit
def load_rows(p, i_b, pos, m_t, o_c, m_c, d, s_d, s_b, s_l):
    """[T, C] rows of a (.., B, L, C) tensor with channel stride 1 (B_t, C_t, z, dout...), zero where masked."""
    ptrs = p + d * s_d + i_b * s_b + pos[:, None] * s_l + o_c[None, :]
    return tl.load(ptrs, mask=m_t[:, None] & m_c[None, :], other=0.0).to(tl.float32)


@triton.jit
def load_params(p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ: tl.constexpr):
    """Per-direction parameters of one channel block: A [BE, NP], D [BE], w_dt [BE, RP], dt bias [BE]."""
    A = tl.load(p_A + (d * E + o_e[:, None]) * N + o_n[None, :], mask=m_e[:, None] & m_n[None, :], other=0.0)
    Dv = tl.load(p_D + d * E + o_e, mask=m_e, other=0.0).to(tl.float32)
    bias = tl.load(p_dtb + d * E + o_e, mask=m_e, other=0.0).to(tl.float32)
    if DTPROJ:
        w_dt = tl.load(p_dtw + (d * E + o_e[:, None]) * R + o_r[None, :], mask=m_e[:, None] & m_r[None, :], other=0.0)
        w_dt = w_dt.to(tl.float32)
    else:
        w_dt = bias
    return A.to(tl.float32), Dv, w_dt, bias


__all__ = [
    "LOG2E",
    "first_row",
    "grad_combine",
    "load_delta",
    "load_params",
    "load_rows",
    "load_u",
    "scan_combine",
    "softplus",
    "tile_positions",
    "triton",
]
