"""The launch table of the kernels (shared by every op): chunk length, tile shape, warps, pipeline stages,
kernel switches.

The chunk length decides the parallelism along the sequence. One chunk per sequence costs one exp per state
element; several chunks cost a second pass for the chunk states, so chunks are only cut when batch x channel
blocks alone would leave the GPU idle (batch 1 on a 16k-token tile).

Where a value comes from, first match wins: an explicit argument (``bimamba_inner(..., block_e=32)``), then the
entry of ``TUNED`` for this call's bucket (arch, dtype, E, L, batch; never under the interpreter, which keeps the
small default tiles), then the defaults below. ``benchmarks.kernels.tune_scan`` measures candidates on a GPU and
prints a proposed ``TUNED`` table.
"""

from __future__ import annotations

import os

import torch

# Tests set this: every buffer a kernel must fill starts as NaN, so an element it forgets to write shows up.
POISON_OUTPUTS = False

# Benchmarks set this: launchers then keep each compiled kernel's register and spill counts in KERNEL_STATS.
RECORD_STATS = False
KERNEL_STATS: dict[str, dict] = {}

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


def kernel_meta(src: dict, cfg: dict) -> dict:
    """Compile-time constants shared by the scan kernels (from the sources of a call and its launch config)."""
    return dict(
        CL=cfg["chunk_len"],
        T=cfg["block_t"],
        BE=cfg["block_e"],
        NP=_pow2_at_least(src["N"]),
        RP=_pow2_at_least(max(src["R"], 1)),
        K=src["K"],
        CONV=src["conv"],
        DTPROJ=src["dtproj"],
        SOFTPLUS=src["softplus"],
        ELAST=cfg["elast"],
        EXP_POLY=cfg["exp_poly"],
    )


def launch_options(cfg: dict) -> dict:
    """Launch options of a scan kernel (warps, software-pipeline stages)."""
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


# Every launch key, its default (None: derived, see scan_config) and what it sets. The bwd_* keys configure the
# backward kernels; unset, they follow their forward key where that makes sense (chunk length, stages, switches).
DEFAULTS: dict[str, object] = {
    "chunk_len": None,  # power of two; None: one chunk unless batch x channel blocks leave SMs short of sm_warps
    "sm_warps": 16,  # warps wanted in flight per SM when the launcher picks chunks (16: 4 programs of 4 warps)
    "block_t": 16,  # positions per tile (the associative scan's length), power of two
    "block_e": None,  # channels per program, power of two: 16, or 32 x num_warps with elast (one channel a thread)
    "num_warps": 4,
    "num_stages": 3,  # Triton's default for CUDA (sm_90 code is the same for 1-3: no loop here is pipelined)
    "elast": False,  # state tiles [T, N, BE] (channels-last) instead of [T, BE, N]
    "exp_poly": 0,  # 0: exp2 on MUFU; 1: all on the FMA pipe (polynomial); k > 1: every k-th tile on the FMA pipe
    "skip_last_chunk": True,  # the chunk-state pass skips the chunk whose state enters no chunk (1/n_chunks less)
    "bwd_chunk_len": None,  # None: the forward's; else the backward recomputes or subsamples the chunk states
    "bwd_block_t": 8,  # None: block_t (8 on 2 warps: 26-33 % faster backward on sm_90, still spilling)
    "bwd_block_e": None,  # None: 16, or 32 x bwd_num_warps with bwd_elast
    "bwd_num_warps": 2,
    "bwd_num_stages": None,  # None: num_stages
    "bwd_elast": False,  # channels-last backward tiles (independent of elast: the layouts trade off differently)
    "bwd_exp_poly": None,  # None: exp_poly
    "bwd_skip_last_chunk": None,  # None: skip_last_chunk (the gradient-carry pass)
    "bwd_rev_flip": True,  # reverse scans as forward scans of flipped tiles (no lane butterflies)
    "bwd_edot": False,  # dB, dC summed over channels on the tensor cores (a GEMM with ones) instead of shuffles
    "fuse_dt_proj": False,  # the rank-R dt projection inside the scan kernels instead of one batched GEMM
    # The inference kernels below, on by default since vim_tiny ran 1.33-1.56x faster with them on an H100
    # (benchmarks/results/backbone_h100_2026-12-07.json); both passed their GPU tests (test_seq.py, test_rmsnorm.py).
    "conv_xproj": None,  # "split" (conv kernel + cuBLAS GEMM) or "fused" (one Triton kernel); None: split for
    # 16-bit inputs on the GPU (bit-identical there, 1.06-1.11x the bf16 model), fused for fp32 and the interpreter
    "seq_fwd": True,  # forward without gradients: the sequential kernel (bimamba.fwd._seq_scan_kernel)
    "seq_block_e": 32,  # its channels per direction and program (2 x seq_block_e threads, one column each)
    "seq_chunk_len": None,  # its chunk length (any int); None: one chunk unless the batch leaves SMs short
    "seq_sm_warps": 8,  # warps wanted in flight per SM when seq_chunk_len is picked
    "seq_exp_poly": 0,  # its states below this index take exp2 on the FMA pipe (polynomial) instead of MUFU
    "seq_maxnreg": 168,  # its register cap: 6 programs of 2 warps per SM, so batch 64 x E 384 runs in one wave
    "triton_rmsnorm": True,  # the Vim block's residual add + RMSNorm as one Triton kernel (CUDA, no gradients)
}
LAUNCH_KEYS = tuple(DEFAULTS)

