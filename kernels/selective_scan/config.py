"""Launch configuration of the scan kernels: chunk length, tile shape, warps.

The chunk length decides the parallelism along the sequence. One chunk per sequence costs one exp per state
element; several chunks cost a second pass for the chunk states, so chunks are only cut when batch x channel
blocks alone would leave the GPU idle (batch 1 on a 16k-token tile).
"""

from __future__ import annotations

import os

import torch

# Tests set this: every buffer a kernel must fill starts as NaN, so an element it forgets to write shows up.
POISON_OUTPUTS = False

# Benchmarks set this: launchers then keep each compiled kernel's register and spill counts in KERNEL_STATS.
RECORD_STATS = False
KERNEL_STATS: dict[str, dict] = {}

# Programs wanted in flight: a few per multiprocessor hides the scan's latency (132 SMs on an H100).
_PROGRAMS_PER_SM = 4
_MIN_CHUNK = 64


def interpreted() -> bool:
    """True when Triton runs kernels in its CPU interpreter (set by the root conftest.py without a GPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def prepare_launch() -> None:
    """Called before the first launch: under the interpreter, apply its NumPy compatibility patch."""
    if interpreted():
        from .interpreter_compat import patch_interpreter

        patch_interpreter()


def note(name: str, compiled) -> None:
    """Keep the compiler's resource report of a launched kernel (registers, spills, shared memory)."""
    if RECORD_STATS and compiled is not None:
        KERNEL_STATS[name] = {
            key: getattr(compiled, key, None) for key in ("n_regs", "n_spills", "shared", "num_warps")
        } | {"num_warps": getattr(getattr(compiled, "metadata", None), "num_warps", None)}


def new_buffer(like: torch.Tensor, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised buffer for a kernel to fill (NaN-filled when POISON_OUTPUTS is on)."""
    dtype = dtype or like.dtype
    if POISON_OUTPUTS:
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=like.device)
    return torch.empty(tuple(shape), dtype=dtype, device=like.device)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def scan_config(
    batch: int,
    length: int,
    channels: int,
    device: torch.device,
    *,
    chunk_len: int | None = None,
    block_t: int | None = None,
    block_e: int | None = None,
    num_warps: int | None = None,
    bwd_block_e: int | None = None,
    bwd_num_warps: int | None = None,
    fuse_dt_proj: bool = False,
) -> dict:
    """The launch parameters for one call; explicit arguments win over the defaults.

    chunk_len must be a power of two; the tile length is min(block_t, chunk_len) so a chunk holds whole tiles.
    The backward keeps about three times as many [T, BE, N] tiles live as the forward, hence its own block_e.
    """
    if chunk_len is not None and (chunk_len < 1 or chunk_len & (chunk_len - 1)):
        raise ValueError(f"chunk_len must be a power of two >= 1, got {chunk_len}")
    block_t = block_t or 16
    # tile shapes from the H100 sweep in bench_scan.py (2026-11-25): BE=16, 4 warps was fastest both ways
    block_e = block_e or 16
    bwd_block_e = bwd_block_e or 16
    n_eblk = -(-channels // block_e)
    if chunk_len is None:
        chunk_len = _pow2_at_least(length)
        if device.type == "cuda" and not interpreted():
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            wanted = _PROGRAMS_PER_SM * sms
            if batch * n_eblk < wanted:
                n_chunks = -(-wanted // (batch * n_eblk))
                chunk_len = max(_MIN_CHUNK, _pow2_at_least(-(-length // n_chunks)))
                chunk_len = min(chunk_len, _pow2_at_least(length))
    block_t = min(block_t, chunk_len)
    prepare_launch()
    return {
        "chunk_len": chunk_len,
        "block_t": block_t,
        "block_e": block_e,
        "num_warps": num_warps or 4,
        "n_chunks": max(1, -(-length // chunk_len)),
        "n_eblk": n_eblk,
        "bwd_block_e": bwd_block_e,
        "bwd_num_warps": bwd_num_warps or 4,
        "fuse_dt_proj": bool(fuse_dt_proj),
    }


def backward_config(cfg: dict, channels: int) -> dict:
    """The same chunks with the backward's channel block and warps."""
    return cfg | {
        "block_e": cfg["bwd_block_e"],
        "n_eblk": -(-channels // cfg["bwd_block_e"]),
        "num_warps": cfg["bwd_num_warps"],
    }
