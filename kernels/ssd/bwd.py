"""Triton backward of the bidirectional SSD: the chunked scan kernel's backward for both directions, in one launch.

One program per (batch, head, direction), like the forward, in two sweeps over the chunks:
  1. in scan order, carrying the forward state h [N, P] (stored per chunk for sweep 2): the decay-gradient pairs
     that end in the chunk, and dC = ((dy (delta x)^T) * decay) B + exp(cum) dy h^T;
  2. against scan order, carrying the adjoint state g [N, P] (g = sum over later tokens of exp(...) C dy^T):
     v = (S * decay)^T dy + exp(cum[-1] - cum) B g gives dx = delta v and the input part of ddelta = x . v,
     and dB = delta * [((x dy^T) * decay^T) C + exp(cum[-1] - cum) x g^T].
dB and dC are shared by the heads of a group and by the directions: they are accumulated with float32 atomics.
The decay gradient d loss / d a[r] is the sum of the pair terms P[t, s] = dy[t] . (part of y[t] from x[s]) over
the pairs that cross r (s < r <= t in scan order). Written as "all pairs ending after r minus all pairs starting
after r" (Mamba-2's dy . y - x . dx with a reverse cumsum) it cancels catastrophically with bf16 or tf32
operands, so the kernel sums the crossing pairs directly: inside a chunk a corner sum of the (Q x Q) pair
matrix; the pairs from earlier chunks into the chunk (sweep 1); from the chunk into later chunks (sweep 2); and
the pairs that jump over the whole chunk, 2^(cum[-1]) <g, h> with h the state entering the chunk, which sweep 1
stores per chunk (in the input dtype) for sweep 2.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import interpreted, prepare_launch
from .fwd import chunk_decay, load_chunk, mm, scan_strides


@triton.jit
def _ssd_scan_bwd_kernel(
    x_ptr,
    dt_ptr,
    a_ptr,
    bias_ptr,
    b_ptr,
    c_ptr,
    dy_ptr,
    dx_ptr,
    db_ptr,
    dc_ptr,
    ddt_ptr,
    da1_ptr,
    da2_ptr,
    hs_ptr,
    NC,
    L,
    H,
    HPG,
    s_xb,
    s_xl,
    s_xh,
    s_db,
    s_dl,
    s_dd,
    s_dh,
    s_bb,
    s_bl,
    s_bg,
    s_cb,
    s_cl,
    s_cg,
    s_gb,
    s_gl,
    s_gh,
    s_xd,
    s_xgb,
    s_xgl,
    s_xgh,
    s_nb,
    s_nl,
    s_ng,
    s_tb,
    s_tl,
    s_td,
    Q: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    F32: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    i_g = i_h // HPG
    A = tl.load(a_ptr + d * H + i_h).to(tl.float32)
    bias = tl.load(bias_ptr + d * H + i_h).to(tl.float32)
    o_p = tl.arange(0, P)
    o_n = tl.arange(0, N)
    o_q = tl.arange(0, Q)
    m_tr = o_q[:, None] >= o_q[None, :]
    # states entering each chunk, (Bt, 2, H, NC, N, P): written by sweep 1, read by sweep 2
    p_hs = hs_ptr + ((i_b * 2 + d) * H + i_h) * NC * N * P + o_n[:, None] * P + o_p[None, :]
    n_chunks = tl.cdiv(L, Q)

    # sweep 1: scan order, forward state h
    b_h = tl.zeros([N, P], dtype=tl.float32)
    for c in range(0, n_chunks):
        o_t, m_t, b_x, b_raw, b_dt, b_B, b_C, b_cum = load_chunk(
            x_ptr,
            dt_ptr,
            b_ptr,
            c_ptr,
            i_b,
            i_h,
            i_g,
            d,
            c,
            L,
            A,
            bias,
            s_xb,
            s_xl,
            s_xh,
            s_db,
            s_dl,
            s_dd,
            s_dh,
            s_bb,
            s_bl,
            s_bg,
            s_cb,
            s_cl,
            s_cg,
            Q,
            P,
            N,
        )
        b_decay, b_last = chunk_decay(b_cum, Q)
        b_dy = tl.load(
            dy_ptr + i_b * s_gb + i_h * s_gh + o_t[:, None] * s_gl + o_p[None, :], mask=m_t[:, None], other=0.0
        )
        b_xdt = (b_x * b_dt[:, None]).to(b_x.dtype)
        b_hq = b_h.to(b_x.dtype)
        tl.store(p_hs + c * N * P, b_h.to(hs_ptr.dtype.element_ty))
        b_ecum = tl.exp2(b_cum)
        b_M = mm(b_C, tl.trans(b_B), F32) * b_decay  # [Q, Q]
        b_yin = mm(b_C, b_hq, F32) * b_ecum[:, None]  # [Q, P]: outputs from earlier chunks' tokens
        b_dyx = mm(b_dy, tl.trans(b_xdt), F32)  # [Q(t), Q(s)]: dy[t] . delta[s] x[s]
        # decay gradient, crossing pairs with t in this chunk: inside the chunk (corner sums of P over s < r <= t)
        b_P = b_M * b_dyx
        b_W = tl.cumsum(b_P, axis=1) - b_P  # [Q(t), Q(r)]: sum over s < r
        b_corner = tl.sum(tl.where(m_tr, b_W, 0.0), axis=0)  # [Q(r)]: sum over t >= r
        # ... and from earlier chunks (every t >= r of this chunk)
        b_rin = tl.sum(b_yin * b_dy.to(tl.float32), axis=1)
        b_rin_total = tl.sum(b_rin, axis=0)
        b_da1 = b_corner + b_rin_total - tl.cumsum(b_rin, axis=0) + b_rin
        tl.store(da1_ptr + i_b * s_tb + d * s_td + i_h + o_t * s_tl, b_da1, mask=m_t)
        b_dC = mm((b_dyx * b_decay).to(b_x.dtype), b_B, F32)  # [Q, N]
        b_dC += mm(b_dy, tl.trans(b_hq), F32) * b_ecum[:, None]
        p_dc = dc_ptr + i_b * s_nb + i_g * s_ng + o_t[:, None] * s_nl + o_n[None, :]
        tl.atomic_add(p_dc, b_dC, mask=m_t[:, None], sem="relaxed")
        b_Bw = (b_B * (tl.exp2(b_last - b_cum) * b_dt)[:, None]).to(b_B.dtype)
        b_h = b_h * tl.exp2(b_last) + mm(tl.trans(b_Bw), b_x, F32)

    tl.debug_barrier()  # sweep 1's stored states are read by other threads of this program

    # sweep 2: against scan order, adjoint state g
    b_g = tl.zeros([N, P], dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        o_t, m_t, b_x, b_raw, b_dt, b_B, b_C, b_cum = load_chunk(
            x_ptr,
            dt_ptr,
            b_ptr,
            c_ptr,
            i_b,
            i_h,
            i_g,
            d,
            c,
            L,
            A,
            bias,
            s_xb,
            s_xl,
            s_xh,
            s_db,
            s_dl,
            s_dd,
            s_dh,
            s_bb,
            s_bl,
            s_bg,
            s_cb,
            s_cl,
            s_cg,
            Q,
            P,
            N,
        )
        b_decay, b_last = chunk_decay(b_cum, Q)
        b_dy = tl.load(
            dy_ptr + i_b * s_gb + i_h * s_gh + o_t[:, None] * s_gl + o_p[None, :], mask=m_t[:, None], other=0.0
        )
        b_gq = b_g.to(b_x.dtype)
        b_tail = tl.exp2(b_last - b_cum)  # [Q]: decay from token s to the chunk end
        b_S = mm(b_C, tl.trans(b_B), F32)
        b_M = (b_S * b_decay).to(b_x.dtype)
        b_vin = mm(b_B, b_gq, F32) * b_tail[:, None]  # [Q, P]: from later chunks' tokens
        b_v = mm(tl.trans(b_M), b_dy, F32) + b_vin  # [Q, P]
        b_dx = b_v * b_dt[:, None]
        # decay gradient, crossing pairs from tokens s < r of this chunk into later chunks, and the pairs from
        # before this chunk to after it: 2^(cum[-1]) <g, h entering the chunk>, the same for every r of the chunk
        b_kin = b_dt * tl.sum(b_vin * b_x.to(tl.float32), axis=1)
        b_hin = tl.load(p_hs + c * N * P).to(tl.float32)
        b_jump = tl.exp2(b_last) * tl.sum(tl.sum(b_g * b_hin, axis=1), axis=0)
        b_da2 = tl.cumsum(b_kin, axis=0) - b_kin + b_jump
        tl.store(da2_ptr + i_b * s_tb + d * s_td + i_h + o_t * s_tl, b_da2, mask=m_t)
        p_dx = dx_ptr + d * s_xd + i_b * s_xgb + i_h * s_xgh + o_t[:, None] * s_xgl + o_p[None, :]
        tl.store(p_dx, b_dx, mask=m_t[:, None])
        b_ddt = tl.sum(b_v * b_x.to(tl.float32), axis=1)  # [Q]: d loss / d delta through delta x
        tl.store(ddt_ptr + i_b * s_tb + d * s_td + i_h + o_t * s_tl, b_ddt, mask=m_t)
        b_xdy = mm(b_x, tl.trans(b_dy), F32)  # [Q(s), Q(t)]: x[s] . dy[t]
        b_dB = mm((b_xdy * tl.trans(b_decay)).to(b_x.dtype), b_C, F32)  # [Q, N]
        b_dB += mm(b_x, tl.trans(b_gq), F32) * b_tail[:, None]
        b_dB = b_dB * b_dt[:, None]
        p_db = db_ptr + i_b * s_nb + i_g * s_ng + o_t[:, None] * s_nl + o_n[None, :]
        tl.atomic_add(p_db, b_dB, mask=m_t[:, None], sem="relaxed")
        b_Cw = (b_C * tl.exp2(b_cum)[:, None]).to(b_C.dtype)
        b_g = b_g * tl.exp2(b_last) + mm(tl.trans(b_Cw), b_dy, F32)


@triton.jit
def _ssd_out_bwd_kernel(
    dout_ptr,
    y2_ptr,
    x_ptr,
    z_ptr,
    d_ptr,
    dy_ptr,
    dz_ptr,
    dd_ptr,
    T,
    E,
    P,
    s_y2d,
    s_x,
    s_z,
    HAS_Z: tl.constexpr,
    BT: tl.constexpr,
    BE: tl.constexpr,
):
    """Backward of the epilogue over (T, E) rows: dy = dout * silu(z) (in x's dtype, for the scan backward),
    dz = dout * (y_fwd + y_bwd + D x) * silu'(z), and per row block the column sums of dy * x (for dD)."""
    i_t = tl.program_id(0)
    o_t = (i_t * BT + tl.arange(0, BT)).to(tl.int64)
    o_e = tl.program_id(1) * BE + tl.arange(0, BE)
    m = (o_t[:, None] < T) & (o_e[None, :] < E)
    b_do = tl.load(dout_ptr + o_t[:, None] * E + o_e[None, :], mask=m, other=0.0).to(tl.float32)
    b_x = tl.load(x_ptr + o_t[:, None] * s_x + o_e[None, :], mask=m, other=0.0).to(tl.float32)
    if HAS_Z:
        b_z = tl.load(z_ptr + o_t[:, None] * s_z + o_e[None, :], mask=m, other=0.0).to(tl.float32)
        b_sig = tl.sigmoid(b_z)
        b_y = tl.load(y2_ptr + o_t[:, None] * E + o_e[None, :], mask=m, other=0.0).to(tl.float32)
        b_y += tl.load(y2_ptr + s_y2d + o_t[:, None] * E + o_e[None, :], mask=m, other=0.0).to(tl.float32)
        b_D = tl.load(d_ptr + o_e // P, mask=o_e < E, other=0.0).to(tl.float32)
        b_y += b_x * b_D[None, :]
        b_dz = b_do * b_y * b_sig * (1.0 + b_z * (1.0 - b_sig))
        tl.store(dz_ptr + o_t[:, None] * E + o_e[None, :], b_dz.to(dz_ptr.dtype.element_ty), mask=m)
        b_do = b_do * b_z * b_sig
    tl.store(dy_ptr + o_t[:, None] * E + o_e[None, :], b_do.to(dy_ptr.dtype.element_ty), mask=m)
    tl.store(dd_ptr + i_t * E + o_e, tl.sum(b_do * b_x, axis=0), mask=o_e < E)


@triton.jit
def _ssd_dx_kernel(dx2_ptr, dy_ptr, d_ptr, dx_ptr, T, E, P, s_d, BT: tl.constexpr, BE: tl.constexpr):
    """dx = dx_fwd + dx_bwd + D dy over (T, E) rows, in x's dtype."""
    o_t = (tl.program_id(0) * BT + tl.arange(0, BT)).to(tl.int64)
    o_e = tl.program_id(1) * BE + tl.arange(0, BE)
    m = (o_t[:, None] < T) & (o_e[None, :] < E)
    p = o_t[:, None] * E + o_e[None, :]
    b_dx = tl.load(dx2_ptr + p, mask=m, other=0.0) + tl.load(dx2_ptr + s_d + p, mask=m, other=0.0)
    b_D = tl.load(d_ptr + o_e // P, mask=o_e < E, other=0.0).to(tl.float32)
    b_dx += tl.load(dy_ptr + p, mask=m, other=0.0).to(tl.float32) * b_D[None, :]
    tl.store(dx_ptr + p, b_dx.to(dx_ptr.dtype.element_ty), mask=m)


def _row_grid(T: int, E: int) -> tuple[int, int, tuple[int, int]]:
    BT, BE = 32, min(128, triton.next_power_of_2(E))
    return BT, BE, (triton.cdiv(T, BT), triton.cdiv(E, BE))


def ssd_out_bwd(dout, y2, x, z, D):
    """(dy in x's dtype, dz in z's dtype or None, dD (H,) fp32) of the epilogue; dout (Bt, L, H, P)."""
    from .fwd import rows

    Bt, L, H, P = x.shape
    T, s_x = rows(x)
    s_z = rows(z)[1] if z is not None else 0
    E = H * P
    dout = dout.contiguous()
    # Triton 3.6's interpreter truncates float32 -> bf16 casts (the GPU rounds to nearest): there, PyTorch rounds
    low = torch.float32 if interpreted() else x.dtype
    dy = torch.empty((Bt, L, H, P), device=x.device, dtype=low)
    dz = torch.empty((Bt, L, H, P), device=x.device, dtype=low) if z is not None else None
    BT, BE, grid = _row_grid(T, E)
    dd = torch.empty((grid[0], E), device=x.device, dtype=torch.float32)
    _ssd_out_bwd_kernel[grid](
        dout, y2, x, z if z is not None else x, D, dy, dz if dz is not None else dy, dd,
        T, E, P, y2.stride(0), s_x, s_z,
        HAS_Z=z is not None, BT=BT, BE=BE, num_warps=4,
    )  # fmt: skip
    return dy.to(x.dtype), dz if dz is None else dz.to(z.dtype), dd.sum(0).view(H, P).sum(1)


def ssd_dx(dx2, dy, D, dtype) -> torch.Tensor:
    """dx2[0] + dx2[1] + D dy, (Bt, L, H, P) in ``dtype``."""
    Bt, L, H, P = dy.shape
    dx = torch.empty((Bt, L, H, P), device=dy.device, dtype=dtype)
    T, E = Bt * L, H * P
    BT, BE, grid = _row_grid(T, E)
    _ssd_dx_kernel[grid](dx2, dy, D, dx, T, E, P, dx2.stride(0), BT=BT, BE=BE, num_warps=4)
    return dx


def ssd_scan_bwd(x, dt, A, bias, B, C, dy, chunk: int, num_warps: int = 4, num_stages: int = 1):
    """Per-direction dx (2, Bt, L, H, P) fp32, dB and dC (Bt, L, G, N) fp32; per token, direction and head
    (Bt, L, 2, H) fp32: ddelta through delta x and the two parts of the decay gradient (sweep 1, sweep 2)."""
    prepare_launch()
    Bt, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    f32 = dict(device=x.device, dtype=torch.float32)
    dx2 = torch.empty((2, Bt, L, H, P), **f32)
    dB = torch.zeros((Bt, L, G, N), **f32)
    dC = torch.zeros((Bt, L, G, N), **f32)
    ddt = torch.empty((Bt, L, 2, H), **f32)
    da1 = torch.empty((Bt, L, 2, H), **f32)
    da2 = torch.empty((Bt, L, 2, H), **f32)
    nc = triton.cdiv(L, chunk)
    hs = torch.empty((Bt, 2, H, nc, N, P), device=x.device, dtype=x.dtype)
    _ssd_scan_bwd_kernel[(Bt * H, 2)](
        x,
        dt,
        A,
        bias,
        B,
        C,
        dy,
        dx2,
        dB,
        dC,
        ddt,
        da1,
        da2,
        hs,
        nc,
        L,
        H,
        H // G,
        *scan_strides(x, dt, B, C),
        dy.stride(0),
        dy.stride(1),
        dy.stride(2),
        dx2.stride(0),
        dx2.stride(1),
        dx2.stride(2),
        dx2.stride(3),
        dB.stride(0),
        dB.stride(1),
        dB.stride(2),
        ddt.stride(0),
        ddt.stride(1),
        ddt.stride(2),
        Q=chunk,
        P=P,
        N=N,
        F32=interpreted() or x.dtype == torch.float32,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return dx2, dB, dC, ddt, da1, da2
