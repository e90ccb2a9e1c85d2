"""Backward selective scan in Triton: recomputation from stored chunk states, deterministic reductions.

Math per direction, in scan order (g = dLoss/dh_t, dy = dLoss/dy_t before the gate):
    g[t]  = dy[t] C[t] + a[t+1] g[t+1]                 (reverse scan, ``grad_combine``: no shift of a in registers)
    du    = delta * sum_n g B + dy * D                  dB[t] = sum_e g * delta * u       dC[t] = sum_e dy * h[t]
    ddelta = sum_n g (A * a h[t-1] + B u),  a h[t-1] = h[t] - b[t]                dA = sum_t g * a h[t-1] * delta
The forward states are recomputed tile by tile from the states stored at chunk starts (the forward pass's
``h_in``; nothing of size B*L*E*N is kept). Within a chunk the tiles run backwards, so each program first sweeps its
chunk forwards and parks the T-step tile-start states in a scratch buffer (B*L*E*N/T floats per direction).
Reductions over channels (dB, dC, d dt_rows) and over tokens (dA, dD, d dt_bias, d dt_proj_w) are written as
per-block partial sums and added up in a fixed order afterwards: no float atomics, bitwise reproducible.
With SKIP_LAST the per-chunk gradient carry skips the chunk first in scan order (it passes gradient to no chunk).
Switches (constexpr, from the launch config) as in fwd: ``ELAST`` (state tiles channels-last) and
``EXP_POLY`` (part of the exponentials on the FMA pipe); ``REV_FLIP`` runs the reverse scans as forward scans of
flipped tiles (see ``reverse_scan``); ``EDOT`` sums dB, dC over the channels with a GEMM
against ones on the tensor cores (tf32 for bf16 inputs, tf32x3 otherwise) instead of a shuffle tree.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import kernel_meta, launch_options, new_buffer, note
from ..common.triton_helpers import (
    LOG2E,
    bc_e,
    bc_s,
    bc_te,
    bc_tn,
    decay,
    first_row,
    load_delta,
    load_params,
    load_rows,
    load_u,
    reverse_grad_scan,
    reverse_scan,
    scan_combine,
    scratch_offsets,
    state_mask,
    state_offsets,
    sum_e,
    sum_e_dot,
    sum_n,
    tile_positions,
)

# ----------------------------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=["B", "L", "n_chunks", "n_eblk", "s_zb", "s_dtd", "s_dtb", "s_cd", "s_cb", "s_yb", "CL"])
def _grad_chunk_state_kernel(
    p_z,
    p_dt,
    p_c,
    p_dy,
    p_decay,
    p_qloc,
    p_dtw,
    p_dtb,
    p_A,
    p_D,
    B,
    L,
    E,
    N,
    R,
    n_chunks,
    n_eblk,
    s_zb,
    s_zl,
    s_dtd,
    s_dtb,
    s_dtl,
    s_cd,
    s_cb,
    s_cl,
    s_yb,
    s_yl,
    scale,
    CL,
    T: tl.constexpr,
    BE: tl.constexpr,
    NP: tl.constexpr,
    RP: tl.constexpr,
    K: tl.constexpr,
    CONV: tl.constexpr,
    DTPROJ: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_Z: tl.constexpr,
    ELAST: tl.constexpr,
    EXP_POLY: tl.constexpr,
    REV_FLIP: tl.constexpr,
    SKIP_LAST: tl.constexpr,
):
    """Grid (n_eblk * n_chunks' * B, ND). Per chunk, with no gradient entering from later chunks: q = a[first]
    * g[first] (the gradient the chunk passes to the state before it) and the chunk's total decay. With SKIP_LAST
    (n_chunks' = n_chunks - 1) the chunk first in scan order (chunk 0 for direction 0, the last for direction 1),
    which passes its gradient nowhere, is skipped; else n_chunks' = n_chunks."""
    pid = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1).to(tl.int64)
    i_e = pid % n_eblk
    if SKIP_LAST:
        i_c = (pid // n_eblk) % (n_chunks - 1) + 1 - d
        i_b = pid // (n_eblk * (n_chunks - 1))
    else:
        i_c = (pid // n_eblk) % n_chunks
        i_b = pid // (n_eblk * n_chunks)
    o_e = i_e * BE + tl.arange(0, BE)
    m_e = o_e < E
    o_n = tl.arange(0, NP)
    m_n = o_n < N
    o_r = tl.arange(0, RP)
    m_r = o_r < R
    o_t = tl.arange(0, T)
    c0 = i_c * CL
    c1 = tl.minimum(c0 + CL, L)
    n_tiles = tl.cdiv(c1 - c0, T)
    A, Dv, w_dt, bias = load_params(p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ, ELAST)
    A2 = A * LOG2E
    q = tl.zeros_like(A2)
    delta_sum = tl.zeros([BE], tl.float32)
    for jj in range(n_tiles):
        j = n_tiles - 1 - jj
        pos, m_t = tile_positions(c0, c1, j, o_t, d, T)
        delta, _, _ = load_delta(
            p_dt, w_dt, bias, i_b, pos, m_t, o_e, m_e, o_r, m_r, d, s_dtd, s_dtb, s_dtl, DTPROJ, SOFTPLUS, True
        )
        c_t = load_rows(p_c, i_b, pos, m_t, o_n, m_n, d, s_cd, s_cb, s_cl)
        dy = load_rows(p_dy, i_b, pos, m_t, o_e, m_e, 0, 0, s_yb, s_yl) * scale
        if HAS_Z:
            z = load_rows(p_z, i_b, pos, m_t, o_e, m_e, 0, 0, s_zb, s_zl)
            dy = dy * z * tl.sigmoid(z)
        a = decay(bc_te(delta, ELAST) * bc_s(A2), j, EXP_POLY)  # [T, BE, NP] or [T, NP, BE]
        ac = a * (bc_te(dy, ELAST) * bc_tn(c_t, ELAST))
        aq, bq = reverse_scan(a, ac, REV_FLIP)
        q = first_row(bq + aq * bc_s(q), o_t, 0)
        delta_sum += tl.sum(delta, axis=0)
    o_s = state_offsets(((d * B + i_b) * n_chunks + i_c) * E * N, o_e, o_n, N, ELAST)
    m_s = state_mask(m_e, m_n, ELAST)
    tl.store(p_decay + o_s, tl.exp2(A2 * bc_e(delta_sum, ELAST)), mask=m_s)
    tl.store(p_qloc + o_s, q, mask=m_s)


@triton.jit(
    do_not_specialize=[
        "B",
        "L",
        "n_chunks",
        "n_eblk",
        "s_xb",
        "s_zb",
        "s_dtd",
        "s_dtb",
        "s_bd",
        "s_bb",
        "s_cd",
        "s_cb",
        "s_yb",
        "s_dzb",
        "CL",
    ]
)
def _scan_bwd_kernel(
    p_x,
    p_z,
    p_dt,
    p_b,
    p_c,
    p_dy,
    p_hin,
    p_qin,
    p_scratch,
    p_cw,
    p_cb,
    p_dtw,
    p_dtb,
    p_A,
    p_D,
    p_du,
    p_dz,
    p_ddt,
    p_dbc,
    p_dparam,
    p_dw,
    B,
    L,
    E,
    N,
    R,
    n_chunks,
    n_eblk,
    s_xb,
    s_xl,
    s_zb,
    s_zl,
    s_dtd,
    s_dtb,
    s_dtl,
    s_bd,
    s_bb,
    s_bl,
    s_cd,
    s_cb,
    s_cl,
    s_yb,
    s_yl,
    s_dzb,
    s_dzl,
    scale,
    CL,
    T: tl.constexpr,
    BE: tl.constexpr,
    NP: tl.constexpr,
    RP: tl.constexpr,
    K: tl.constexpr,
    ND: tl.constexpr,
    CONV: tl.constexpr,
    DTPROJ: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_INIT: tl.constexpr,
    USE_SCRATCH: tl.constexpr,
    ELAST: tl.constexpr,
    EXP_POLY: tl.constexpr,
    EDOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    REV_FLIP: tl.constexpr,
):
    """Grid (n_eblk * n_chunks * B,). Outputs (fp32 unless said):
    du [ND, B, L, E] (gradient wrt the scan input u, before the conv); dz written (and summed over directions) into
    p_dz (the caller's dtype); p_ddt: with DTPROJ d dt_rows partials [n_eblk, ND, B, L, RP], else ddelta [ND, B, L, E]
    (wrt delta before bias and softplus); p_dbc: dB, dC partials [2, n_eblk, ND, B, L, NP];
    p_dparam: [B * n_chunks, ND, E, NP + 3] holding dA | dD | d dt_bias | (unused); p_dw: [B * n_chunks, ND, E, RP].
    """
    pid = tl.program_id(0).to(tl.int64)
    i_e = pid % n_eblk
    i_bc = pid // n_eblk
    i_c = i_bc % n_chunks
    i_b = i_bc // n_chunks
    o_e = i_e * BE + tl.arange(0, BE)
    m_e = o_e < E
    o_n = tl.arange(0, NP)
    m_n = o_n < N
    o_r = tl.arange(0, RP)
    m_r = o_r < R
    o_t = tl.arange(0, T)
    c0 = i_c * CL
    c1 = tl.minimum(c0 + CL, L)
    n_tiles = tl.cdiv(c1 - c0, T)
    m_en = state_mask(m_e, m_n, ELAST)
    NT = CL // T  # tiles per full chunk (scratch slots)
    for d in tl.static_range(ND):
        A, Dv, w_dt, bias = load_params(p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ, ELAST)
        A2 = bc_s(A * LOG2E)  # [1, BE, NP] or [1, NP, BE], hoisted: both sweeps below use it
        o_h = state_offsets(((d * B + i_b) * n_chunks + i_c) * E * N, o_e, o_n, N, ELAST)
        if HAS_INIT:
            h = tl.load(p_hin + o_h, mask=m_en, other=0.0)
            q = tl.load(p_qin + o_h, mask=m_en, other=0.0)
        else:
            h = tl.zeros_like(A)
            q = tl.zeros_like(A)
        o_scr = scratch_offsets((pid * ND + d) * NT * BE * NP, BE, NP, ELAST)
        if USE_SCRATCH:
            # forward sweep: park the state entering every tile (the backward sweep below runs the other way)
            for j in range(n_tiles):
                tl.store(p_scratch + o_scr + j * BE * NP, h)
                pos, m_t = tile_positions(c0, c1, j, o_t, d, T)
                u, _ = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_e, m_e, d, L, E, s_xb, s_xl, T, BE, K, CONV)
                delta, _, _ = load_delta(
                    p_dt, w_dt, bias, i_b, pos, m_t, o_e, m_e, o_r, m_r, d, s_dtd, s_dtb, s_dtl, DTPROJ, SOFTPLUS, True
                )
                b_t = load_rows(p_b, i_b, pos, m_t, o_n, m_n, d, s_bd, s_bb, s_bl)
                a = decay(bc_te(delta, ELAST) * A2, j, EXP_POLY)
                bb = bc_te(delta * u, ELAST) * bc_tn(b_t, ELAST)
                acum, hloc = tl.associative_scan((a, bb), 0, scan_combine)
                h = first_row(hloc + acum * bc_s(h), o_t, T - 1)
            tl.debug_barrier()
        dA = tl.zeros_like(A)
        dD = tl.zeros([BE], tl.float32)
        dbias = tl.zeros([BE], tl.float32)
        dW = tl.zeros([BE, RP], tl.float32)
        for jj in range(n_tiles):
            j = n_tiles - 1 - jj
            if USE_SCRATCH:
                h = tl.load(p_scratch + o_scr + j * BE * NP)
            pos, m_t = tile_positions(c0, c1, j, o_t, d, T)
            m_te = m_t[:, None] & m_e[None, :]
            u, _ = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_e, m_e, d, L, E, s_xb, s_xl, T, BE, K, CONV)
            delta, raw, dtr = load_delta(
                p_dt, w_dt, bias, i_b, pos, m_t, o_e, m_e, o_r, m_r, d, s_dtd, s_dtb, s_dtl, DTPROJ, SOFTPLUS, True
            )
            b_t = load_rows(p_b, i_b, pos, m_t, o_n, m_n, d, s_bd, s_bb, s_bl)  # [T, NP]
            c_t = load_rows(p_c, i_b, pos, m_t, o_n, m_n, d, s_cd, s_cb, s_cl)  # [T, NP]
            a = decay(bc_te(delta, ELAST) * A2, j, EXP_POLY)  # [T, BE, NP] or [T, NP, BE]
            du_ = delta * u
            bb = bc_te(du_, ELAST) * bc_tn(b_t, ELAST)
            acum, hloc = tl.associative_scan((a, bb), 0, scan_combine)
            hs = hloc + acum * bc_s(h)  # h_t
            dout = load_rows(p_dy, i_b, pos, m_t, o_e, m_e, 0, 0, s_yb, s_yl) * scale
            y = sum_n(hs * bc_tn(c_t, ELAST), ELAST) + u * Dv[None, :]  # [T, BE] before the gate
            if HAS_Z:
                z = load_rows(p_z, i_b, pos, m_t, o_e, m_e, 0, 0, s_zb, s_zl)
                sz = tl.sigmoid(z)
                dy = dout * z * sz
                dz = dout * y * sz * (1.0 + z * (1.0 - sz))
                p_dzt = p_dz + i_b * s_dzb + pos[:, None] * s_dzl + o_e[None, :]
                if d > 0:
                    dz += tl.load(p_dzt, mask=m_te, other=0.0).to(tl.float32)
                tl.store(p_dzt, dz.to(p_dz.dtype.element_ty), mask=m_te)
            else:
                dy = dout
            cc = bc_te(dy, ELAST) * bc_tn(c_t, ELAST)
            qp, f = reverse_grad_scan(a, cc, REV_FLIP)
            g = f + qp * bc_s(q)  # dLoss/dh_t
            q = first_row(a * g, o_t, 0)
            ah = hs - bb  # a_t * h_{t-1}
            gB = sum_n(g * bc_tn(b_t, ELAST), ELAST)  # [T, BE]
            ddelta = sum_n(g * ah * bc_s(A), ELAST) + u * gB
            ddelta = tl.where(m_te, ddelta, 0.0)
            dA += tl.sum(g * ah * bc_te(delta, ELAST), axis=0)
            dD += tl.sum(dy * u, axis=0)
            du = delta * gB + dy * Dv[None, :]
            o_tok = ((d * B + i_b) * L + pos[:, None]) * E + o_e[None, :]
            tl.store(p_du + o_tok, du, mask=m_te)
            # dB, dC: partial sums over this channel block, [2, n_eblk, ND, B, L, NP]
            o_bc = (((i_e * ND + d) * B + i_b) * L + pos[:, None]) * NP + o_n[None, :]
            m_tn = m_t[:, None] & m_n[None, :]
            if EDOT:
                db_t = sum_e_dot(g * bc_te(du_, ELAST), T, NP, BE, ELAST, DOT_PRECISION)
                dc_t = sum_e_dot(bc_te(dy, ELAST) * hs, T, NP, BE, ELAST, DOT_PRECISION)
            else:
                db_t = sum_e(g * bc_te(du_, ELAST), ELAST)
                dc_t = sum_e(bc_te(dy, ELAST) * hs, ELAST)
            tl.store(p_dbc + o_bc, db_t, mask=m_tn)
            tl.store(p_dbc + n_eblk * ND * B * L * NP + o_bc, dc_t, mask=m_tn)
            if SOFTPLUS:
                ddelta = ddelta * tl.sigmoid(raw)
            dbias += tl.sum(ddelta, axis=0)
            if DTPROJ:
                o_dr = (((i_e * ND + d) * B + i_b) * L + pos[:, None]) * RP + o_r[None, :]
                tl.store(p_ddt + o_dr, tl.sum(ddelta[:, :, None] * w_dt[None, :, :], axis=1), mask=m_t[:, None])
                dW += tl.sum(ddelta[:, :, None] * dtr[:, None, :], axis=0)
            else:
                tl.store(p_ddt + o_tok, ddelta, mask=m_te)
        # per-program partial sums over this chunk's tokens
        o_p = ((i_bc * ND + d) * E + o_e) * (NP + 3)
        tl.store(p_dparam + state_offsets(0, o_p, o_n, 1, ELAST), dA, mask=m_en)
        tl.store(p_dparam + o_p + NP, dD, mask=m_e)
        tl.store(p_dparam + o_p + NP + 1, dbias, mask=m_e)
        if DTPROJ:
            o_w = ((i_bc * ND + d) * E + o_e[:, None]) * RP + o_r[None, :]
            tl.store(p_dw + o_w, dW, mask=m_e[:, None])
        if d + 1 < ND:
            tl.debug_barrier()  # the next direction adds to this direction's dz


# ----------------------------------------------------------------------------------------------- launchers


def launch_grad_chunk_state(src: dict, cfg: dict, decay: torch.Tensor, qloc: torch.Tensor) -> None:
    """Per chunk: the gradient it passes backwards with nothing entering from later chunks, and its decay."""
    grid = (cfg["n_eblk"] * (cfg["n_chunks"] - cfg["skip_last_chunk"]) * src["B"], src["ND"])
    dy = src["dy"]
    compiled = _grad_chunk_state_kernel[grid](
        src["z"],
        src["dt"],
        src["c"],
        dy,
        decay,
        qloc,
        src["dt_w"],
        src["dt_bias"],
        src["A"],
        src["D"],
        src["B"],
        src["L"],
        src["E"],
        src["N"],
        src["R"],
        cfg["n_chunks"],
        cfg["n_eblk"],
        *src["s_z"],
        *src["s_dt"],
        *src["s_c"],
        dy.stride(0),
        dy.stride(1),
        1.0 / src["ND"],
        HAS_Z=src["z"] is not None,
        REV_FLIP=cfg["rev_flip"],
        SKIP_LAST=cfg["skip_last_chunk"],
        **kernel_meta(src, cfg),
        **launch_options(cfg),
    )
    note("grad_chunk_state_kernel", compiled)


def scan_backward(src: dict, cfg: dict, h_in, q_in, dz: torch.Tensor | None) -> dict:
    """Run the backward kernel; returns the raw gradient buffers (partials not yet summed)."""
    meta = kernel_meta(src, cfg)
    nd, batch, length, channels = src["ND"], src["B"], src["L"], src["E"]
    n_chunks, n_eblk = cfg["n_chunks"], cfg["n_eblk"]
    n_prog = n_eblk * n_chunks * batch
    f32 = torch.float32

    def new(shape, dtype):
        return new_buffer(src["u"], shape, dtype)

    bufs = {"du": new((nd, batch, length, channels), dtype=f32)}
    if src["dtproj"]:
        bufs["ddt"] = new((n_eblk, nd, batch, length, meta["RP"]), dtype=f32)
        bufs["dw"] = new((batch * n_chunks, nd, channels, meta["RP"]), dtype=f32)
    else:
        bufs["ddt"] = new((nd, batch, length, channels), dtype=f32)
        bufs["dw"] = None
    bufs["dbc"] = new((2, n_eblk, nd, batch, length, meta["NP"]), dtype=f32)
    bufs["dparam"] = new((batch * n_chunks, nd, channels, meta["NP"] + 3), dtype=f32)
    n_tiles = cfg["chunk_len"] // cfg["block_t"]
    scratch = new((n_prog * nd * n_tiles * cfg["block_e"] * meta["NP"],), dtype=f32) if n_tiles > 1 else None
    dy = src["dy"]
    compiled = _scan_bwd_kernel[(n_prog,)](
        src["u"],
        src["z"],
        src["dt"],
        src["b"],
        src["c"],
        dy,
        h_in,
        q_in,
        scratch,
        src["conv_w"],
        src["conv_b"],
        src["dt_w"],
        src["dt_bias"],
        src["A"],
        src["D"],
        bufs["du"],
        dz,
        bufs["ddt"],
        bufs["dbc"],
        bufs["dparam"],
        bufs["dw"],
        batch,
        length,
        channels,
        src["N"],
        src["R"],
        n_chunks,
        n_eblk,
        *src["s_u"],
        *src["s_z"],
        *src["s_dt"],
        *src["s_b"],
        *src["s_c"],
        dy.stride(0),
        dy.stride(1),
        *((dz.stride(0), dz.stride(1)) if dz is not None else (0, 0)),
        1.0 / nd,
        ND=nd,
        HAS_Z=src["z"] is not None,
        HAS_INIT=h_in is not None,
        USE_SCRATCH=n_tiles > 1,
        EDOT=cfg["edot"],
        REV_FLIP=cfg["rev_flip"],
        DOT_PRECISION="tf32" if src["u"].dtype == torch.bfloat16 else "tf32x3",
        **meta,
        **launch_options(cfg),
    )
    note("scan_bwd_kernel", compiled)
    return bufs
