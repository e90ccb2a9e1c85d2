"""Triton building blocks shared by the scan kernels (forward, backward, chunk states) of every op.

Layout conventions (every kernel):
    tokens are (B, L, channels) with the channel stride 1, exactly as ``in_proj`` writes them; a tile is ``T``
    consecutive positions of one chunk *in scan order* (ascending for direction 0, descending for direction 1),
    so the same associative scan along axis 0 serves both directions without flipped copies.
    Per-direction parameters are stacked on a leading axis of size ND (1 or 2).
    Positions outside [chunk start, chunk end) are masked: delta = 0 there, so a = exp(0) = 1 and b = 0 and a
    padded step is an exact identity of the state.
State tiles have one of two orientations, chosen by the constexpr ``ELAST`` of every scan kernel:
    ELAST=False: [T, BE, NP] (N fastest). Triton gives N to 16 lanes, so every sum over N (y = C.h, gB, ddelta)
        is a 4-level shuffle tree per value;
    ELAST=True: [T, NP, BE] (channels fastest). With BE = 32 x num_warps each thread owns one channel and holds
        its T x N states in registers: sums over N are in-thread adds, sums over channels (dB, dC) go across lanes.
    The helpers ``bc_te``, ``bc_tn``, ``bc_s``, ``sum_n``, ``sum_e``, ``state_offsets`` hide the orientation.
All address arithmetic is int64 (program ids are widened first), so offsets past 2**31 are safe.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)

# 2**f ~ 1 + f (P1 + f (P2 + ...)) on f in [-0.5, 0.5]: minimax in relative error with p(0) = 1 exactly, degree 5,
# max relative error 1.9e-7 evaluated in fp32 (MUFU's ex2.approx: about 2 ulp)
_P1 = tl.constexpr(0.6931470036506653)
_P2 = tl.constexpr(0.24022242426872253)
_P3 = tl.constexpr(0.05550733581185341)
_P4 = tl.constexpr(0.009671512991189957)
_P5 = tl.constexpr(0.001326472731307149)
_ROUND = tl.constexpr(12582912.0)  # 1.5 * 2**23: x + _ROUND rounds x to an integer held in the low mantissa bits


@triton.jit
def exp2_poly(x):
    """2**x on the FMA pipe (no MUFU): Cody-Waite reduction x = n + f, |f| <= 1/2, a degree-5 polynomial for 2**f
    and n added to its exponent bits. For x in [-126, 126]; below -126 the result is 0 (as MUFU's ftz gives), so
    x = 0 gives exactly 1. Rounding by the 1.5 * 2**23 trick: no float-to-int conversion (a quarter-rate
    instruction like ex2 itself)."""
    xc = tl.minimum(tl.maximum(x, -126.0), 126.0)
    t = xc + _ROUND
    f = xc - (t - _ROUND)
    p = f * (_P1 + f * (_P2 + f * (_P3 + f * (_P4 + f * _P5)))) + 1.0
    bits = tl.cast(p, tl.int32, bitcast=True) + (tl.cast(t, tl.int32, bitcast=True) << 23)
    return tl.where(x < -126.0, 0.0, tl.cast(bits, tl.float32, bitcast=True))


@triton.jit
def decay(x, j, EXP_POLY: tl.constexpr):
    """exp2 of a tile of exponents: on the MUFU unit (EXP_POLY=0), with the FMA polynomial (EXP_POLY=1), or with
    the polynomial for every EXP_POLY-th tile j only, so that warps at different tiles keep both pipes busy."""
    if EXP_POLY == 0:
        r = tl.exp2(x)
    elif EXP_POLY == 1:
        r = exp2_poly(x)
    else:
        if j % EXP_POLY == EXP_POLY - 1:
            r = exp2_poly(x)
        else:
            r = tl.exp2(x)
    return r


@triton.jit
def bc_te(x, ELAST: tl.constexpr):
    """A [T, BE] tile broadcast against the state tile: [T, 1, BE] (ELAST) or [T, BE, 1]."""
    if ELAST:
        r = x[:, None, :]
    else:
        r = x[:, :, None]
    return r


@triton.jit
def bc_tn(x, ELAST: tl.constexpr):
    """A [T, NP] tile (B or C rows) broadcast against the state tile: [T, NP, 1] (ELAST) or [T, 1, NP]."""
    if ELAST:
        r = x[:, :, None]
    else:
        r = x[:, None, :]
    return r


@triton.jit
def bc_s(x):
    """A per-channel-and-state tile ([NP, BE] or [BE, NP], already oriented) broadcast along T."""
    return x[None, :, :]


@triton.jit
def bc_e(v, ELAST: tl.constexpr):
    """A [BE] vector broadcast against an oriented state tile."""
    if ELAST:
        r = v[None, :]
    else:
        r = v[:, None]
    return r


@triton.jit
def bc_n(v, ELAST: tl.constexpr):
    """A [NP] vector broadcast against an oriented state tile."""
    if ELAST:
        r = v[:, None]
    else:
        r = v[None, :]
    return r


@triton.jit
def sum_n(x, ELAST: tl.constexpr):
    """[T, ., .] -> [T, BE]: sum over the state axis."""
    if ELAST:
        r = tl.sum(x, axis=1)
    else:
        r = tl.sum(x, axis=2)
    return r


@triton.jit
def sum_e(x, ELAST: tl.constexpr):
    """[T, ., .] -> [T, NP]: sum over the channel axis."""
    if ELAST:
        r = tl.sum(x, axis=2)
    else:
        r = tl.sum(x, axis=1)
    return r


@triton.jit
def sum_e_dot(x, T: tl.constexpr, NP: tl.constexpr, BE: tl.constexpr, ELAST: tl.constexpr, PRECISION: tl.constexpr):
    """[T, ., .] -> [T, NP]: the sum over channels as a GEMM with a block of ones on the tensor cores (instead of a
    shuffle tree across the lanes that hold the channels); every output column is the row sum, the max takes one
    exactly. PRECISION: "tf32x3" keeps fp32 accuracy, "tf32" is about 1e-3 relative."""
    if ELAST:
        xc = x
    else:
        xc = tl.permute(x, (0, 2, 1))
    s = tl.dot(tl.reshape(xc, [T * NP, BE]), tl.full([BE, 16], 1.0, tl.float32), input_precision=PRECISION)
    return tl.reshape(tl.max(s, axis=1), [T, NP])


@triton.jit
def state_offsets(base, o_e, o_n, N, ELAST: tl.constexpr):
    """Offsets base + e * N + n of an (.., E, N) state array, as an oriented state tile."""
    return base + bc_e(o_e, ELAST) * N + bc_n(o_n, ELAST)


@triton.jit
def state_mask(m_e, m_n, ELAST: tl.constexpr):
    """Mask of an oriented state tile."""
    return bc_e(m_e, ELAST) & bc_n(m_n, ELAST)


@triton.jit
def scratch_offsets(base, BE: tl.constexpr, NP: tl.constexpr, ELAST: tl.constexpr):
    """Offsets of one parked [BE x NP] state tile in a scratch buffer, laid out so that lanes write consecutive
    addresses (channels fastest with ELAST, states fastest otherwise)."""
    o_b = tl.arange(0, BE)
    o_n = tl.arange(0, NP)
    if ELAST:
        r = base + o_n[:, None] * BE + o_b[None, :]
    else:
        r = base + o_b[:, None] * NP + o_n[None, :]
    return r


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
def reverse_scan(a, b, FLIP: tl.constexpr):
    """(a, b) scanned with ``scan_combine`` from the end of axis 0. Triton 3.6 lowers ``reverse=True`` with a
    five-level butterfly across all 32 lanes for every value even when the axis lies in registers (the largest
    source of shuffles in the backward, compile_report); with FLIP the rows are flipped instead (xor steps inside
    each thread), scanned forwards and flipped back: the combine sees the same operands in the same order."""
    if FLIP:
        ra, rb = tl.associative_scan((tl.flip(a, 0), tl.flip(b, 0)), 0, scan_combine)
        ra = tl.flip(ra, 0)
        rb = tl.flip(rb, 0)
    else:
        ra, rb = tl.associative_scan((a, b), 0, scan_combine, reverse=True)
    return ra, rb


@triton.jit
def reverse_grad_scan(a, c, FLIP: tl.constexpr):
    """The gradient scan g[t] = c[t] + a[t+1] g[t+1] inside a tile (``grad_combine``, from the end of axis 0):
    returns (q, f) with g = f + q * (gradient entering from the next tile). FLIP as in ``reverse_scan``."""
    ones = tl.full(a.shape, 1.0, tl.float32)
    if FLIP:
        _, q, f = tl.associative_scan((tl.flip(a, 0), ones, tl.flip(c, 0)), 0, grad_combine)
        q = tl.flip(q, 0)
        f = tl.flip(f, 0)
    else:
        _, q, f = tl.associative_scan((a, ones, c), 0, grad_combine, reverse=True)
    return q, f


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
def load_params(
    p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ: tl.constexpr, ELAST: tl.constexpr
):
    """Per-direction parameters of one channel block: A (oriented: [NP, BE] with ELAST, else [BE, NP]), D [BE],
    w_dt [BE, RP], dt bias [BE]."""
    A = tl.load(p_A + state_offsets(d * E * N, o_e, o_n, N, ELAST), mask=state_mask(m_e, m_n, ELAST), other=0.0)
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
    "bc_e",
    "bc_n",
    "bc_s",
    "bc_te",
    "bc_tn",
    "decay",
    "exp2_poly",
    "first_row",
    "grad_combine",
    "load_delta",
    "load_params",
    "load_rows",
    "load_u",
    "reverse_grad_scan",
    "reverse_scan",
    "scan_combine",
    "scratch_offsets",
    "softplus",
    "state_mask",
    "state_offsets",
    "sum_e",
    "sum_e_dot",
    "sum_n",
    "tile_positions",
    "triton",
]