# Tuned launch keys per bucket, from benchmarks.kernels.tune_scan on the named card (empty: the defaults everywhere).
# Bucket: (arch "sm90", dtype "bf16" | "fp32" | "fp16", E, L, batch), each of E, L, batch rounded up to a power of
# two (L=16385 -> 32768, L=4097 and 6085 -> 8192, L=401 -> 512). Only exact buckets match.
# Defaults above: the H100 sweep of 2026-11-26 (benchmarks/results/scan_tune_h100_2026-11-26.json): backward tiles of
# 8 positions, 2 warps and flipped reverse scans were 25-27 % faster than the old 16/4/butterflies at every shape
# timed (fp32: L=16385 B=8, L=6085 B=64, L=401 B=256), skipping the last chunk's state 1-2 % in the forward.
TUNED: dict[tuple[str, str, int, int, int], dict] = {
    ("sm90", "fp32", 512, 32768, 8): {"chunk_len": 2048, "bwd_chunk_len": 8192},
    ("sm90", "fp32", 512, 8192, 64): {"bwd_block_t": 2, "bwd_num_warps": 1, "bwd_elast": True, "bwd_edot": True},
    ("sm90", "fp32", 512, 512, 256): {
        "block_t": 4, "num_warps": 1, "elast": True,
        "bwd_block_t": 2, "bwd_num_warps": 1, "bwd_elast": True, "bwd_edot": True,
    },
}  # fmt: skip

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def bucket(batch: int, length: int, channels: int, dtype: torch.dtype, device: torch.device) -> tuple | None:
    """The TUNED key of a call (None off CUDA or under the interpreter)."""
    if device.type != "cuda" or interpreted() or dtype not in _DTYPE_NAMES:
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return (f"sm{major}{minor}", _DTYPE_NAMES[dtype], _pow2_at_least(channels), _pow2_at_least(length),
            _pow2_at_least(batch))  # fmt: skip


def _check_pow2(name: str, value) -> None:
    if value is not None and (not isinstance(value, int) or value < 1 or value & (value - 1)):
        raise ValueError(f"{name} must be a power of two >= 1, got {value}")


