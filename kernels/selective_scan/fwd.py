"""Forward selective scan kernels in Triton: each chunk's local state (first pass) and the output pass.

The sequence is cut into chunks of ``CL`` positions so that batch 1 on a 16k-token tile still gives thousands of
programs. With one chunk per sequence only the output pass runs (one exp per state element). With several:
1. ``_chunk_state_kernel`` scans each chunk from a zero state: its end state and its total decay
   exp(A * sum delta) (with SKIP_LAST, not the last chunk in scan order: its state would enter no chunk);
2. ``_chunk_combine_kernel`` walks the chunks in scan order and turns them into the state entering each chunk;
3. ``_scan_fwd_kernel`` rescans each chunk from its entering state and writes y.
Inside a chunk, tiles of T positions are scanned with ``tl.associative_scan`` (T steps in parallel rather than one
loop-carried step at a time). Both directions run in one program of the output pass, on the same positions, the
second adding to what the first wrote (the two-direction average), so no flipped copy is ever made.
Switches (constexpr, from the launch config): ``ELAST`` orients the state tiles channels-last (one channel per
thread, see common.triton_helpers), ``EXP_POLY`` moves some exponentials from the MUFU unit onto the FMA pipe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import kernel_meta, launch_options, note
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
    scan_combine,
    state_mask,
    state_offsets,
    sum_n,
    tile_positions,
)

# ----------------------------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=["B", "L", "n_chunks", "n_eblk", "s_xb", "s_dtd", "s_dtb", "s_bd", "s_bb", "CL"])
def _chunk_state_kernel(
    p_x,
    p_dt,
    p_b,
    p_decay,
    p_hloc,
    p_cw,
    p_cb,
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
    s_xb,
    s_xl,
    s_dtd,
    s_dtb,
    s_dtl,
    s_bd,
    s_bb,
    s_bl,
    CL,
    T: tl.constexpr,
    BE: tl.constexpr,
    NP: tl.constexpr,
    RP: tl.constexpr,
    K: tl.constexpr,
    CONV: tl.constexpr,
    DTPROJ: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ELAST: tl.constexpr,
    EXP_POLY: tl.constexpr,
    SKIP_LAST: tl.constexpr,
):
    """Grid (n_eblk * n_chunks' * B, ND). Writes decay, hloc: [ND, B, n_chunks, E, N] (fp32). With SKIP_LAST,
    n_chunks' = n_chunks - 1: not the last chunk in scan order (n_chunks - 1 for direction 0, 0 for direction 1;
    the chunk index then depends on the direction, which costs about 25 registers on sm_90), else every chunk."""
    pid = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1).to(tl.int64)
    i_e = pid % n_eblk
    if SKIP_LAST:
        i_c = (pid // n_eblk) % (n_chunks - 1) + d
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
    A, Dv, w_dt, bias = load_params(p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ, ELAST)
    A2 = A * LOG2E
    h = tl.zeros_like(A2)  # [BE, NP] or [NP, BE] (ELAST)
    delta_sum = tl.zeros([BE], tl.float32)
    for j in range(tl.cdiv(c1 - c0, T)):
        pos, m_t = tile_positions(c0, c1, j, o_t, d, T)
        u, _ = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_e, m_e, d, L, E, s_xb, s_xl, T, BE, K, CONV)
        delta, _, _ = load_delta(
            p_dt, w_dt, bias, i_b, pos, m_t, o_e, m_e, o_r, m_r, d, s_dtd, s_dtb, s_dtl, DTPROJ, SOFTPLUS, True
        )
        b_t = load_rows(p_b, i_b, pos, m_t, o_n, m_n, d, s_bd, s_bb, s_bl)  # [T, NP]
        a = decay(bc_te(delta, ELAST) * bc_s(A2), j, EXP_POLY)  # [T, BE, NP] or [T, NP, BE]
        bb = bc_te(delta * u, ELAST) * bc_tn(b_t, ELAST)
        acum, hloc = tl.associative_scan((a, bb), 0, scan_combine)
        h = first_row(hloc + acum * bc_s(h), o_t, T - 1)
        delta_sum += tl.sum(delta, axis=0)
    o_s = state_offsets(((d * B + i_b) * n_chunks + i_c) * E * N, o_e, o_n, N, ELAST)
    m_s = state_mask(m_e, m_n, ELAST)
    tl.store(p_decay + o_s, tl.exp2(A2 * bc_e(delta_sum, ELAST)), mask=m_s)
    tl.store(p_hloc + o_s, h, mask=m_s)


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
        "CL",
    ]
)
def _scan_fwd_kernel(
    p_x,
    p_z,
    p_dt,
    p_b,
    p_c,
    p_y,
    p_hin,
    p_cw,
    p_cb,
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
    ELAST: tl.constexpr,
    EXP_POLY: tl.constexpr,
):
    """Grid (n_eblk * n_chunks * B,). y[b, t, e] = scale * sum_d (C_t . h_t + D u_t) * silu(z_t), both directions
    in this program on the same positions (the second direction reads back what the first wrote)."""
    pid = tl.program_id(0).to(tl.int64)
    i_e = pid % n_eblk
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
    for d in tl.static_range(ND):
        A, Dv, w_dt, bias = load_params(p_A, p_D, p_dtw, p_dtb, o_e, m_e, o_n, m_n, o_r, m_r, d, E, N, R, DTPROJ, ELAST)
        A2 = A * LOG2E
        if HAS_INIT:
            o_h = state_offsets(((d * B + i_b) * n_chunks + i_c) * E * N, o_e, o_n, N, ELAST)
            h = tl.load(p_hin + o_h, mask=state_mask(m_e, m_n, ELAST), other=0.0)
        else:
            h = tl.zeros_like(A2)
        for j in range(n_tiles):
            pos, m_t = tile_positions(c0, c1, j, o_t, d, T)
            u, _ = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_e, m_e, d, L, E, s_xb, s_xl, T, BE, K, CONV)
            delta, _, _ = load_delta(
                p_dt, w_dt, bias, i_b, pos, m_t, o_e, m_e, o_r, m_r, d, s_dtd, s_dtb, s_dtl, DTPROJ, SOFTPLUS, True
            )
            b_t = load_rows(p_b, i_b, pos, m_t, o_n, m_n, d, s_bd, s_bb, s_bl)  # [T, NP]
            c_t = load_rows(p_c, i_b, pos, m_t, o_n, m_n, d, s_cd, s_cb, s_cl)  # [T, NP]
            a = decay(bc_te(delta, ELAST) * bc_s(A2), j, EXP_POLY)  # [T, BE, NP] or [T, NP, BE]
            bb = bc_te(delta * u, ELAST) * bc_tn(b_t, ELAST)
            acum, hloc = tl.associative_scan((a, bb), 0, scan_combine)
            hs = hloc + acum * bc_s(h)  # states after each step
            y = sum_n(hs * bc_tn(c_t, ELAST), ELAST) + u * Dv[None, :]  # [T, BE]
            if HAS_Z:
                z = load_rows(p_z, i_b, pos, m_t, o_e, m_e, 0, 0, s_zb, s_zl)
                y = y * z * tl.sigmoid(z)
            y = y * scale
            p_yt = p_y + i_b * s_yb + pos[:, None] * s_yl + o_e[None, :]
            m_y = m_t[:, None] & m_e[None, :]
            if d > 0:
                y += tl.load(p_yt, mask=m_y, other=0.0).to(tl.float32)
            tl.store(p_yt, y.to(p_y.dtype.element_ty), mask=m_y)
            h = first_row(hs, o_t, T - 1)
        if d + 1 < ND:
            tl.debug_barrier()  # the next direction reads back this direction's y


# ----------------------------------------------------------------------------------------------- launchers


def launch_chunk_state(src: dict, cfg: dict, decay: torch.Tensor, state: torch.Tensor) -> None:
    """Per chunk: its local end state from a zero state and its total decay, written into ``state``/``decay``."""
    nd, batch, n_chunks, channels, n = src["ND"], src["B"], cfg["n_chunks"], src["E"], src["N"]
    grid = (cfg["n_eblk"] * (n_chunks - cfg["skip_last_chunk"]) * batch, nd)
    compiled = _chunk_state_kernel[grid](
        src["u"],
        src["dt"],
        src["b"],
        decay,
        state,
        src["conv_w"],
        src["conv_b"],
        src["dt_w"],
        src["dt_bias"],
        src["A"],
        src["D"],
        batch,
        src["L"],
        channels,
        n,
        src["R"],
        n_chunks,
        cfg["n_eblk"],
        *src["s_u"],
        *src["s_dt"],
        *src["s_b"],
        SKIP_LAST=cfg["skip_last_chunk"],
        **kernel_meta(src, cfg),
        **launch_options(cfg),
    )
    note("chunk_state_kernel", compiled)


def scan_forward(src: dict, cfg: dict, y: torch.Tensor, h_in: torch.Tensor | None) -> torch.Tensor:
    """Write y (B, L, E) from the scan sources; ``h_in`` are the chunk-entering states (None for one chunk)."""
    grid = (cfg["n_eblk"] * cfg["n_chunks"] * src["B"],)
    compiled = _scan_fwd_kernel[grid](
        src["u"],
        src["z"],
        src["dt"],
        src["b"],
        src["c"],
        y,
        h_in if h_in is not None else y,
        src["conv_w"],
        src["conv_b"],
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
        *src["s_u"],
        *src["s_z"],
        *src["s_dt"],
        *src["s_b"],
        *src["s_c"],
        y.stride(0),
        y.stride(1),
        1.0 / src["ND"],
        ND=src["ND"],
        HAS_Z=src["z"] is not None,
        HAS_INIT=h_in is not None,
        **kernel_meta(src, cfg),
        **launch_options(cfg),
    )
    note("scan_fwd_kernel", compiled)
    return y
