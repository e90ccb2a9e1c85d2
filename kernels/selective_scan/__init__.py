"""The one-direction selective scan op (Mamba's ``selective_scan_fn``, token-major layout).

``naive`` is the float reference (the spec), ``fwd`` / ``bwd`` the Triton kernels, ``chunk_states`` the chunk
carry shared by both, ``function`` the ``autograd.Function`` and the public ``selective_scan_fn``. Nothing here
imports triton until a kernel is launched (PEP 562 lazy attributes).
"""

from __future__ import annotations

import importlib

__all__ = ["SelectiveScanFn", "selective_scan_fn", "selective_scan_ref"]

_LAZY = {
    "selective_scan_fn": (".function", "selective_scan_fn"),
    "SelectiveScanFn": (".function", "SelectiveScanFn"),
    "selective_scan_ref": (".naive", "selective_scan_ref"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
