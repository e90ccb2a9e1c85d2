"""Benchmark of the fused bidirectional selective scan (vimscope_kernels.bimamba_inner) on one CUDA GPU.

Measured in one run on the same card: the device copy bandwidth (read + write bytes of a large copy), the exp2
rate (a Triton micro-kernel of independent exp2 chains), then for Vim-Tiny (E=384, R=12) and Vim-Small (E=768,
R=24), N=16, L in 197/4097/6085/16385, batch 1 and a filling batch, fp32 and bf16, forward and forward+backward:
median times (triton.testing.do_bench), the bound max(min bytes / bandwidth, exp2 count / exp2 rate), time over
bound, the naive PyTorch reference where it fits (L <= 4097, batch 1, forward) and the ratio against two calls
of the official CUDA selective_scan_fn plus the flips a Vim v2 layer does (official times quoted in issue 4,
measured on an H100 of this workplace). The one-direction ``selective_scan`` is also timed at the official shapes.

    python -m benchmarks.kernels.scan --out benchmarks/results/scan_h100.json
Needs only torch and triton (no zarr/dask/openslide/napari on the GPU machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.common.runinfo import RESULTS

# issue 4: official CUDA selective_scan_fn, one direction, E=384, N=16, z + delta_bias + softplus, H100 80GB HBM3
# (L, batch) -> {dtype: (forward ms, forward+backward ms)}
OFFICIAL_MS = {
    (197, 128): {"fp32": (0.49, 1.85), "bf16": (0.47, 1.81)},
    (6085, 64): {"fp32": (6.32, 26.2), "bf16": (5.21, 25.3)},
    (16385, 8): {"fp32": (2.26, 9.07), "bf16": (1.94, 8.83)},
    (16385, 32): {"fp32": (8.78, 40.4), "bf16": (7.39, 36.6)},
}
OFFICIAL_COPY_TBPS = 3.02
MODELS = {"vim_tiny": (384, 12), "vim_small": (768, 24)}
N_STATE = 16
LENGTHS = (197, 4097, 6085, 16385)
FILLING_BATCH = {197: (128,), 4097: (64,), 6085: (64,), 16385: (8, 32)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
QUICK_SHAPES = ((6085, 64), (16385, 8), (16385, 1))


# ----------------------------------------------------------------------------------------------- ceilings


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read plus bytes written."""
    from triton.testing import do_bench

    src = torch.rand(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    return 2 * nbytes / (ms * 1e-3)


def exp2_rate() -> float:
    """exp2/s of a Triton kernel: 8 independent chains of 256 dependent exp2 per element (values stay in (0, 1])."""
    import triton
    import triton.language as tl
    from triton.testing import do_bench

    @triton.jit
    def _exp2_chains(p_in, p_out, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(p_in + o)
        a0, a1, a2, a3 = x, x * 0.5, x * 0.25, x * 0.125
        a4, a5, a6, a7 = x * 0.9, x * 0.7, x * 0.3, x * 0.1
        for _ in tl.static_range(ITERS):
            a0, a1, a2, a3 = tl.exp2(-a0), tl.exp2(-a1), tl.exp2(-a2), tl.exp2(-a3)
            a4, a5, a6, a7 = tl.exp2(-a4), tl.exp2(-a5), tl.exp2(-a6), tl.exp2(-a7)
        tl.store(p_out + o, a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7)

    n, iters, block = 1 << 22, 256, 256
    x = torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    ms = do_bench(lambda: _exp2_chains[(n // block,)](x, out, ITERS=iters, BLOCK=block), warmup=50, rep=300)
    return n * iters * 8 / (ms * 1e-3)


# ----------------------------------------------------------------------------------------------- inputs


def vim_params(channels: int, rank: int, dtype: torch.dtype, *, seed: int = 0) -> list[torch.Tensor]:
    """Parameters at the scale of an initialised Vim block, in bimamba_inner's argument order."""
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, device="cuda") * scale + shift).to(dtype)

    proj = rank + 2 * N_STATE
    a_log = torch.log(torch.arange(1, N_STATE + 1, device="cuda", dtype=torch.float32)).repeat(channels, 1)
    out = {}
    for s in ("", "_b"):
        out["conv_w" + s] = rnd(channels, 1, 4, scale=0.5)
        out["conv_b" + s] = rnd(channels, scale=0.2)
        out["x_proj_w" + s] = rnd(proj, channels, scale=channels**-0.5)
        out["dt_proj_w" + s] = rnd(channels, rank, scale=rank**-0.5)
        out["dt_bias" + s] = rnd(channels, scale=0.5, shift=-2.5)
        out["D" + s] = rnd(channels)
    out["A_log"] = (a_log + 0.2 * torch.randn(channels, N_STATE, generator=g, device="cuda")).to(dtype)
    out["A_b_log"] = (a_log + 0.2 * torch.randn(channels, N_STATE, generator=g, device="cuda")).to(dtype)
    order = ["conv_w", "conv_b", "conv_w_b", "conv_b_b", "x_proj_w", "x_proj_w_b", "dt_proj_w", "dt_proj_w_b",
             "dt_bias", "dt_bias_b", "A_log", "A_b_log", "D", "D_b"]  # fmt: skip
    return [out[k] for k in order]


# ----------------------------------------------------------------------------------------------- timing


def bench(fn, *, grad_to_none=None, rep_ms: int = 100) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median")


def time_naive_forward(xz, params) -> float:
    """The per-token PyTorch reference, one warm-up then the median of 3 (it is slow)."""
    from vimscope_kernels.bimamba.naive import bimamba_inner_ref

    with torch.no_grad():
        bimamba_inner_ref(xz, *params)
        times = []
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            bimamba_inner_ref(xz, *params)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_bimamba(channels, rank, length, batch, dtype, launch: dict, rates: dict, *, naive: bool) -> dict:
    import vimscope_kernels

    g = torch.Generator(device="cuda").manual_seed(1)
    xz = torch.randn(batch, length, 2 * channels, generator=g, device="cuda").to(dtype)
    params = vim_params(channels, rank, dtype)
    dy = torch.randn(batch, length, channels, generator=g, device="cuda").to(dtype)
    size = torch.finfo(dtype).bits // 8
    elems = batch * length * channels
    key = "fp32" if dtype == torch.float32 else "bf16"
    row = {"E": channels, "R": rank, "N": N_STATE, "L": length, "B": batch, "dtype": key}

    def fwd():
        with torch.no_grad():
            return vimscope_kernels.bimamba_inner(xz, *params, **launch)

    xz_g = xz.clone().requires_grad_()
    params_g = [p.clone().requires_grad_() for p in params]

    def fwd_bwd():
        vimscope_kernels.bimamba_inner(xz_g, *params_g, **launch).backward(dy)

    torch.cuda.reset_peak_memory_stats()
    row["fwd_ms"] = bench(fwd)
    row["fwd_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    row["fwd_bwd_ms"] = bench(fwd_bwd, grad_to_none=[xz_g, *params_g])
    row["fwd_bwd_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    # minimum traffic: forward reads xz, writes y; backward reads xz and dy, writes dxz (parameters are tiny)
    row["fwd_bytes"] = 3 * elems * size
    row["fwd_bwd_bytes"] = (3 + 5) * elems * size
    # exp2 per state element and direction; the backward needs them again (storing them would be B*L*E*N)
    row["fwd_exp2"] = 2 * elems * N_STATE
    row["fwd_bwd_exp2"] = 4 * elems * N_STATE
    for kind in ("fwd", "fwd_bwd"):
        t_bytes = row[f"{kind}_bytes"] / rates["copy_Bps"] * 1e3
        t_exp = row[f"{kind}_exp2"] / rates["exp2_per_s"] * 1e3
        row[f"{kind}_bound_ms"] = max(t_bytes, t_exp)
        row[f"{kind}_bound_by"] = "bytes" if t_bytes >= t_exp else "exp2"
        row[f"{kind}_over_bound"] = row[f"{kind}_ms"] / row[f"{kind}_bound_ms"]
    official = OFFICIAL_MS.get((length, batch), {}).get(key)
    if official and channels == 384:
        # a Vim v2 layer: two official calls, plus flipping xz before and the backward output after
        flip_ms = 2 * (2 * elems + elems) * size / rates["copy_Bps"] * 1e3
        row["official_pair_fwd_ms"] = 2 * official[0] + flip_ms
        row["official_pair_fwd_bwd_ms"] = 2 * official[1] + 2 * flip_ms
        row["speedup_vs_official_fwd"] = row["official_pair_fwd_ms"] / row["fwd_ms"]
        row["speedup_vs_official_fwd_bwd"] = row["official_pair_fwd_bwd_ms"] / row["fwd_bwd_ms"]
    if naive:
        row["naive_fwd_ms"] = time_naive_forward(xz, params)
        row["speedup_vs_naive_fwd"] = row["naive_fwd_ms"] / row["fwd_ms"]
    return row


def measure_one_direction(length, batch, dtype, launch: dict) -> dict:
    """vimscope_kernels.selective_scan_fn at the official single-call shapes (E=384, N=16, z, delta_bias, softplus)."""
    import vimscope_kernels

    channels = 384
    g = torch.Generator(device="cuda").manual_seed(2)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, device="cuda") * scale + shift).to(dtype)

    args = [
        rnd(batch, length, channels),
        rnd(batch, length, channels, scale=0.5, shift=-1.0),
        -torch.exp(0.5 * torch.randn(channels, N_STATE, generator=g, device="cuda")),
        rnd(batch, length, N_STATE),
        rnd(batch, length, N_STATE),
        torch.randn(channels, generator=g, device="cuda"),
        rnd(batch, length, channels),
        torch.randn(channels, generator=g, device="cuda") * 0.5,
    ]
    dy = rnd(batch, length, channels)
    args_g = [a.clone().requires_grad_() for a in args]
    key = "fp32" if dtype == torch.float32 else "bf16"
    row = {"L": length, "B": batch, "dtype": key}
    with torch.no_grad():
        row["fwd_ms"] = bench(lambda: vimscope_kernels.selective_scan_fn(*args, softplus=True, **launch))
    row["fwd_bwd_ms"] = bench(
        lambda: vimscope_kernels.selective_scan_fn(*args_g, softplus=True, **launch).backward(dy), grad_to_none=args_g
    )
    official = OFFICIAL_MS[(length, batch)][key]
    row["official_fwd_ms"], row["official_fwd_bwd_ms"] = official
    row["speedup_fwd"] = official[0] / row["fwd_ms"]
    row["speedup_fwd_bwd"] = official[1] / row["fwd_bwd_ms"]
    return row


# ----------------------------------------------------------------------------------------------- sweep


SWEEP = [  # forward tile (block_e, block_t, num_warps) x backward (bwd_block_e, bwd_num_warps)
    dict(block_e=32, block_t=16, num_warps=8, bwd_block_e=16, bwd_num_warps=8),
    dict(block_e=16, block_t=16, num_warps=4, bwd_block_e=8, bwd_num_warps=4),
    dict(block_e=64, block_t=16, num_warps=8, bwd_block_e=16, bwd_num_warps=4),
    dict(block_e=32, block_t=32, num_warps=8, bwd_block_e=8, bwd_num_warps=8),
]


def sweep(rates: dict) -> list[dict]:
    """Tile shapes on two shapes that matter: a filling batch at 16k tokens and batch 1 at 16k tokens (bf16)."""
    rows = []
    for launch in SWEEP:
        for batch in (8, 1):
            try:
                r = measure_bimamba(384, 12, 16385, batch, torch.bfloat16, launch, rates, naive=False)
            except Exception as e:  # a tile too large for the registers: note it, go on
                r = {"B": batch, "error": repr(e)[:300]}
            rows.append({**launch, **r})
            print(f"sweep {launch} B={batch}: fwd {r.get('fwd_ms', float('nan')):.3f} ms, "
                  f"fwd+bwd {r.get('fwd_bwd_ms', float('nan')):.3f} ms", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------------- report


def markdown(rows: list[dict], one_dir: list[dict]) -> str:
    head = (
        "| model | L | B | dtype | fwd ms | bound | fwd / bound | fwd+bwd ms | bound | fwd+bwd / bound "
        "| vs 2x official + flips (fwd / fwd+bwd) | vs naive fwd |\n|" + "---|" * 12
    )
    lines = [head]
    for r in rows:
        name = "vim_tiny" if r["E"] == 384 else "vim_small"
        off = (
            f"{r['speedup_vs_official_fwd']:.2f}x / {r['speedup_vs_official_fwd_bwd']:.2f}x"
            if "speedup_vs_official_fwd" in r
            else ""
        )
        nv = f"{r['speedup_vs_naive_fwd']:.0f}x" if "speedup_vs_naive_fwd" in r else ""
        lines.append(
            f"| {name} | {r['L']} | {r['B']} | {r['dtype']} | {r['fwd_ms']:.3f} | {r['fwd_bound_ms']:.3f} "
            f"({r['fwd_bound_by']}) | {r['fwd_over_bound']:.1f} | {r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_bound_ms']:.3f} "
            f"| {r['fwd_bwd_over_bound']:.1f} | {off} | {nv} |"
        )
    if one_dir:
        lines += [
            "",
            "| one direction (E=384) L | B | dtype | fwd ms | official | fwd+bwd ms | official |",
            "|---" * 7 + "|",
        ]
        for r in one_dir:
            lines.append(
                f"| {r['L']} | {r['B']} | {r['dtype']} | {r['fwd_ms']:.3f} | {r['official_fwd_ms']} "
                f"({r['speedup_fwd']:.2f}x) | {r['fwd_bwd_ms']:.3f} | {r['official_fwd_bwd_ms']} "
                f"({r['speedup_fwd_bwd']:.2f}x) |"
            )
    return "\n".join(lines)


def environment() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "card": torch.cuda.get_device_name(0),
        "sms": props.multi_processor_count,
        "memory_gib": props.total_memory / 2**30,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "scan.json")
    ap.add_argument("--sweep", action="store_true", help="also time a few tile shapes first")
    ap.add_argument("--quick", action="store_true", help=f"vim_tiny at (L, B) in {QUICK_SHAPES} only")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip remaining shapes after this many seconds")
    ap.add_argument("--block-e", type=int)
    ap.add_argument("--block-t", type=int)
    ap.add_argument("--num-warps", type=int)
    ap.add_argument("--bwd-block-e", type=int)
    ap.add_argument("--bwd-num-warps", type=int)
    ap.add_argument("--launch", type=json.loads, default={}, help="any launch keys as JSON (config.DEFAULTS), e.g. "
                    "'{\"elast\": true, \"block_t\": 2, \"bwd_rev_flip\": true}'")  # fmt: skip
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("the scan benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    from vimscope_kernels.common import config

    config.RECORD_STATS = True
    t_start = time.time()
    flags = (("block_e", args.block_e), ("block_t", args.block_t), ("num_warps", args.num_warps),
             ("bwd_block_e", args.bwd_block_e), ("bwd_num_warps", args.bwd_num_warps))  # fmt: skip
    launch = {k: v for k, v in flags if v} | args.launch
    result = {"environment": environment(), "launch": launch, "command": " ".join(["python"] + sys.argv)}
    result["config_defaults"] = {k: v for k, v in config.scan_config(1, 16385, 384, torch.device("cuda")).items()}
    rates = {"copy_Bps": copy_bandwidth(), "exp2_per_s": exp2_rate()}
    result["rates"] = rates
    print(
        f"copy {rates['copy_Bps'] / 1e12:.2f} TB/s (read+write), exp2 {rates['exp2_per_s'] / 1e12:.2f} T/s", flush=True
    )
    if args.sweep:
        result["sweep"] = sweep(rates)
    rows, skipped = [], []
    for name, (channels, rank) in MODELS.items():
        for length in LENGTHS:
            for batch in (1, *FILLING_BATCH[length]):
                if args.quick and (name != "vim_tiny" or (length, batch) not in QUICK_SHAPES):
                    continue
                for dname, dtype in DTYPES.items():
                    if time.time() - t_start > args.budget_s:
                        skipped.append((name, length, batch, dname))
                        continue
                    naive = length <= 4097 and batch == 1
                    r = measure_bimamba(channels, rank, length, batch, dtype, launch, rates, naive=naive)
                    rows.append(r)
                    print(
                        f"{name} L={length} B={batch} {dname}: fwd {r['fwd_ms']:.3f} ms "
                        f"({r['fwd_over_bound']:.1f}x bound), fwd+bwd {r['fwd_bwd_ms']:.3f} ms "
                        f"({r['fwd_bwd_over_bound']:.1f}x)",
                        flush=True,
                    )
                    torch.cuda.empty_cache()
    one_dir = []
    for length, batch in () if args.quick else OFFICIAL_MS:
        for dname, dtype in DTYPES.items():
            if time.time() - t_start > args.budget_s:
                skipped.append(("selective_scan", length, batch, dname))
                continue
            one_dir.append(measure_one_direction(length, batch, dtype, launch))
    result.update(bimamba=rows, selective_scan=one_dir, skipped=skipped, kernel_stats=config.KERNEL_STATS)
    result["seconds"] = time.time() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(result, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    )
    table = markdown(rows, one_dir)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"kernel resources: {json.dumps(config.KERNEL_STATS)}")
    print(f"wrote {args.out} ({result['seconds']:.0f} s); skipped {len(skipped)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
