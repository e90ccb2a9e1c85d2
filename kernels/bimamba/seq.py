"""The sequential forward scan of the bidirectional Vim v2 mixer (inference): one thread per channel and direction.

Each thread owns one (channel, direction) column and keeps its N <= 16 states in registers as 16 named values
(``h0`` .. ``h15``), walking its chunk one time step per loop iteration: per step it reads x and z at its position
(coalesced over the channels of a warp), the dt row | B | C of its direction (every lane of a warp reads the same
addresses: broadcast loads), and does the conv (K = 4 taps sliding in registers, so x is read once per direction),
SiLU, the rank-R dt projection, softplus, N exponentials and state updates, C . h, the D skip and the silu(z) gate.
Both directions of a chunk run in one program (columns [0, BE) direction 0, [BE, 2 BE) direction 1) from the
chunk's two ends: steps before the middle store their partial output at positions the other direction has not
reached; after a barrier at the middle each adds its own to what the other stored: the two-direction average with
no flipped copy and no second pass. Named states rather than an [N, channels] tile: Triton's coalescing spreads a
contiguous state axis over 4 to 16 lanes (read off the TTGIR), which turns every sum over N into shuffles; with
named states every sum over N is in-thread.

When the batch is too small to fill the GPU the sequence is cut into chunks: a first pass of the same kernel
without outputs writes each chunk's end state and total decay, ``selective_scan.chunk_states.combine_chunks``
turns them into entering states, and the output pass starts each chunk from its entering state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import interpreted, new_buffer, note
from ..common.triton_helpers import LOG2E, exp2_poly, softplus

MAX_STATE = 16  # N and R this kernel takes (named registers); larger models use the chunked associative-scan path

# ----------------------------------------------------------------------------------------------- helpers


@triton.jit
def _ld(p, i: tl.constexpr, LIM: tl.constexpr, m, zero, EVEN: tl.constexpr):
    """p[i] of every column ([2BE] pointers) as fp32; ``zero`` (no load) at and beyond LIM."""
    if i < LIM:
        if EVEN:
            v = tl.load(p + i).to(tl.float32)
        else:
            v = tl.load(p + i, mask=m, other=0.0).to(tl.float32)
    else:
        v = zero
    return v


@triton.jit
def _load4(p, k: tl.constexpr, LIM: tl.constexpr, m, zero, EVEN: tl.constexpr, VEC: tl.constexpr):
    """p[k], .., p[k + 3] of every column, ``zero`` at and beyond LIM. VEC: one 16-byte load (``ld.v4``, GPU only;
    p + k 16-byte aligned and k + 3 < LIM) instead of four 4-byte ones; every lane of a warp reads the same row."""
    if VEC and k + 3 < LIM:
        v0, v1, v2, v3 = tl.inline_asm_elementwise(
            "ld.global.v4.f32 {$0, $1, $2, $3}, [$4];",
            "=f,=f,=f,=f,l",
            [p + k],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32),
            is_pure=True,
            pack=1,
        )
    else:
        v0 = _ld(p, k, LIM, m, zero, EVEN)
        v1 = _ld(p, k + 1, LIM, m, zero, EVEN)
        v2 = _ld(p, k + 2, LIM, m, zero, EVEN)
        v3 = _ld(p, k + 3, LIM, m, zero, EVEN)
    return v0, v1, v2, v3


@triton.jit
def _param4(p, pe, stride, k: tl.constexpr, LIM: tl.constexpr, m, zero):
    """Columns' parameters p[pe * stride + k .. + 3] (A rows, dt_proj_w rows, conv taps), ``zero`` beyond LIM."""
    return _load4(p + pe * stride, k, LIM, m, zero, False, False)


@triton.jit
def _exp2(x, POLY: tl.constexpr):
    """2**x on the MUFU unit, or (POLY) with the FMA-pipe polynomial of triton_helpers."""
    if POLY:
        r = exp2_poly(x)
    else:
        r = tl.exp2(x)
    return r


