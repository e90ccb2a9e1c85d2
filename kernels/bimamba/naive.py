"""Readable float reference of the Vim v2 mixer core: the specification every kernel is tested against.

Shapes (B batch, L tokens, E inner channels, N state size, R dt rank, K conv taps):

    xz        (B, L, 2E)   in_proj output; x = xz[..., :E], z = xz[..., E:]
    conv_w    (E, 1, K) or (E, K), conv_b (E,)       forward-direction depthwise causal conv
    x_proj_w  (R + 2N, E)                             -> (dt, B, C) per token
    dt_proj_w (E, R), dt_bias (E,)                    delta = softplus(dt_proj_w @ dt + dt_bias)
    A_log     (E, N)                                  A = -exp(A_log)
    D         (E,)                                    skip connection
    (the *_b arguments are the backward direction's own parameters)

    y         (B, L, E)    (out_forward + flip(out_backward)) / 2, before out_proj

This is exactly what hustvl/Vim's ``Mamba.forward`` with ``bimamba_type="v2"`` and ``if_devide_out=True``
computes between ``in_proj`` and ``out_proj``: the backward branch runs on ``xz.flip(L)`` (so z is
flipped with x and the gate stays per position). Everything runs in the input dtype, so float64
inputs give a float64 reference; a per-token loop keeps it obviously right rather than fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..selective_scan.naive import selective_scan_ref

__all__ = ["PARAM_NAMES", "bimamba_inner_ref", "mamba_inner_ref", "causal_conv1d_ref"]

# The weights of a Vim v2 mixer in the order the public op takes them after ``xz`` (the *_b: backward direction).
PARAM_NAMES = (
    "conv_w",
    "conv_b",
    "conv_w_b",
    "conv_b_b",
    "x_proj_w",
    "x_proj_w_b",
    "dt_proj_w",
    "dt_proj_w_b",
    "dt_bias",
    "dt_bias_b",
    "A_log",
    "A_b_log",
    "D",
    "D_b",
)


def causal_conv1d_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise causal conv1d + SiLU. x: (B, L, E); weight: (E, K) or (E, 1, K); returns (B, L, E).

    out[t] = silu(bias + sum_k weight[k] * x[t - (K - 1) + k]), zero padding before t = 0.
    """
    weight = weight.reshape(weight.shape[0], -1)
    E, K = weight.shape
    xt = F.pad(x.transpose(1, 2), (K - 1, 0))  # [B, E, L + K - 1]
    out = F.conv1d(xt, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype), groups=E)
    return F.silu(out).transpose(1, 2)


def mamba_inner_ref(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D) -> torch.Tensor:
    """One direction of the mixer from the in_proj halves x, z (B, L, E) to the gated scan output."""
    d_state = A_log.shape[1]
    rank = dt_proj_w.shape[1]
    xc = causal_conv1d_ref(x, conv_w, conv_b)  # [B, L, E]
    x_dbl = xc @ x_proj_w.to(xc.dtype).t()  # [B, L, R + 2N]
    dt, b, c = torch.split(x_dbl, [rank, d_state, d_state], dim=-1)
    delta = dt @ dt_proj_w.to(xc.dtype).t()  # [B, L, E]
    A = -torch.exp(A_log.to(xc.dtype))
    return selective_scan_ref(xc, delta, A, b, c, D.to(xc.dtype), z, dt_bias.to(xc.dtype), softplus=True)


def bimamba_inner_ref(
    xz,
    conv_w,
    conv_b,
    conv_w_b,
    conv_b_b,
    x_proj_w,
    x_proj_w_b,
    dt_proj_w,
    dt_proj_w_b,
    dt_bias,
    dt_bias_b,
    A_log,
    A_b_log,
    D,
    D_b,
) -> torch.Tensor:
    """Both directions of a Vim v2 mixer, averaged: (B, L, 2E) -> (B, L, E). See the module docstring."""
    x, z = xz.chunk(2, dim=-1)
    fwd = mamba_inner_ref(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D)
    xb, zb = x.flip(1), z.flip(1)
    bwd = mamba_inner_ref(xb, zb, conv_w_b, conv_b_b, x_proj_w_b, dt_proj_w_b, dt_bias_b, A_b_log, D_b)
    return (fwd + bwd.flip(1)) / 2
