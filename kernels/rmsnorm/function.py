"""``add_rmsnorm``: the Triton kernel for CUDA inference, the PyTorch reference where gradients are needed or off
CUDA (the two compute the same function; tests/kernels/test_add_rmsnorm.py)."""

from __future__ import annotations

import torch

from .naive import add_rmsnorm_ref


def add_rmsnorm(
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-5,
    *,
    backend=None,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (..., D); residual (..., D) float32 or None; weight (D,). Returns (y in weight's dtype, new float32
    residual), see ``naive.add_rmsnorm_ref``. backend: None (the launch table's ``triton_rmsnorm``: Triton on CUDA
    without gradients when it is on), "triton" (CUDA or the interpreter, without gradients) or "reference".

    inplace: without gradients, the new residual overwrites ``residual`` and y overwrites ``hidden`` where their
    dtypes and layout allow, so a block allocates nothing here (the caller must own both: a model's own stream);
    with no residual yet, a float32 ``hidden`` becomes the residual. Each element is read before it is written, by
    the same program, so the values are those of the copying path."""
    if residual is not None and residual.shape != hidden.shape:
        raise ValueError(f"residual must have hidden's shape {tuple(hidden.shape)}, got {tuple(residual.shape)}")
    if weight.shape != hidden.shape[-1:]:
        raise ValueError(f"weight must have shape ({hidden.shape[-1]},), got {tuple(weight.shape)}")
    if backend not in (None, "triton", "reference"):
        raise ValueError(f"backend must be 'triton', 'reference' or None, got {backend!r}")
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, residual, weight))
    if backend is None:
        from ..common.config import DEFAULTS

        backend = "triton" if DEFAULTS["triton_rmsnorm"] and hidden.is_cuda else "reference"
    use_triton = backend == "triton" and not needs_grad
    inplace = inplace and not needs_grad
    if not use_triton or hidden.dtype == torch.float64 or hidden.numel() == 0:
        if inplace and residual is not None and _reusable(residual, torch.float32):
            return _reference_inplace(hidden, residual, weight, eps)
        return add_rmsnorm_ref(hidden, residual, weight, eps)  # the first block's r may be a float32 hidden itself
    from ..common.config import prepare_launch
    from .fwd import add_rmsnorm_forward

    prepare_launch()
    y_out = r_out = None
    if inplace and residual is None and _reusable(hidden, torch.float32):
        r_out = hidden  # the first block's float32 embedding becomes the residual, as the reference's float() does
    elif inplace:
        y_out = hidden if _reusable(hidden, weight.dtype) else None
        r_out = residual if residual is not None and _reusable(residual, torch.float32) else None
    residual = residual.float().contiguous() if residual is not None else None
    with torch.no_grad():
        return add_rmsnorm_forward(hidden.contiguous(), residual, weight.contiguous(), eps, y=y_out, r_out=r_out)


def _reusable(t: torch.Tensor, dtype: torch.dtype) -> bool:
    return t.dtype == dtype and t.is_contiguous()


def _reference_inplace(hidden, residual, weight, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """``add_rmsnorm_ref``'s values (same operations in the same order) written over the stream: the residual
    updated in place, y into hidden when it can hold it (no new buffers for a float32 model on the CPU)."""
    r = residual.add_(hidden.float())
    inv = torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps)
    if not _reusable(hidden, weight.dtype):
        return (r * inv * weight.float()).to(weight.dtype), r
    if hidden.dtype == torch.float32:
        return torch.mul(r, inv, out=hidden).mul_(weight), r
    return hidden.copy_(r * inv * weight.float()), r
