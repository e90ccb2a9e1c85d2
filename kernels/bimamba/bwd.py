"""Backward of the fused bidirectional Vim v2 mixer core: the scan's backward, then conv + x_proj backward.

The backward recomputes everything from xz, the x_proj output and the chunk states. Weight gradients are
per-program partial sums, reduced afterwards in a fixed order (deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import backward_config, new_buffer, note
from ..common.triton_helpers import load_u
from .fwd import _precision
from .params import delta_raw, scan_sources

# ----------------------------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=["B", "L", "n_lblk", "s_xb"])
def _conv_bwd_pre_kernel(
    p_x,
    p_cw,
    p_cb,
    p_wx,
    p_xdbl_grad,
    p_du,
    p_dwx,
    p_dcw,
    B,
    L,
    E,
    P,
    n_lblk,
    s_xb,
    s_xl,
    LB: tl.constexpr,
    BT: tl.constexpr,
    BE: tl.constexpr,
    PP: tl.constexpr,
    K: tl.constexpr,
    KP: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid (n_lblk * B, cdiv(E, BE), ND). In place du -> d pre-activation of the conv:
        dxc  = du + dx_dbl @ x_proj_w            (x_proj backward)
        dpre = dxc * silu'(pre)
    and partial sums over this program's LB tokens: dx_proj_w [P, BE] = dx_dbl^T xc, dconv_w [BE, K], dconv_b.
    p_dwx: [n_lblk * B, ND, P, E]; p_dcw: [n_lblk * B, ND, E, KP] (column K holds dconv_b)."""
    i_lb = tl.program_id(0).to(tl.int64)
    i_e = tl.program_id(1).to(tl.int64)
    d = tl.program_id(2).to(tl.int64)
    i_b = i_lb // n_lblk
    i_l = i_lb % n_lblk
    o_e = i_e * BE + tl.arange(0, BE)
    m_e = o_e < E
    o_p = tl.arange(0, PP)
    m_p = o_p < P
    o_k = tl.arange(0, KP)
    sgn = 1 - 2 * d
    wx = tl.load(p_wx + (d * P + o_p[:, None]) * E + o_e[None, :], mask=m_p[:, None] & m_e[None, :], other=0.0)
    wx = wx.to(tl.float32)  # [PP, BE]
    dwx = tl.zeros([PP, BE], tl.float32)
    dcw = tl.zeros([BE, KP], tl.float32)
    for t0 in range(0, LB, BT):
        pos = i_l * LB + t0 + tl.arange(0, BT)
        m_t = pos < L
        m_te = m_t[:, None] & m_e[None, :]
        xc, pre = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_e, m_e, d, L, E, s_xb, s_xl, BT, BE, K, True)
        o_g = ((d * B + i_b) * L + pos[:, None]) * P + o_p[None, :]
        gx = tl.load(p_xdbl_grad + o_g, mask=m_t[:, None] & m_p[None, :], other=0.0)  # [BT, PP]
        o_u = ((d * B + i_b) * L + pos[:, None]) * E + o_e[None, :]
        dxc = tl.load(p_du + o_u, mask=m_te, other=0.0) + tl.dot(gx, wx, input_precision=PRECISION)
        s = tl.sigmoid(pre)
        dpre = tl.where(m_te, dxc * s * (1.0 + pre * (1.0 - s)), 0.0)
        tl.store(p_du + o_u, dpre, mask=m_te)
        xc = tl.where(m_te, xc, 0.0)
        dwx += tl.dot(tl.trans(gx), xc, input_precision=PRECISION)
        for k in tl.static_range(K):
            q = pos - sgn * (K - 1 - k)
            m_q = (q >= 0) & (q < L)
            xk = tl.load(
                p_x + i_b * s_xb + q[:, None] * s_xl + o_e[None, :], mask=m_q[:, None] & m_e[None, :], other=0.0
            )
            col = tl.sum(dpre * xk.to(tl.float32), axis=0)  # [BE]
            dcw += tl.where(o_k[None, :] == k, col[:, None], 0.0)
        dcw += tl.where(o_k[None, :] == K, tl.sum(dpre, axis=0)[:, None], 0.0)
    o_w = ((i_lb * 2 + d) * P + o_p[:, None]) * E + o_e[None, :]
    tl.store(p_dwx + o_w, dwx, mask=m_p[:, None] & m_e[None, :])
    o_c = ((i_lb * 2 + d) * E + o_e[:, None]) * KP + o_k[None, :]
    tl.store(p_dcw + o_c, dcw, mask=m_e[:, None])


