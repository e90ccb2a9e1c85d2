"""The selective-scan op: ``naive`` (the float reference, the spec), Triton kernels, autograd and public functions.

This package is callable: ``vimscope_kernels.selective_scan(u, delta, A, B, C, ...)`` is the one-direction op
(the interface contract names it so) while ``vimscope_kernels.selective_scan.naive`` stays importable. Nothing
here imports triton until a kernel is launched.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["bimamba_inner", "selective_scan", "bimamba_inner_ref", "selective_scan_ref"]

_LAZY = {
    "bimamba_inner": (".bimamba", "bimamba_inner"),
    "selective_scan": (".scan", "selective_scan"),
    "BimambaInnerFn": (".bimamba", "BimambaInnerFn"),
    "SelectiveScanFn": (".scan", "SelectiveScanFn"),
    "bimamba_inner_ref": (".naive", "bimamba_inner_ref"),
    "selective_scan_ref": (".naive", "selective_scan_ref"),
}


_SUBMODULES = ("naive", "cpu", "bimamba", "scan", "config")


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Calling the package runs the one-direction selective scan."""

    def __call__(self, *args, **kwargs):
        from .scan import selective_scan

        return selective_scan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
