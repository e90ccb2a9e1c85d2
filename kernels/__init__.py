"""vimscope_kernels: the fused Vim v2 mixer core in Triton, with a PyTorch reference and CPU paths.

One folder per op (``naive.py`` the spec, ``fwd.py`` / ``bwd.py`` the kernels, ``function.py`` the autograd
function and public entry, ``cpu.py`` where there is one); ``common/`` holds the launch table and the shared Triton
helpers. Public ops (shapes in their docstrings):
    bimamba_inner(xz, conv_w, conv_b, conv_w_b, conv_b_b, x_proj_w, x_proj_w_b, dt_proj_w, dt_proj_w_b,
                  dt_bias, dt_bias_b, A_log, A_b_log, D, D_b) -> y (B, L, E)             (``bimamba/``)
    selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, softplus=False) -> (B, L, E)
                                                                                          (``selective_scan/``)
    add_rmsnorm(hidden, residual, weight, eps) -> (y, residual)   the Vim block's residual add + RMSNorm
                                                                                          (``rmsnorm/``)
    bi_ssd(x, dt, A, B, C, D, z=None, dt_bias=None) -> (Bt, L, H, P)       bidirectional SSD, Mamba-2 form (``ssd/``)
Importing this package imports neither triton nor the kernels (PEP 562 lazy attributes).
"""

from __future__ import annotations

import importlib

__all__ = ["bimamba_inner", "selective_scan_fn", "bimamba_inner_ref", "selective_scan_ref", "bi_ssd", "bi_ssd_ref"]

_LAZY = {
    "add_rmsnorm": ("vimscope_kernels.rmsnorm.function", "add_rmsnorm"),
    "bimamba_inner": ("vimscope_kernels.bimamba.function", "bimamba_inner"),
    "selective_scan_fn": ("vimscope_kernels.selective_scan.function", "selective_scan_fn"),
    "bimamba_inner_ref": ("vimscope_kernels.bimamba.naive", "bimamba_inner_ref"),
    "selective_scan_ref": ("vimscope_kernels.selective_scan.naive", "selective_scan_ref"),
    "bi_ssd": ("vimscope_kernels.ssd.function", "bi_ssd"),
    "bi_ssd_ref": ("vimscope_kernels.ssd.naive", "bi_ssd_ref"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'vimscope_kernels' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