@triton.jit(do_not_specialize=["B", "L", "s_db"])
def _conv_bwd_dx_kernel(
    p_dpre,
    p_cw,
    p_dx,
    B,
    L,
    E,
    s_db,
    s_dl,
    BT: tl.constexpr,
    BE: tl.constexpr,
    K: tl.constexpr,
):
    """Grid (cdiv(L, BT), B, cdiv(E, BE)). dx[t] = sum_d sum_k w_d[k] * dpre_d[t + s_d (K-1-k)], s_0 = +1, s_1 = -1."""
    i_t = tl.program_id(0).to(tl.int64)
    i_b = tl.program_id(1).to(tl.int64)
    i_e = tl.program_id(2).to(tl.int64)
    pos = i_t * BT + tl.arange(0, BT)
    m_t = pos < L
    o_e = i_e * BE + tl.arange(0, BE)
    m_e = o_e < E
    dx = tl.zeros([BT, BE], tl.float32)
    for d in tl.static_range(2):
        for k in tl.static_range(K):
            q = pos + (1 - 2 * d) * (K - 1 - k)
            m_q = (q >= 0) & (q < L)
            w = tl.load(p_cw + (d * E + o_e) * K + k, mask=m_e, other=0.0).to(tl.float32)
            g = tl.load(
                p_dpre + ((d * B + i_b) * L + q[:, None]) * E + o_e[None, :],
                mask=m_q[:, None] & m_e[None, :],
                other=0.0,
            )
            dx += w[None, :] * g
    p_out = p_dx + i_b * s_db + pos[:, None] * s_dl + o_e[None, :]
    tl.store(p_out, dx.to(p_dx.dtype.element_ty), mask=m_t[:, None] & m_e[None, :])


# ----------------------------------------------------------------------------------------------- launchers


def conv_xproj_backward(
    x: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor,
    x_proj_w: torch.Tensor,
    dxdbl: torch.Tensor,
    du: torch.Tensor,
    dx_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of x_dbl = x_proj(silu(conv(x))) plus the scan's own du. Writes dx into ``dx_out`` (a (B, L, E)
    view); returns d x_proj_w [2, P, E], d conv_w [2, E, K], d conv_b [2, E] (fp32). ``du`` is overwritten."""
    dwx, dcw = conv_bwd_pre(x, conv_w, conv_b, x_proj_w, dxdbl, du)
    conv_bwd_dx(du, conv_w, dx_out)
    kernel = conv_w.shape[-1]
    dcw = dcw.sum(0)
    return dwx.sum(0), dcw[..., :kernel].contiguous(), dcw[..., kernel].contiguous()


_BWD_BT, _BWD_BE = 32, 32


def conv_bwd_pre(x, conv_w, conv_b, x_proj_w, dxdbl, du) -> tuple[torch.Tensor, torch.Tensor]:
    """In place du -> d(conv pre-activation); returns the weight-gradient partials dwx [n, 2, P, E] and dcw
    [n, 2, E, KP] (column K: d conv_b), to be summed over their first axis."""
    batch, length, channels = x.shape
    n_proj, kernel = x_proj_w.shape[1], conv_w.shape[-1]
    block_t, block_e = _BWD_BT, _BWD_BE
    tokens_per_prog = block_t * max(1, min(64, triton.cdiv(length, block_t)))
    n_lblk = triton.cdiv(length, tokens_per_prog)
    kp = triton.next_power_of_2(kernel + 1)
    dwx = new_buffer(x, (n_lblk * batch, 2, n_proj, channels), torch.float32)
    dcw = new_buffer(x, (n_lblk * batch, 2, channels, kp), torch.float32)
    grid = (n_lblk * batch, triton.cdiv(channels, block_e), 2)
    compiled = _conv_bwd_pre_kernel[grid](
        x,
        conv_w,
        conv_b,
        x_proj_w,
        dxdbl,
        du,
        dwx,
        dcw,
        batch,
        length,
        channels,
        n_proj,
        n_lblk,
        x.stride(0),
        x.stride(1),
        LB=tokens_per_prog,
        BT=block_t,
        BE=block_e,
        PP=max(16, triton.next_power_of_2(n_proj)),
        K=kernel,
        KP=kp,
        PRECISION=_precision(),
        num_warps=8,
    )
    note("conv_bwd_pre_kernel", compiled)
    return dwx, dcw


def conv_bwd_dx(dpre: torch.Tensor, conv_w: torch.Tensor, dx_out: torch.Tensor) -> None:
    """dx (written into the (B, L, E) view ``dx_out``) from both directions' d(conv pre-activation)."""
    batch, length, channels = dx_out.shape
    grid = (triton.cdiv(length, _BWD_BT), batch, triton.cdiv(channels, _BWD_BE))
    compiled = _conv_bwd_dx_kernel[grid](
        dpre,
        conv_w,
        dx_out,
        batch,
        length,
        channels,
        dx_out.stride(0),
        dx_out.stride(1),
        BT=_BWD_BT,
        BE=_BWD_BE,
        K=conv_w.shape[-1],
    )
    note("conv_bwd_dx_kernel", compiled)