@triton.jit
def _dot4(r0, r1, r2, r3, w0, w1, w2, w3, k: tl.constexpr, R: tl.constexpr):
    """dt entries k..k+3 of a row times the column's dt_proj_w entries (part of the rank-R projection)."""
    acc = r0 * w0
    if k + 1 < R:
        acc += r1 * w1
    if k + 2 < R:
        acc += r2 * w2
    if k + 3 < R:
        acc += r3 * w3
    if k >= R:
        acc = r0 * 0.0
    return acc


@triton.jit
def _upd(h, a, b, delta, du, i: tl.constexpr, N: tl.constexpr, POLY: tl.constexpr):
    """One state: h = 2**(delta a) h + du b (nothing at and beyond N)."""
    if i < N:
        h = _exp2(delta * a, POLY) * h + du * b
    return h


@triton.jit
def _out4(h0, h1, h2, h3, q0, q1, q2, q3, k: tl.constexpr, N: tl.constexpr):
    """C . h over states k..k+3 (nothing beyond N)."""
    acc = h0 * q0
    if k + 1 < N:
        acc += h1 * q1
    if k + 2 < N:
        acc += h2 * q2
    if k + 3 < N:
        acc += h3 * q3
    if k >= N:
        acc = h0 * 0.0
    return acc


# fmt: off
@triton.jit
def _row16(p, LIM: tl.constexpr, m, zero, EVEN: tl.constexpr, VEC: tl.constexpr):
    """p[0], .., p[15] of every column's row (``zero`` at and beyond LIM)."""
    v0, v1, v2, v3 = _load4(p, 0, LIM, m, zero, EVEN, VEC)
    v4, v5, v6, v7 = _load4(p, 4, LIM, m, zero, EVEN, VEC)
    v8, v9, v10, v11 = _load4(p, 8, LIM, m, zero, EVEN, VEC)
    v12, v13, v14, v15 = _load4(p, 12, LIM, m, zero, EVEN, VEC)
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15


@triton.jit
def _loads(p_xc, p_zc, p_row0, pos, s_xl, m, zero, N: tl.constexpr, R: tl.constexpr, EVEN: tl.constexpr,
           VEC: tl.constexpr, HAS_Y: tl.constexpr):
    """Everything one step reads, for every column at its position ``pos``: x, z, and its direction's dt row,
    B row and C row of x_dbl (every lane of a warp reads the same row: broadcast loads)."""
    row = p_row0 + pos * (R + 2 * N)
    if EVEN:
        xv = tl.load(p_xc + pos * s_xl).to(tl.float32)
    else:
        xv = tl.load(p_xc + pos * s_xl, mask=m, other=0.0).to(tl.float32)
    r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15 = _row16(row, R, m, zero, EVEN, VEC)
    b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = _row16(row + R, N, m, zero, EVEN, VEC)
    if HAS_Y:
        if EVEN:
            zv = tl.load(p_zc + pos * s_xl).to(tl.float32)
        else:
            zv = tl.load(p_zc + pos * s_xl, mask=m, other=0.0).to(tl.float32)
        q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = _row16(row + R + N, N, m, zero, EVEN, \
            VEC)
    else:
        zv = zero
        q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = zero, zero, zero, zero, zero, zero, \
            zero, zero, zero, zero, zero, zero, zero, zero, zero, zero
    return xv, zv, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, \
        b7, b8, b9, b10, b11, b12, b13, b14, b15, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, \
        q15

# fmt: on


