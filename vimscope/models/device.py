"""Where and in which precision a model runs: the one place that turns ``--device`` / ``--precision`` into torch.

Used by ``vimscope segment`` (the pipeline), ``train`` and ``eval``, so ``auto`` means the same everywhere.
"""

from __future__ import annotations

import torch

from vimscope.errors import ConfigError

__all__ = ["cpu_has_native_bf16", "resolve_device", "resolve_dtype"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} asked for, but no CUDA device is available (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX, read from /proc/cpuinfo):
    there oneDNN runs a model's GEMMs and convolutions in bf16 about 1.4x faster than in float32; elsewhere bf16
    is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA and on CPUs with native bf16 (the GPU path's precision and tolerance), float32
    elsewhere. ``float32`` keeps the CPU reference path."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if precision not in DTYPES:
        raise ConfigError(f"precision must be auto or one of {', '.join(DTYPES)}, not {precision!r}")
    return DTYPES[precision]