# ----------------------------------------------------------------------------------------------- orchestration


def bimamba_backward(xz, x_dbl, h_in, dy, p: dict, cfg: dict) -> tuple[torch.Tensor, dict]:
    """Returns dxz (B, L, 2E) and the stacked parameter gradients (fp32, leading axis = direction)."""
    from ..selective_scan.bwd import scan_backward
    from ..selective_scan.chunk_states import chunk_states, states_for

    channels = xz.shape[-1] // 2
    src = scan_sources(xz, x_dbl, p, delta_raw(x_dbl, p, cfg))
    src["dy"] = dy
    bcfg = backward_config(cfg, channels, xz.shape[1])
    h_in = states_for(src, cfg, h_in, bcfg)
    q_in = chunk_states(src, bcfg, reverse_carry=True, grad=True) if bcfg["n_chunks"] > 1 else None
    dxz = new_buffer(xz, xz.shape)
    bufs = scan_backward(src, bcfg, h_in, q_in, dxz[..., channels:])
    d_dbl, grads = reduce_partials(bufs, x_dbl, p, src)
    grads["x_proj_w"], grads["conv_w"], grads["conv_b"] = conv_xproj_backward(
        xz[..., :channels], p["conv_w"], p["conv_b"], p["x_proj_w"], d_dbl, bufs["du"], dxz[..., :channels]
    )
    return dxz, grads


def reduce_partials(bufs: dict, x_dbl: torch.Tensor, p: dict, src: dict) -> tuple[torch.Tensor, dict]:
    """The scan kernel's partial sums -> d x_dbl [2, B, L, P] and the gradients of dt_w, dt_bias, A_log, D."""
    rank, n_state = p["R"], p["N"]
    n_pad = bufs["dbc"].shape[-1]
    dparam = bufs["dparam"].sum(0)  # [2, E, NP + 3]
    if src["dtproj"]:
        d_rows, d_dt_w = bufs["ddt"].sum(0)[..., :rank], bufs["dw"].sum(0)[..., :rank]
    else:  # ddt: [2, B, L, E] gradient of delta_raw; the dt projection's backward is two GEMMs
        rows = x_dbl[..., :rank]
        d_rows = torch.matmul(bufs["ddt"], p["dt_w"].unsqueeze(1))
        d_dt_w = torch.matmul(bufs["ddt"].flatten(1, 2).transpose(1, 2), rows.flatten(1, 2))
    d_dbl = torch.cat(
        [d_rows, bufs["dbc"][0].sum(0)[..., :n_state], bufs["dbc"][1].sum(0)[..., :n_state]], dim=-1
    ).contiguous()  # [2, B, L, P]
    grads = {
        "dt_w": d_dt_w,
        "dt_bias": dparam[..., n_pad + 1],
        "A_log": dparam[..., :n_state] * p["A"],
        "D": dparam[..., n_pad],
    }
    return d_dbl, grads
