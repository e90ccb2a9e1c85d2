"""Which implementation of the mixer core a model calls; ``models/`` holds no scan of its own.

The kernel package's public op ``vimscope_kernels.bimamba_inner`` dispatches by device (Triton on CUDA, the
fast CPU forward without grad, an autograd path otherwise). Until that op exists in the installed tree, this
falls back to the kernel package's own pieces: the numba CPU forward when no gradient is needed, the float
reference (``naive.bimamba_inner_ref``, autograd through plain torch ops) otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = ["bimamba_inner", "kernel_op"]


@functools.lru_cache(maxsize=1)
def kernel_op() -> Callable | None:
    """The kernel package's public dispatcher, or None while it is not there."""
    try:
        from vimscope_kernels import bimamba_inner as op
    except ImportError:
        return None
    return op


def _fallback(xz: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    needs_grad = torch.is_grad_enabled() and (xz.requires_grad or any(p.requires_grad for p in params))
    if xz.device.type == "cpu" and not needs_grad:
        from vimscope_kernels.selective_scan.cpu import bimamba_inner_cpu

        return bimamba_inner_cpu(xz, *params)
    from vimscope_kernels.selective_scan.naive import bimamba_inner_ref

    return bimamba_inner_ref(xz, *params)


def bimamba_inner(
    xz: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor,
    conv_w_b: torch.Tensor,
    conv_b_b: torch.Tensor,
    x_proj_w: torch.Tensor,
    x_proj_w_b: torch.Tensor,
    dt_proj_w: torch.Tensor,
    dt_proj_w_b: torch.Tensor,
    dt_bias: torch.Tensor,
    dt_bias_b: torch.Tensor,
    A_log: torch.Tensor,
    A_b_log: torch.Tensor,
    D: torch.Tensor,
    D_b: torch.Tensor,
) -> torch.Tensor:
    """(B, L, 2E) in_proj output -> (B, L, E) averaged gated scans, before out_proj (DESIGN: the kernel op)."""
    params = (conv_w, conv_b, conv_w_b, conv_b_b, x_proj_w, x_proj_w_b, dt_proj_w, dt_proj_w_b)
    params += (dt_bias, dt_bias_b, A_log, A_b_log, D, D_b)
    op = kernel_op()
    if op is not None:
        return op(xz, *params)
    return _fallback(xz, *params)
