"""Forward of the fused bidirectional Vim v2 mixer core: the conv + x_proj kernel, then the scan.

Depthwise conv1d + SiLU fused with x_proj: the conv output xc (B, L, E) per direction is never stored: the kernel
computes it tile by tile straight into the x_proj GEMM (x_dbl = xc @ x_proj_w^T, the only B*L-sized intermediate,
R + 2N floats per token and direction), and the scan kernels recompute it from x (4 taps, cache hits). Direction 0
convolves causally, direction 1 anti-causally (the flipped sequence's causal conv read in original order), so no
flipped copy exists. dt_proj runs as one batched GEMM (or inside the scan kernel with ``fuse_dt_proj=True``);
[chunk states + combine when the sequence is cut into chunks]; then the scan (both directions in one launch, conv
recomputed, softplus, D skip, silu(z) gate and the average fused).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import interpreted, new_buffer, note
from ..common.triton_helpers import load_u
from .params import delta_raw, scan_sources

# ----------------------------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=["B", "L", "s_xb"])
def _conv_xproj_fwd_kernel(
    p_x,
    p_cw,
    p_cb,
    p_wx,
    p_out,
    B,
    L,
    E,
    P,
    s_xb,
    s_xl,
    BT: tl.constexpr,
    BK: tl.constexpr,
    PP: tl.constexpr,
    K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid (cdiv(L, BT), B, ND). out[d, b, t, :P] = silu(conv_d(x))[b, t, :] @ x_proj_w[d]^T, fp32."""
    i_t = tl.program_id(0).to(tl.int64)
    i_b = tl.program_id(1).to(tl.int64)
    d = tl.program_id(2).to(tl.int64)
    pos = i_t * BT + tl.arange(0, BT)
    m_t = pos < L
    o_p = tl.arange(0, PP)
    m_p = o_p < P
    acc = tl.zeros([BT, PP], tl.float32)
    for k0 in range(0, E, BK):
        o_k = k0 + tl.arange(0, BK)
        m_k = o_k < E
        xc, _ = load_u(p_x, p_cw, p_cb, i_b, pos, m_t, o_k, m_k, d, L, E, s_xb, s_xl, BT, BK, K, True)
        w = tl.load(p_wx + (d * P + o_p[None, :]) * E + o_k[:, None], mask=m_k[:, None] & m_p[None, :], other=0.0)
        acc += tl.dot(xc.to(DOT_DTYPE), w.to(DOT_DTYPE), input_precision=PRECISION)
    o_out = ((d * B + i_b) * L + pos[:, None]) * P + o_p[None, :]
    tl.store(p_out + o_out, acc, mask=m_t[:, None] & m_p[None, :])


@triton.jit(do_not_specialize=["B", "L", "s_xb"])
def _conv_silu_kernel(
    p_x, p_cw, p_cb, p_u, B, L, E, s_xb, s_xl, BT: tl.constexpr, BE: tl.constexpr, K: tl.constexpr, DIR: tl.constexpr
):
    """Grid (cdiv(L, BT), B, cdiv(E, BE)). u[b, t, e] = silu(conv_DIR(x))[b, t, e] in u's dtype: direction 0
    causal (taps at t - K + 1 .. t), direction 1 anti-causal (t .. t + K - 1, the flipped sequence's conv)."""
    i_t = tl.program_id(0).to(tl.int64)
    i_b = tl.program_id(1).to(tl.int64)
    i_e = tl.program_id(2).to(tl.int64)
    pos = i_t * BT + tl.arange(0, BT)
    m_t = pos < L
    o_e = i_e * BE + tl.arange(0, BE)
    m_e = o_e < E
    pre = tl.zeros([BT, BE], tl.float32) + tl.load(p_cb + DIR * E + o_e, mask=m_e, other=0.0)[None, :]
    for k in tl.static_range(K):
        q = pos + (1 - 2 * DIR) * (k - (K - 1))  # tap k multiplies x[t - (K - 1 - k)] (direction 1: t + ...)
        m_q = (q >= 0) & (q < L)
        xk = tl.load(p_x + i_b * s_xb + q[:, None] * s_xl + o_e[None, :], mask=m_q[:, None] & m_e[None, :], other=0.0)
        pre += tl.load(p_cw + (DIR * E + o_e) * K + k, mask=m_e, other=0.0)[None, :] * xk.to(tl.float32)
    o_u = (i_b * L + pos[:, None]) * E + o_e[None, :]
    tl.store(p_u + o_u, (pre * tl.sigmoid(pre)).to(p_u.dtype.element_ty), mask=m_t[:, None] & m_e[None, :])


# ----------------------------------------------------------------------------------------------- launchers

_DOT_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _precision() -> str:
    """fp32 dots: three TF32 passes on tensor cores (about fp32 accuracy); the interpreter computes in fp32."""
    return "tf32x3"


