"""vimscope_kernels: the fused Vim v2 mixer core in Triton, with a PyTorch reference and CPU paths.

Public ops (shapes in their docstrings):
    bimamba_inner(xz, conv_w, conv_b, conv_w_b, conv_b_b, x_proj_w, x_proj_w_b, dt_proj_w, dt_proj_w_b,
                  dt_bias, dt_bias_b, A_log, A_b_log, D, D_b) -> y (B, L, E)
    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, softplus=False) -> (B, L, E)
Importing this package imports neither triton nor the kernels (PEP 562 lazy attributes); ``selective_scan`` is
also the op's subpackage, made callable, so ``vimscope_kernels.selective_scan.naive`` keeps working.
"""

from __future__ import annotations

import importlib

__all__ = ["bimamba_inner", "selective_scan", "selective_scan_fn", "bimamba_inner_ref", "selective_scan_ref"]

_LAZY = {
    "bimamba_inner": ("vimscope_kernels.selective_scan.bimamba", "bimamba_inner"),
    "selective_scan_fn": ("vimscope_kernels.selective_scan.scan", "selective_scan"),
    "bimamba_inner_ref": ("vimscope_kernels.selective_scan.naive", "bimamba_inner_ref"),
    "selective_scan_ref": ("vimscope_kernels.selective_scan.naive", "selective_scan_ref"),
}


def __getattr__(name: str):
    if name == "selective_scan":
        return importlib.import_module("vimscope_kernels.selective_scan")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'vimscope_kernels' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
