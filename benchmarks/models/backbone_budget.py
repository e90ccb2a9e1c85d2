"""backbone's kernel-time budget: which category (scan, GEMMs, norm + residual, casts/copies, attention, other) each
profiled kernel belongs to, and the per-category sums of a profile."""

from __future__ import annotations

import re

from benchmarks.common.runinfo import ROOT

CATEGORIES = ("scan", "gemm", "norm_residual", "cast_copy", "attention", "other")


def scan_kernel_names() -> frozenset[str]:
    """Names of our Triton kernels (``def _..._kernel(`` in kernels/**/*.py), as the profiler shows them."""
    names = set()
    for path in (ROOT / "kernels").rglob("*.py"):
        names.update(re.findall(r"^def (\w+_kernel)\(", path.read_text(), flags=re.M))
    return frozenset(names)


_GEMM = re.compile(r"gemm|gemv|cutlass|xmma|cublas|nvjet|wgmma|cudnn|splitk|aten::(addmm|mm|bmm|matmul|linear)$"
                   r"|aten::\w*conv", re.I)  # fmt: skip
ATTENTION_KERNELS = re.compile(r"flash|fmha|attention|softmax", re.I)
_CAST = re.compile(r"copy|memcpy|memset|catarray|aten::(to|_to_copy|contiguous|clone|cat|stack|empty\w*|fill_)$"
                   r"|fill_kernel|convert", re.I)  # fmt: skip
_NORM = re.compile(r"functor_add|addfunctor|add_kernel|mulfunctor|functor_mul|mul_kernel|meanops|reduce_kernel|pow_"
                   r"|rsqrt|aten::(add_?|mul_?|mean|pow|rsqrt|sum)$", re.I)  # fmt: skip


def categorize(name: str, scan_names: frozenset[str] = frozenset()) -> str:
    """One of CATEGORIES for a CUDA kernel name (or a CPU aten op name on a CPU run)."""
    if any(s in name for s in scan_names):
        return "scan"
    for category, pattern in (("gemm", _GEMM), ("attention", ATTENTION_KERNELS), ("cast_copy", _CAST)):
        if pattern.search(name):
            return category
    return "norm_residual" if _NORM.search(name) else "other"


def budget(kernels: list[dict], scan_names: frozenset[str], top: int = 10) -> dict:
    """Per-category ms and % of the kernel time, plus the ``top`` kernels."""
    total = sum(k["ms"] for k in kernels) or 1e-12
    cats = {c: {"ms": 0.0, "pct": 0.0, "kernels": 0.0} for c in CATEGORIES}
    for k in kernels:
        k["category"] = categorize(k["name"], scan_names)
        cats[k["category"]]["ms"] += k["ms"]
        cats[k["category"]]["kernels"] += k["count"]
    for c in cats.values():
        c["pct"] = 100 * c["ms"] / total
    ranked = sorted(kernels, key=lambda k: -k["ms"])[:top]
    tops = [{**k, "name": k["name"][:160], "pct": 100 * k["ms"] / total} for k in ranked]
    return {"kernel_ms": total, "kernel_launches": sum(k["count"] for k in kernels), "categories": cats, "top": tops}