# fmt: off
@triton.jit
def _step(
    h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15,
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
    r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15,
    b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
    xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N: tl.constexpr, R: tl.constexpr, NPOLY: tl.constexpr,
):
    # fmt: on
    """One time step of every column: conv over the window, SiLU, delta = softplus(dt_proj . dt row + bias), and
    the N state updates h = 2**(delta A log2 e) h + delta u B. Returns the states, u and delta."""
    pre = cb + cw0 * xm3 + cw1 * xm2 + cw2 * xm1 + cw3 * xv
    u = pre * tl.sigmoid(pre)
    raw = bias + _dot4(r0, r1, r2, r3, w0, w1, w2, w3, 0, R) + _dot4(r4, r5, r6, r7, w4, w5, w6, w7, 4, R)
    raw += _dot4(r8, r9, r10, r11, w8, w9, w10, w11, 8, R) + _dot4(r12, r13, r14, r15, w12, w13, w14, w15, 12, R)
    delta = softplus(raw)
    du = delta * u
    h0 = _upd(h0, a0, b0, delta, du, 0, N, 0 < NPOLY)
    h1 = _upd(h1, a1, b1, delta, du, 1, N, 1 < NPOLY)
    h2 = _upd(h2, a2, b2, delta, du, 2, N, 2 < NPOLY)
    h3 = _upd(h3, a3, b3, delta, du, 3, N, 3 < NPOLY)
    h4 = _upd(h4, a4, b4, delta, du, 4, N, 4 < NPOLY)
    h5 = _upd(h5, a5, b5, delta, du, 5, N, 5 < NPOLY)
    h6 = _upd(h6, a6, b6, delta, du, 6, N, 6 < NPOLY)
    h7 = _upd(h7, a7, b7, delta, du, 7, N, 7 < NPOLY)
    h8 = _upd(h8, a8, b8, delta, du, 8, N, 8 < NPOLY)
    h9 = _upd(h9, a9, b9, delta, du, 9, N, 9 < NPOLY)
    h10 = _upd(h10, a10, b10, delta, du, 10, N, 10 < NPOLY)
    h11 = _upd(h11, a11, b11, delta, du, 11, N, 11 < NPOLY)
    h12 = _upd(h12, a12, b12, delta, du, 12, N, 12 < NPOLY)
    h13 = _upd(h13, a13, b13, delta, du, 13, N, 13 < NPOLY)
    h14 = _upd(h14, a14, b14, delta, du, 14, N, 14 < NPOLY)
    h15 = _upd(h15, a15, b15, delta, du, 15, N, 15 < NPOLY)
    return h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta


# fmt: off
@triton.jit
def _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, q6, q7, q8, \
    q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N: tl.constexpr):
    # fmt: on
    """This direction's share of y: (C . h + D u) silu(z) / 2."""
    y = _out4(h0, h1, h2, h3, q0, q1, q2, q3, 0, N) + _out4(h4, h5, h6, h7, q4, q5, q6, q7, 4, N)
    y += _out4(h8, h9, h10, h11, q8, q9, q10, q11, 8, N) + _out4(h12, h13, h14, h15, q12, q13, q14, q15, 12, N)
    return (y + Dv * u) * (zv * tl.sigmoid(zv)) * 0.5


@triton.jit
def _store_state4(p, k: tl.constexpr, s_n, N: tl.constexpr, m, v0, v1, v2, v3):
    """Entries k..k+3 (those below N) of every column of a [.., N, E] state array at stride s_n."""
    if k < N:
        tl.store(p + k * s_n, v0, mask=m)
    if k + 1 < N:
        tl.store(p + (k + 1) * s_n, v1, mask=m)
    if k + 2 < N:
        tl.store(p + (k + 2) * s_n, v2, mask=m)
    if k + 3 < N:
        tl.store(p + (k + 3) * s_n, v3, mask=m)


@triton.jit
def _load_state4(p, k: tl.constexpr, s_n, N: tl.constexpr, m, zero):
    """Entries k..k+3 of every column of a [.., N, E] state array (``zero`` beyond N)."""
    v0 = _ld(p + k * s_n, 0, N - k, m, zero, False)
    v1 = _ld(p + (k + 1) * s_n, 0, N - k - 1, m, zero, False)
    v2 = _ld(p + (k + 2) * s_n, 0, N - k - 2, m, zero, False)
    v3 = _ld(p + (k + 3) * s_n, 0, N - k - 3, m, zero, False)
    return v0, v1, v2, v3


# ----------------------------------------------------------------------------------------------- kernel


