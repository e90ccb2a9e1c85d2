"""Readable float reference of the one-direction selective scan (token-major layout): the spec its kernels are
tested against. Everything runs in the input dtype, so float64 inputs give a float64 reference; a per-token loop
keeps it obviously right rather than fast."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["selective_scan_ref"]


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    softplus: bool = False,
) -> torch.Tensor:
    """One-direction selective scan, token-major layout.

    u, delta, z: (B, L, E); A: (E, N); B, C: (B, L, N); D, delta_bias: (E,). Returns (B, L, E).

        delta_t = softplus(delta_t + delta_bias)          (when softplus)
        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      h: (B, E, N), h_{-1} = 0
        y_t = <C_t, h_t> + D * u_t
        out = y * silu(z)
    """
    if delta_bias is not None:
        delta = delta + delta_bias
    if softplus:
        delta = F.softplus(delta)
    batch, length, channels = u.shape
    h = u.new_zeros(batch, channels, A.shape[1])
    ys = []
    for t in range(length):
        d_t = delta[:, t, :, None]  # [B, E, 1]
        h = torch.exp(d_t * A) * h + d_t * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1))  # [B, E]
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y