def conv_xproj_forward(
    x: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, x_proj_w: torch.Tensor, mode: str | None = None
) -> torch.Tensor:
    """x: (B, L, E) view with channel stride 1; conv_w [2, E, K]; conv_b [2, E]; x_proj_w [2, P, E].
    Returns x_dbl [2, B, L, P] fp32 (dt rows | B | C of each direction).

    mode "split" (the default for 16-bit x on the GPU): the conv + SiLU of each direction as a memory-bound
    kernel writing u (B, L, E) in x's dtype, then x_proj as a cuBLAS GEMM in that dtype with an fp32 result (what
    official Vim does under autocast); on an H100 its output is bit-identical to the fused kernel's and the
    bf16 model runs 1.06-1.11x faster with it. "fused" (the default for fp32 x, with three-pass TF32 dots that
    keep fp32 accuracy, and in the interpreter): one Triton kernel per direction that forms the conv tile by
    tile straight into a tensor-core dot (u never stored). Timings: docs/kernels.md.
    """
    if mode is None:
        sixteen_bit = x.dtype in (torch.bfloat16, torch.float16)
        mode = "split" if sixteen_bit and x.is_cuda and not interpreted() else "fused"
    if mode == "split":
        return _conv_then_gemm(x, conv_w, conv_b, x_proj_w)
    if mode != "fused":
        raise ValueError(f"conv_xproj mode must be 'split' or 'fused', got {mode!r}")
    batch, length, channels = x.shape
    n_proj = x_proj_w.shape[1]
    out = new_buffer(x, (2, batch, length, n_proj), torch.float32)
    block_t, block_k = 32, 32
    # 16-bit inputs multiply in their own dtype on the GPU; Triton 3.6's interpreter gets bf16 dots wrong
    dot_dtype = torch.float32 if interpreted() else x.dtype
    grid = (triton.cdiv(length, block_t), batch, 2)
    compiled = _conv_xproj_fwd_kernel[grid](
        x,
        conv_w,
        conv_b,
        x_proj_w,
        out,
        batch,
        length,
        channels,
        n_proj,
        x.stride(0),
        x.stride(1),
        BT=block_t,
        BK=block_k,
        PP=max(16, triton.next_power_of_2(n_proj)),
        K=conv_w.shape[-1],
        DOT_DTYPE=_DOT_DTYPES[dot_dtype],
        PRECISION=_precision() if dot_dtype == torch.float32 else None,
        num_warps=8,
    )
    note("conv_xproj_fwd_kernel", compiled)
    return out


def _conv_then_gemm(x, conv_w, conv_b, x_proj_w) -> torch.Tensor:
    """Per direction: the conv + SiLU into u (B, L, E) in x's dtype (one buffer for both directions, so the peak
    grows by B*L*E elements only), then x_proj as a cuBLAS GEMM in that dtype, written into x_dbl (fp32)."""
    batch, length, channels = x.shape
    n_proj = x_proj_w.shape[1]
    u = new_buffer(x, (batch, length, channels))
    out = new_buffer(x, (2, batch, length, n_proj), torch.float32)
    block_t, block_e = 32, 64
    grid = (triton.cdiv(length, block_t), batch, triton.cdiv(channels, block_e))
    for d in range(2):
        compiled = _conv_silu_kernel[grid](
            x, conv_w, conv_b, u, batch, length, channels, x.stride(0), x.stride(1),
            BT=block_t, BE=block_e, K=conv_w.shape[-1], DIR=d, num_warps=4,
        )  # fmt: skip
        note("conv_silu_kernel", compiled)
        x_dbl = _mm_fp32_out(u.view(batch * length, channels), x_proj_w[d].to(x.dtype).t())
        out[d].copy_(x_dbl.view(batch, length, -1))
    return out


def _mm_fp32_out(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with 16-bit operands and, where PyTorch offers it (CUDA), an fp32 result (no rounding of x_dbl to
    8 or 11 bits); otherwise the operands' dtype."""
    if a.is_cuda:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError):
            pass
    return torch.mm(a, b)


def bimamba_forward(xz: torch.Tensor, p: dict, cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns y (B, L, E), x_dbl [2, B, L, R + 2N] fp32 and the chunk-entering states (None for one chunk)."""
    from ..selective_scan.chunk_states import chunk_states
    from ..selective_scan.fwd import scan_forward

    channels = xz.shape[-1] // 2
    # training keeps x_dbl at fp32 accuracy (it is saved for the backward): the fused kernel unless asked otherwise
    mode = cfg["conv_xproj"] or "fused"
    x_dbl = conv_xproj_forward(xz[..., :channels], p["conv_w"], p["conv_b"], p["x_proj_w"], mode)
    src = scan_sources(xz, x_dbl, p, delta_raw(x_dbl, p, cfg))
    h_in = chunk_states(src, cfg) if cfg["n_chunks"] > 1 else None
    y = new_buffer(xz, xz.shape[:2] + (channels,))
    scan_forward(src, cfg, y, h_in)
    return y, x_dbl, h_in


def bimamba_infer(xz: torch.Tensor, p: dict, cfg: dict) -> torch.Tensor:
    """Forward without autograd state: conv + x_proj, then the sequential scan (dt projection fused)."""
    from .seq import seq_scan_forward

    channels = xz.shape[-1] // 2
    x_dbl = conv_xproj_forward(xz[..., :channels], p["conv_w"], p["conv_b"], p["x_proj_w"], cfg["conv_xproj"])
    return seq_scan_forward(xz, x_dbl, p, cfg)
