"""Residual add + RMSNorm of the Vim block (mamba's fused add-norm with ``prenorm=True, residual_in_fp32=True``).

``naive`` is the PyTorch reference (the spec, also the path with gradients and on CPU), ``fwd`` the Triton kernel
(one pass: hidden and residual read once, the float32 residual and the normalised output written once),
``function`` the public ``add_rmsnorm``. Nothing here imports triton until a kernel is launched.
"""

from __future__ import annotations

import importlib

__all__ = ["add_rmsnorm", "add_rmsnorm_ref"]

_LAZY = {"add_rmsnorm": (".function", "add_rmsnorm"), "add_rmsnorm_ref": (".naive", "add_rmsnorm_ref")}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
