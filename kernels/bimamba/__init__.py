"""The fused bidirectional Vim v2 mixer core op, ``bimamba_inner`` (between in_proj and out_proj).

``naive`` is the float reference (the spec, also the CPU path with gradients), ``cpu`` the compiled CPU
inference path, ``fwd`` / ``bwd`` the Triton kernels and their orchestration (the scan kernels themselves come
from ``vimscope_kernels.selective_scan``), ``function`` the ``autograd.Function`` and the public function,
``stages`` per-kernel callables for benchmarks. Nothing here imports triton until a kernel is launched.
"""

from __future__ import annotations

import importlib

__all__ = ["PARAM_NAMES", "BimambaInnerFn", "bimamba_inner", "bimamba_inner_ref"]

_LAZY = {
    "bimamba_inner": (".function", "bimamba_inner"),
    "BimambaInnerFn": (".function", "BimambaInnerFn"),
    "bimamba_inner_ref": (".naive", "bimamba_inner_ref"),
    "PARAM_NAMES": (".naive", "PARAM_NAMES"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