@triton.jit(do_not_specialize=["B", "L", "n_chunks", "s_xb", "s_yb", "CL"])
def _seq_scan_kernel(
    p_x,
    p_z,
    p_dbl,
    p_y,
    p_hin,
    p_hout,
    p_decay,
    p_cw,
    p_cb,
    p_dtw,
    p_dtb,
    p_A,
    p_D,
    B,
    L,
    E,
    n_chunks,
    s_xb,
    s_xl,
    s_yb,
    s_yl,
    CL,
    N: tl.constexpr,
    R: tl.constexpr,
    BE: tl.constexpr,
    EVEN: tl.constexpr,
    VEC: tl.constexpr,
    HAS_Y: tl.constexpr,
    HAS_INIT: tl.constexpr,
    NPOLY: tl.constexpr,
):
    """Grid (cdiv(E, BE), n_chunks, B). x, z: (B, L, E) views with channel stride 1; p_dbl: x_dbl [2, B, L, P]
    (dt rows | B | C, P = R + 2N); A (A itself, negative) [2, E, N]; dt_proj_w [2, E, R]; conv weights [2, E, 4];
    dt bias, D, conv bias [2, E]; N, R <= 16.
    HAS_Y: y[b, t, e] = sum_d (C_t . h_t + D u_t) silu(z_t) / 2 over the chunk, from the entering states p_hin
    [2, B, n_chunks, N, E] (HAS_INIT) or zero. Without HAS_Y (the chunk-state pass): each chunk's end state from
    zero into p_hout and its total decay exp(A sum delta) into p_decay (both [2, B, n_chunks, N, E]).
    NPOLY: states below it take their exponential on the FMA pipe (exp2_poly) instead of MUFU. EVEN: E % BE == 0
    (no channel masks). VEC: 16-byte loads of the x_dbl rows (R and N multiples of 4; GPU only)."""

    i_e = tl.program_id(0).to(tl.int64)
    i_c = tl.program_id(1).to(tl.int64)
    i_b = tl.program_id(2).to(tl.int64)
    o_j = tl.arange(0, 2 * BE)
    is1 = o_j >= BE
    d_j = is1.to(tl.int64)
    o_e = i_e * BE + o_j % BE
    m_e = o_e < E
    pe = d_j * E + o_e  # every column's row in the stacked [2, E, ...] parameters
    zero = tl.zeros([2 * BE], tl.float32)
    a0, a1, a2, a3 = _param4(p_A, pe, N, 0, N, m_e, zero)
    a4, a5, a6, a7 = _param4(p_A, pe, N, 4, N, m_e, zero)
    a8, a9, a10, a11 = _param4(p_A, pe, N, 8, N, m_e, zero)
    a12, a13, a14, a15 = _param4(p_A, pe, N, 12, N, m_e, zero)
    a0, a1, a2, a3 = a0 * LOG2E, a1 * LOG2E, a2 * LOG2E, a3 * LOG2E
    a4, a5, a6, a7 = a4 * LOG2E, a5 * LOG2E, a6 * LOG2E, a7 * LOG2E
    a8, a9, a10, a11 = a8 * LOG2E, a9 * LOG2E, a10 * LOG2E, a11 * LOG2E
    a12, a13, a14, a15 = a12 * LOG2E, a13 * LOG2E, a14 * LOG2E, a15 * LOG2E
    w0, w1, w2, w3 = _param4(p_dtw, pe, R, 0, R, m_e, zero)
    w4, w5, w6, w7 = _param4(p_dtw, pe, R, 4, R, m_e, zero)
    w8, w9, w10, w11 = _param4(p_dtw, pe, R, 8, R, m_e, zero)
    w12, w13, w14, w15 = _param4(p_dtw, pe, R, 12, R, m_e, zero)
    cw0, cw1, cw2, cw3 = _param4(p_cw, pe, 4, 0, 4, m_e, zero)
    bias = tl.load(p_dtb + pe, mask=m_e, other=0.0)
    Dv = tl.load(p_D + pe, mask=m_e, other=0.0)
    cb = tl.load(p_cb + pe, mask=m_e, other=0.0)
    t0 = i_c * CL
    t1 = tl.minimum(t0 + CL, L)
    n = t1 - t0
    # the conv window: x at the three positions before the chunk in every column's scan order
    p_xc = p_x + i_b * s_xb + o_e
    q1 = tl.where(is1, t1, t0 - 1)
    q2 = tl.where(is1, t1 + 1, t0 - 2)
    q3 = tl.where(is1, t1 + 2, t0 - 3)
    xm1 = tl.load(p_xc + q1 * s_xl, mask=m_e & (q1 >= 0) & (q1 < L), other=0.0).to(tl.float32)
    xm2 = tl.load(p_xc + q2 * s_xl, mask=m_e & (q2 >= 0) & (q2 < L), other=0.0).to(tl.float32)
    xm3 = tl.load(p_xc + q3 * s_xl, mask=m_e & (q3 >= 0) & (q3 < L), other=0.0).to(tl.float32)
    p_h = ((d_j * B + i_b) * n_chunks + i_c) * N * E + o_e  # every column's entry of a [.., N, E] state array
    if HAS_INIT:
        h0, h1, h2, h3 = _load_state4(p_hin + p_h, 0, E, N, m_e, zero)
        h4, h5, h6, h7 = _load_state4(p_hin + p_h, 4, E, N, m_e, zero)
        h8, h9, h10, h11 = _load_state4(p_hin + p_h, 8, E, N, m_e, zero)
        h12, h13, h14, h15 = _load_state4(p_hin + p_h, 12, E, N, m_e, zero)
    else:
        h0 = zero
        h1, h2, h3, h4, h5, h6, h7 = h0, h0, h0, h0, h0, h0, h0
        h8, h9, h10, h11, h12, h13, h14, h15 = h0, h0, h0, h0, h0, h0, h0, h0
    # fmt: off
    delta_sum = zero
    p_row0 = p_dbl + (d_j * B + i_b) * L * (R + 2 * N)  # every column's direction's x_dbl rows of this image
    p_zc = p_z + i_b * s_xb + o_e
    sgn = 1 - 2 * d_j  # scan order: +1 for direction 0, -1 for direction 1
    start = tl.where(is1, t1 - 1, t0)
    half = n // 2
    # the loads of step s + 1 are issued before step s computes (a register double buffer, two steps per loop
    # iteration so that the buffers swap roles without moves); positions past the chunk are clamped into it
    xv, zv, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
        b8, b9, b10, b11, b12, b13, b14, b15, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = \
        _loads(p_xc, p_zc, p_row0, start, s_xl, m_e, zero, N, R, EVEN, VEC, HAS_Y)
    if HAS_Y:
        p_yc = p_y + i_b * s_yb + o_e
        # steps [0, half): the other direction has not reached these positions yet: store
        for s in range(0, half - 1, 2):
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, \
                q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N)
            tl.store(p_yc + (start + sgn * (s)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1 + 1), t0), t1 - 1)
            xv, zv, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, \
                b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, \
                q13, q14, q15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, nr0, \
                nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, nb2, nb3, \
                nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nx, xm1, xm2, xm3, cw0, cw1, cw2, \
                cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = nx
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, nq0, nq1, nq2, nq3, \
                nq4, nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15, u, nz, Dv, N)
            tl.store(p_yc + (start + sgn * (s + 1)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
        if (half - (0)) % 2 == 1:
            pn = tl.minimum(tl.maximum(start + sgn * (half - 1 + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, \
                q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N)
            tl.store(p_yc + (start + sgn * (half - 1)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
            xv, zv = nx, nz
            r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15 = nr0, nr1, nr2, nr3, nr4, nr5, \
                nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = nb0, nb1, nb2, nb3, nb4, nb5, \
                nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = nq0, nq1, nq2, nq3, nq4, nq5, \
                nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15
        if n % 2 == 1:
            # the middle of an odd chunk, both directions at the same position: direction 0 stores, then 1 adds
            pn = tl.minimum(tl.maximum(start + sgn * (half + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, \
                q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N)
            p_yt = p_yc + (start + sgn * half) * s_yl
            tl.store(p_yt, yv.to(p_y.dtype.element_ty), mask=m_e & ~is1)
            tl.debug_barrier()
            prev = tl.load(p_yt, mask=m_e & is1, other=0.0).to(tl.float32)
            tl.store(p_yt, (yv + prev).to(p_y.dtype.element_ty), mask=m_e & is1)
            xv, zv = nx, nz
            r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15 = nr0, nr1, nr2, nr3, nr4, nr5, \
                nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = nb0, nb1, nb2, nb3, nb4, nb5, \
                nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = nq0, nq1, nq2, nq3, nq4, nq5, \
                nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15
        else:
            tl.debug_barrier()  # every output of the first half is stored and visible
        # steps [n - half, n): add to what the other direction stored in its first half
        prev = tl.load(p_yc + (start + sgn * (n - half)) * s_yl, mask=m_e & (half > 0), other=0.0).to(tl.float32)
        for s in range(n - half, n - 1, 2):
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            nprev = tl.load(p_yc + pn * s_yl, mask=m_e & (s + 1 < n), other=0.0).to(tl.float32)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, \
                q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N) + prev
            tl.store(p_yc + (start + sgn * (s)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1 + 1), t0), t1 - 1)
            xv, zv, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, \
                b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, \
                q13, q14, q15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, m_e, zero, N, R, EVEN, VEC, HAS_Y)
            prev = tl.load(p_yc + pn * s_yl, mask=m_e & (s + 1 + 1 < n), other=0.0).to(tl.float32)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, nr0, \
                nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, nb2, nb3, \
                nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nx, xm1, xm2, xm3, cw0, cw1, cw2, \
                cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = nx
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, nq0, nq1, nq2, nq3, \
                nq4, nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15, u, nz, Dv, N) + nprev
            tl.store(p_yc + (start + sgn * (s + 1)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
        if (n - (n - half)) % 2 == 1:
            pn = tl.minimum(tl.maximum(start + sgn * (n - 1 + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            nprev = tl.load(p_yc + pn * s_yl, mask=m_e & (n - 1 + 1 < n), other=0.0).to(tl.float32)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            yv = _yout(h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, q0, q1, q2, q3, q4, q5, \
                q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, u, zv, Dv, N) + prev
            tl.store(p_yc + (start + sgn * (n - 1)) * s_yl, yv.to(p_y.dtype.element_ty), mask=m_e)
            xv, zv = nx, nz
            r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15 = nr0, nr1, nr2, nr3, nr4, nr5, \
                nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = nb0, nb1, nb2, nb3, nb4, nb5, \
                nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = nq0, nq1, nq2, nq3, nq4, nq5, \
                nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15
            prev = nprev
    else:
        for s in range(0, n - 1, 2):
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            delta_sum += delta
            pn = tl.minimum(tl.maximum(start + sgn * (s + 1 + 1), t0), t1 - 1)
            xv, zv, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, \
                b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, \
                q13, q14, q15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, nr0, \
                nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, nb2, nb3, \
                nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nx, xm1, xm2, xm3, cw0, cw1, cw2, \
                cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = nx
            delta_sum += delta
        if (n - (0)) % 2 == 1:
            pn = tl.minimum(tl.maximum(start + sgn * (n - 1 + 1), t0), t1 - 1)
            nx, nz, nr0, nr1, nr2, nr3, nr4, nr5, nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15, nb0, nb1, \
                nb2, nb3, nb4, nb5, nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15, nq0, nq1, nq2, nq3, nq4, \
                nq5, nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15 = _loads(p_xc, p_zc, p_row0, pn, s_xl, \
                m_e, zero, N, R, EVEN, VEC, HAS_Y)
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, u, delta = _step(h0, h1, h2, h3, \
                h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, \
                a11, a12, a13, a14, a15, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, \
                r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, b0, b1, b2, b3, b4, b5, b6, b7, \
                b8, b9, b10, b11, b12, b13, b14, b15, xv, xm1, xm2, xm3, cw0, cw1, cw2, cw3, cb, bias, N, R, NPOLY)
            xm3 = xm2
            xm2 = xm1
            xm1 = xv
            delta_sum += delta
            xv, zv = nx, nz
            r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15 = nr0, nr1, nr2, nr3, nr4, nr5, \
                nr6, nr7, nr8, nr9, nr10, nr11, nr12, nr13, nr14, nr15
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = nb0, nb1, nb2, nb3, nb4, nb5, \
                nb6, nb7, nb8, nb9, nb10, nb11, nb12, nb13, nb14, nb15
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = nq0, nq1, nq2, nq3, nq4, nq5, \
                nq6, nq7, nq8, nq9, nq10, nq11, nq12, nq13, nq14, nq15
    # fmt: on
    if not HAS_Y:
        p_s = p_hout + p_h
        _store_state4(p_s, 0, E, N, m_e, h0, h1, h2, h3)
        _store_state4(p_s, 4, E, N, m_e, h4, h5, h6, h7)
        _store_state4(p_s, 8, E, N, m_e, h8, h9, h10, h11)
        _store_state4(p_s, 12, E, N, m_e, h12, h13, h14, h15)
        p_s = p_decay + p_h
        ds = delta_sum
        _store_state4(p_s, 0, E, N, m_e, tl.exp2(ds * a0), tl.exp2(ds * a1), tl.exp2(ds * a2), tl.exp2(ds * a3))
        _store_state4(p_s, 4, E, N, m_e, tl.exp2(ds * a4), tl.exp2(ds * a5), tl.exp2(ds * a6), tl.exp2(ds * a7))
        _store_state4(p_s, 8, E, N, m_e, tl.exp2(ds * a8), tl.exp2(ds * a9), tl.exp2(ds * a10), tl.exp2(ds * a11))
        _store_state4(p_s, 12, E, N, m_e, tl.exp2(ds * a12), tl.exp2(ds * a13), tl.exp2(ds * a14), tl.exp2(ds * a15))


# ----------------------------------------------------------------------------------------------- launcher


def supports(n_state: int, rank: int, kernel: int) -> bool:
    """Shapes the sequential kernel takes (Vim: N = 16, R = ceil(D / 16) <= 16 up to D = 256, K = 4)."""
    return n_state <= MAX_STATE and rank <= MAX_STATE and kernel == 4


def seq_scan_forward(xz: torch.Tensor, x_dbl: torch.Tensor, p: dict, cfg: dict) -> torch.Tensor:
    """y (B, L, E) of both directions from xz (B, L, 2E) and x_dbl [2, B, L, R + 2N] (fp32): [a chunk-state pass
    (the same kernel without outputs) and the combine when the sequence is cut into chunks], then the output pass.
    ``p``: the stacked parameters of ``params.stack_params``."""
    from ..selective_scan.chunk_states import combine_chunks

    batch, length, two_e = xz.shape
    channels, n_state, rank = two_e // 2, p["N"], p["R"]
    chunk_len = cfg["seq_chunk_len"]
    n_chunks = max(1, -(-length // chunk_len))
    block_e = cfg["seq_block_e"]
    grid = (triton.cdiv(channels, block_e), n_chunks, batch)
    y = new_buffer(xz, (batch, length, channels))
    gpu = not interpreted()
    meta = dict(
        N=n_state, R=rank, BE=block_e, EVEN=channels % block_e == 0, VEC=gpu and rank % 4 == 0 and n_state % 4 == 0
    )
    meta.update(NPOLY=cfg["seq_exp_poly"], num_warps=max(1, block_e // 16))
    if cfg["seq_maxnreg"]:
        meta["maxnreg"] = cfg["seq_maxnreg"]

    def launch(y_out, h_in, h_out, decay, name):
        compiled = _seq_scan_kernel[grid](
            xz, xz[..., channels:], x_dbl, y_out, h_in, h_out, decay,
            p["conv_w"], p["conv_b"], p["dt_w"], p["dt_bias"], p["A"], p["D"],
            batch, length, channels, n_chunks,
            xz.stride(0), xz.stride(1), y.stride(0), y.stride(1), chunk_len,
            HAS_Y=y_out is not None, HAS_INIT=h_in is not None, **meta,
        )  # fmt: skip
        note(name, compiled)

    h_in = None
    if n_chunks > 1:
        decay = new_buffer(xz, (2, batch, n_chunks, n_state, channels), torch.float32)
        state = new_buffer(decay, decay.shape)
        launch(None, None, state, decay, "seq_state_kernel")
        combine_chunks(decay, state)
        h_in = state
    launch(y, h_in, None, None, "seq_scan_kernel")
    return y
