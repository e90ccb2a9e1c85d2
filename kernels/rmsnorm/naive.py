"""Reference of the residual add + RMSNorm: the spec the kernel is tested against (and the autograd / CPU path)."""

from __future__ import annotations

import torch

__all__ = ["add_rmsnorm_ref"]


def add_rmsnorm_ref(
    hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (..., D) any float dtype; residual (..., D) float32 or None (the first block: the residual is the
    hidden itself); weight (D,). Returns (y in weight's dtype, the new residual in float32):

        r = residual + float(hidden)   (or float(hidden));   y = r / sqrt(mean(r^2) + eps) * weight
    """
    r = hidden.float() if residual is None else residual + hidden.float()
    y = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(weight.dtype), r