def scan_config(
    batch: int, length: int, channels: int, device: torch.device, *, dtype: torch.dtype | None = None, **launch
) -> dict:
    """The launch parameters for one call; explicit ``launch`` keys (see ``DEFAULTS``) win over the tuned table and
    the defaults. chunk_len must be a power of two; the tile length is min(block_t, chunk_len) so a chunk holds
    whole tiles. The backward keeps about three times as many tiles live as the forward, hence its own keys.
    """
    unknown = set(launch) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown launch option(s) {sorted(unknown)}; known: {', '.join(LAUNCH_KEYS)}")
    key = bucket(batch, length, channels, dtype, device) if dtype is not None else None
    tuned = TUNED.get(key, {}) if key is not None else {}
    given = {k: v for k, v in launch.items() if v is not None}
    opt = {**DEFAULTS, **tuned, **given}
    for name in ("chunk_len", "bwd_chunk_len", "block_t", "bwd_block_t", "block_e", "bwd_block_e"):
        _check_pow2(name, opt[name])
    for name in ("exp_poly", "bwd_exp_poly"):
        if opt[name] is not None and (not isinstance(opt[name], int) or opt[name] < 0):
            raise ValueError(f"{name} must be an int >= 0, got {opt[name]}")
    elast = bool(opt["elast"])
    bwd_elast = bool(opt["bwd_elast"])
    num_warps, bwd_num_warps = int(opt["num_warps"]), int(opt["bwd_num_warps"])
    # tile shapes from the H100 sweep in benchmarks.kernels.scan (2026-11-25): BE=16, 4 warps was fastest both ways
    block_e = opt["block_e"] or (32 * num_warps if elast else 16)
    bwd_block_e = opt["bwd_block_e"] or (32 * bwd_num_warps if bwd_elast else 16)
    n_eblk = -(-channels // block_e)
    chunk_len = opt["chunk_len"]
    if chunk_len is None:
        chunk_len = _auto_chunk(batch, length, n_eblk, device, -(-int(opt["sm_warps"]) // num_warps))
    bwd_chunk_len = opt["bwd_chunk_len"] or chunk_len
    prepare_launch()
    return {
        "chunk_len": chunk_len,
        "block_t": min(int(opt["block_t"]), chunk_len),
        "block_e": block_e,
        "num_warps": num_warps,
        "num_stages": int(opt["num_stages"]),
        "n_chunks": max(1, -(-length // chunk_len)),
        "n_eblk": n_eblk,
        "elast": elast,
        "exp_poly": int(opt["exp_poly"]),
        "skip_last_chunk": bool(opt["skip_last_chunk"]),
        "bwd_chunk_len": bwd_chunk_len,
        "bwd_block_t": min(int(opt["bwd_block_t"] or opt["block_t"]), bwd_chunk_len),
        "bwd_block_e": bwd_block_e,
        "bwd_num_warps": bwd_num_warps,
        "bwd_num_stages": int(opt["bwd_num_stages"] or opt["num_stages"]),
        "bwd_elast": bwd_elast,
        "bwd_exp_poly": int(opt["exp_poly"] if opt["bwd_exp_poly"] is None else opt["bwd_exp_poly"]),
        "bwd_skip_last_chunk": bool(
            opt["skip_last_chunk"] if opt["bwd_skip_last_chunk"] is None else opt["bwd_skip_last_chunk"]
        ),
        "bwd_rev_flip": bool(opt["bwd_rev_flip"]),
        "bwd_edot": bool(opt["bwd_edot"]),
        "fuse_dt_proj": bool(opt["fuse_dt_proj"]),
        "conv_xproj": opt["conv_xproj"],
        "seq_fwd": bool(opt["seq_fwd"]),
        "seq_block_e": int(opt["seq_block_e"]),
        "seq_exp_poly": int(opt["seq_exp_poly"]),
        "seq_maxnreg": int(opt["seq_maxnreg"] or 0),
        "seq_chunk_len": int(opt["seq_chunk_len"] or _seq_chunk(batch, length, channels, device, opt)),
        "tuned": key if tuned else None,
    }


def _auto_chunk(batch: int, length: int, n_eblk: int, device: torch.device, programs_per_sm: int) -> int:
    """One chunk, unless batch x channel blocks leave the GPU short of ``programs_per_sm`` programs per SM (the
    scan's step latency needs several in flight: 4 programs of 4 warps measured best on the H100)."""
    chunk_len = _pow2_at_least(length)
    if device.type == "cuda" and not interpreted():
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        wanted = programs_per_sm * sms
        if batch * n_eblk < wanted:
            n_chunks = -(-wanted // (batch * n_eblk))
            chunk_len = max(_MIN_CHUNK, _pow2_at_least(-(-length // n_chunks)))
            chunk_len = min(chunk_len, _pow2_at_least(length))
    return chunk_len


def _seq_chunk(batch: int, length: int, channels: int, device: torch.device, opt: dict) -> int:
    """The sequential kernel's chunk length: the whole sequence, unless batch x channels (one thread per channel
    and direction) give fewer than ``seq_sm_warps`` warps per SM; then chunks of at least 256 tokens, a multiple
    of 16, as even as possible (each chunk after the first costs a second pass over its tokens)."""
    length = max(1, length)
    if device.type != "cuda" or interpreted():
        return length
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    warps = batch * -(-2 * channels // 32)
    n_chunks = min(-(-int(opt["seq_sm_warps"]) * sms // max(warps, 1)), max(1, length // 256))
    if n_chunks <= 1:
        return length
    per_chunk = -(-length // n_chunks)
    return -(-per_chunk // 16) * 16


def backward_config(cfg: dict, channels: int, length: int) -> dict:
    """The backward's kernel configuration: its chunks, channel block, tile, warps, stages and switches."""
    return cfg | {
        "chunk_len": cfg["bwd_chunk_len"],
        "n_chunks": max(1, -(-length // cfg["bwd_chunk_len"])),
        "block_t": cfg["bwd_block_t"],
        "block_e": cfg["bwd_block_e"],
        "n_eblk": -(-channels // cfg["bwd_block_e"]),
        "num_warps": cfg["bwd_num_warps"],
        "num_stages": cfg["bwd_num_stages"],
        "elast": cfg["bwd_elast"],
        "exp_poly": cfg["bwd_exp_poly"],
        "edot": cfg["bwd_edot"],
        "rev_flip": cfg["bwd_rev_flip"],
        "skip_last_chunk": cfg["bwd_skip_last_chunk"],
    }
