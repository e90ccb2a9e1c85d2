"""Bidirectional SSD benchmark: correctness on the GPU, the op's speed per launch configuration, and the
vim_ssd_tiny backbone against DeiT-Tiny (flash SDPA), all in one run on one card.

1. Ceilings measured here: device-to-device copy bandwidth (bytes read + written) and a bf16 GEMM rate.
2. Correctness: the Triton op (fwd + bwd) against the chunked PyTorch form in float64 on the same GPU, bf16 and
   fp32, L = 1000 (odd chunk tail), 6 heads of 64, state 64, for each chunk size swept.
3. The op at vim_tiny's inner width (6 heads x 64, state 64, one group, bf16) at 64 x 4096, 16 x 16384 and
   8 x 65536 tokens: forward and forward + backward, median of CUDA-event timings (triton.testing.do_bench),
   inputs as views into one in_proj-shaped tensor as the model passes them, per (chunk, warps) configuration.
   The reference is the official ``mamba_chunk_scan_combined`` (one direction, chunk 128) as recorded on an
   H100 80GB HBM3 in the issue (it is not installed on the GPU machine): QUOTED below, never measured here.
4. vim_ssd_tiny (``create_model``, feature head, bf16 weights) vs timm's deit_tiny_patch16_224 with fused SDPA
   (flash) at 1024 / 2048 / 4096 px (batches 64 / 16 / 8, as benchmarks/models/backbone.py): images/s, peak
   memory; and one profile of a vim_ssd_tiny forward at 1024 px (kernels grouped).

    python -m benchmarks.kernels.ssd --out benchmarks/results/ssd_h100_DATE.json
    python -m benchmarks.kernels.ssd --device cpu --smoke      # every path at toy sizes (interpreter)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.common.runinfo import RESULTS, card_slug
from benchmarks.models.backbone import build_deit, environment, run_case, sdpa_backend, set_fused_attention

SHAPES = ((64, 4096), (16, 16384), (8, 65536))
HEADS, HEADDIM, STATE, GROUPS = 6, 64, 64, 1
# mamba_chunk_scan_combined, one direction, 6 x 64, state 64, chunk 128, bf16, H100 80GB HBM3 (issue figures)
QUOTED = {
    (64, 4096): {"fwd_ms": 1.22, "fwd_bwd_ms": 5.64},
    (16, 16384): {"fwd_ms": 1.12, "fwd_bwd_ms": 5.25},
    (8, 65536): {"fwd_ms": 2.47, "fwd_bwd_ms": 9.83},
}
# (chunk, fwd warps, bwd warps, forward segments per sequence (0: enough to fill the GPU, fwd.segments_for),
#  software-pipelining stages of the chunk loops)
CONFIGS = ((64, 4, 4, 1, 1), (64, 4, 4, 0, 1), (64, 4, 4, 0, 2), (64, 8, 8, 0, 2), (128, 8, 8, 0, 1), (32, 4, 4, 0, 2))
MODEL_SIZES = {1024: 64, 2048: 16, 4096: 8}
GOALS = {1024: 1.0, 2048: 2.5, 4096: 8.0}


def log(*a):
    print(*a, flush=True)


def bench_ms(fn, device, rep_ms=200) -> float:
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def ceilings(device) -> dict:
    """Copy bandwidth (GB/s, read + write) and bf16 GEMM TFLOP/s, measured now."""
    if device.type != "cuda":
        return {}
    a = torch.empty(2**30 // 2, dtype=torch.bfloat16, device=device).normal_()
    b = torch.empty_like(a)
    copy_ms = bench_ms(lambda: b.copy_(a), device)
    m = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    gemm_ms = bench_ms(lambda: m @ m, device)
    return {"copy_GBps": 2 * a.numel() * 2 / copy_ms / 1e6, "bf16_gemm_TFLOPs": 2 * 8192**3 / gemm_ms / 1e9}


def make_inputs(batch, length, device, dtype=torch.bfloat16, heads=HEADS, headdim=HEADDIM, state=STATE, seed=0):
    """Views into one (Bt, L, 2E + 2GN + 2H, padded to 16) tensor (the mixer's in_proj output) plus the per-head
    parameters. (The first H100 run, ssd_h100_2026-12-07.json at commit 9958ae5, used unpadded 908-column rows.)"""
    g = torch.Generator(device=device).manual_seed(seed)
    E, GN = heads * headdim, GROUPS * state
    width = -(-(2 * E + 2 * GN + 2 * heads) // 16) * 16  # padded as vim_ssd.SSDMixer pads in_proj
    flat = torch.randn(batch, length, width, device=device, dtype=dtype, generator=g)
    flat[..., 2 * E : 2 * E + 2 * GN] *= state**-0.5
    flat[..., 2 * E + 2 * GN :] -= 1.0  # dt (and the unused padding)
    params = {
        "A": -(torch.rand(2, heads, device=device, generator=g) * 15 + 1),
        "D": torch.ones(heads, device=device),
        "dt_bias": torch.rand(2, heads, device=device, generator=g) - 3.0,
    }
    return flat, params


def views(flat, heads=HEADS, headdim=HEADDIM, state=STATE) -> dict:
    E, GN = heads * headdim, GROUPS * state
    return {
        "z": flat[..., :E].unflatten(-1, (heads, headdim)),
        "x": flat[..., E : 2 * E].unflatten(-1, (heads, headdim)),
        "B": flat[..., 2 * E : 2 * E + GN].unflatten(-1, (GROUPS, state)),
        "C": flat[..., 2 * E + GN : 2 * E + 2 * GN].unflatten(-1, (GROUPS, state)),
        "dt": flat[..., 2 * E + 2 * GN : 2 * E + 2 * GN + 2 * heads].unflatten(-1, (2, heads)),
    }


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def correctness(device, chunks, length=1000, batch=2) -> list[dict]:
    """Triton fwd + bwd vs the chunked form in float64, per dtype and chunk size: relative errors."""
    from vimscope_kernels import bi_ssd

    rows = []
    flat64, params = make_inputs(batch, length, device, torch.float64, seed=1)
    leaf = flat64.clone().requires_grad_()
    p64 = {k: v.double().requires_grad_() for k, v in params.items()}
    ref = bi_ssd(**views(leaf), **p64, backend="torch")
    grad = torch.randn_like(ref)
    ref.backward(grad)
    ref_grads = {"in_proj_out": leaf.grad} | {k: v.grad for k, v in p64.items()}
    for dtype in (torch.bfloat16, torch.float32):
        for chunk in chunks:
            leaf_d = flat64.to(dtype).requires_grad_()
            pd = {k: v.detach().clone().float().requires_grad_() for k, v in params.items()}
            out = bi_ssd(**views(leaf_d), **pd, chunk_size=chunk, backend="triton")
            out.backward(grad.to(dtype))
            torch.cuda.synchronize() if device.type == "cuda" else None
            errs = {"out": rel(out, ref), "in_proj_out": rel(leaf_d.grad, ref_grads["in_proj_out"])}
            errs |= {k: rel(pd[k].grad, ref_grads[k]) for k in params}
            rows.append({"dtype": str(dtype).split(".")[-1], "chunk": chunk, "length": length, "rel_err": errs})
            log("correctness", rows[-1])
    return rows


def model_paths_agree(device) -> dict:
    """vim_ssd_tiny in float32: the Triton mixer path against the chunked PyTorch path on the same GPU."""
    from vimscope.models import create_model

    model = create_model("vim_ssd_tiny").to(device).eval()
    x = torch.randn(2, 3, 256, 256, device=device)
    with torch.no_grad():
        fast = model(x)["features"]
        for layer in model.backbone.layers:
            layer.mixer.backend = "torch"
        slow = model(x)["features"]
    return {"features_rel_err_fp32": rel(fast, slow)}


def split_check(device, batch=1, length=16384) -> dict:
    """The forward with its sequences cut into segments (as many as fill the GPU) against the unsplit forward."""
    from vimscope_kernels.ssd import function, fwd

    flat, params = make_inputs(batch, length, device, seed=3)
    outs = {}
    for segments in (1, None):
        function.LAUNCH["segments"] = segments
        with torch.no_grad():
            outs[segments] = function.bi_ssd(**views(flat), **params, chunk_size=64)
    function.LAUNCH["segments"] = 1
    used = fwd.segments_for(flat, -(-length // 64), batch * HEADS * 2) if device.type == "cuda" else 1
    return {"batch": batch, "length": length, "segments": used, "rel_err_vs_unsplit": rel(outs[None], outs[1])}


def ncu_target(device, chunk: int) -> None:
    """A few forwards at 64 x 4096 for Nsight Compute to pick one launch of the scan kernel from."""
    from vimscope_kernels.ssd import function

    flat, params = make_inputs(64, 4096, device)
    with torch.no_grad():
        for _ in range(3):
            function.bi_ssd(**views(flat), **params, chunk_size=chunk)
    torch.cuda.synchronize()


def op_flops_bytes(batch, length, chunk) -> dict:
    """Tensor-core FLOPs of the chunked algorithm (both directions) and the fewest bytes (in_proj out read once,
    the gated output written once), bf16."""
    T, E, GN, H = batch * length, HEADS * HEADDIM, GROUPS * STATE, HEADS
    chunks = -(-length // chunk) * batch
    per_chunk = 2 * chunk * chunk * STATE + 2 * chunk * chunk * HEADDIM + 4 * chunk * STATE * HEADDIM
    return {"fwd_flop": 2 * H * chunks * per_chunk, "fwd_min_bytes": T * (2 * E + 2 * GN + 2 * H) * 2 + T * E * 2}


def time_config(inputs: tuple, chunk: int, device, rep_ms: float) -> dict:
    """fwd and fwd + bwd milliseconds of one chunk size (the warps are set in ``function.LAUNCH``)."""
    from vimscope_kernels.ssd import function

    flat, leaf, grad, params = inputs

    def forward():
        with torch.no_grad():
            function.bi_ssd(**views(flat), **params, chunk_size=chunk)

    def step():
        function.bi_ssd(**views(leaf), **params, chunk_size=chunk).backward(grad)
        leaf.grad = None

    return {"fwd_ms": bench_ms(forward, device, rep_ms), "fwd_bwd_ms": bench_ms(step, device, rep_ms)}


def time_op(device, shapes, configs, rep_ms) -> list[dict]:
    from vimscope_kernels.ssd import function

    rows = []
    for batch, length in shapes:
        flat, params = make_inputs(batch, length, device)
        grad = torch.randn(batch, length, HEADS, HEADDIM, device=device, dtype=flat.dtype)
        inputs = (flat, flat.clone().requires_grad_(), grad, params)
        for chunk, fw, bw, seg, stages in configs:
            function.LAUNCH.update(fwd_warps=fw, bwd_warps=bw, segments=seg or None, num_stages=stages)
            row = {"batch": batch, "length": length, "chunk": chunk, "fwd_warps": fw, "bwd_warps": bw}
            row |= {"segments": seg, "num_stages": stages}
            row |= op_flops_bytes(batch, length, chunk)
            try:
                row |= time_config(inputs, chunk, device, rep_ms)
                q = QUOTED.get((batch, length))
                if q:
                    row["vs_two_official_fwd"] = 2 * q["fwd_ms"] / row["fwd_ms"]
                    row["vs_two_official_fwd_bwd"] = 2 * q["fwd_bwd_ms"] / row["fwd_bwd_ms"]
            except Exception as e:  # a configuration that does not compile or fit is recorded
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            rows.append(row)
            log("op", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        inputs = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    function.LAUNCH.update(fwd_warps=4, bwd_warps=4, segments=1, num_stages=1)
    return rows


def _config_key(row: dict) -> tuple:
    return (row["chunk"], row["fwd_warps"], row["bwd_warps"], row.get("segments", 1), row.get("num_stages", 1))


def best_config(rows) -> dict:
    """The configuration with the lowest sum of fwd + fwd_bwd time ratios to the best, over all shapes."""
    ok = [r for r in rows if "fwd_bwd_ms" in r]
    keys = sorted({_config_key(r) for r in ok})
    shapes = sorted({(r["batch"], r["length"]) for r in ok})
    best = {s: min(r["fwd_ms"] + r["fwd_bwd_ms"] for r in ok if (r["batch"], r["length"]) == s) for s in shapes}

    def score(k):
        rs = [r for r in ok if _config_key(r) == k]
        if len(rs) < len(shapes):
            return float("inf")
        return sum((r["fwd_ms"] + r["fwd_bwd_ms"]) / best[(r["batch"], r["length"])] for r in rs)

    k = min(keys, key=score)
    return dict(zip(("chunk", "fwd_warps", "bwd_warps", "segments", "num_stages"), k))


def model_rows(device, sizes, args) -> list[dict]:
    from vimscope.models import create_model

    rows = []
    attention = sdpa_backend(device, torch.bfloat16) if device.type == "cuda" else None
    for size in sizes:
        batch = args.batch or MODEL_SIZES.get(size, 2)
        ssd = create_model("vim_ssd_tiny").to(device=device, dtype=torch.bfloat16).eval()
        rows.append(run_case("vim_ssd_tiny", ssd, size, batch, device, "bf16", args))
        log("model", rows[-1])
        del ssd
        deit = build_deit(size, device, "bf16")
        set_fused_attention(deit, True)
        rows.append(run_case("deit_tiny_flash", deit, size, batch, device, "bf16", args, attention=attention))
        log("model", rows[-1])
        del deit
    return rows


def model_ratios(rows) -> dict:
    ok = {(r["model"], r["size"]): r for r in rows if r.get("status") == "ok"}
    out = {}
    for size in sorted({r["size"] for r in rows}):
        s, d = ok.get(("vim_ssd_tiny", size)), ok.get(("deit_tiny_flash", size))
        if s and d:
            speed = s["images_per_s"] / d["images_per_s"]
            entry = {"speed_vs_deit_flash": speed, "goal": GOALS.get(size), "met": speed >= GOALS.get(size, 0)}
            if "peak_gib" in s:
                entry |= {"peak_gib_ssd": s["peak_gib"], "peak_gib_deit_flash": d["peak_gib"]}
                entry["memory_met"] = s["peak_gib"] <= d["peak_gib"]
            out[str(size)] = entry
    return out


def layer_profile(device, size, batch) -> list[dict]:
    """Kernels of one vim_ssd_tiny forward (ms per forward), top 12."""
    from torch.profiler import ProfilerActivity, profile

    from vimscope.models import create_model

    model = create_model("vim_ssd_tiny").to(device=device, dtype=torch.bfloat16).eval()
    x = torch.randn(batch, 3, size, size, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        model(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x)
            torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    events.sort(key=lambda e: -e.self_device_time_total)
    return [{"kernel": e.key[:90], "ms": e.self_device_time_total / 1e3, "count": e.count} for e in events[:12]]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (CPU interpreter check of every path)")
    ap.add_argument("--commit", default=None, help="the source commit (the GPU machine's copy has no git)")
    ap.add_argument("--rep-ms", type=float, default=150)
    ap.add_argument("--target-s", type=float, default=1.5)
    ap.add_argument("--min-reps", type=int, default=3)
    ap.add_argument("--max-reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--configs", default="", help="chunk:fwd_warps:bwd_warps[:segments[:stages]],... (CONFIGS)")
    ap.add_argument("--model-sizes", default="", help="comma list of image sizes (default 1024,2048,4096)")
    ap.add_argument("--ncu-fwd", type=int, default=0, help="only run forwards at 64 x 4096 with this chunk (ncu)")
    ap.add_argument("--skip", default="", help="comma list of sections: correct,model_paths,split,op,model,profile")
    return ap.parse_args(argv)


def guarded(fn, limit: int = 500):
    """fn() or, when it raises, {"error": ...}: one failing section never loses the others."""
    try:
        return fn()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {str(e)[:limit]}"}


def use_best(result: dict) -> None:
    """The fastest swept launch configuration becomes the one the model rows run with."""
    from vimscope_kernels.ssd import function

    best = result["best_config"] = best_config(result["op"])
    function.DEFAULT_CHUNK = best["chunk"]
    function.LAUNCH.update(
        fwd_warps=best["fwd_warps"], bwd_warps=best["bwd_warps"], segments=best["segments"] or None,
        num_stages=best["num_stages"],
    )  # fmt: skip
    log("best", best)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.ncu_fwd:
        ncu_target(device, args.ncu_fwd)
        return 0
    skip = set(filter(None, args.skip.split(",")))
    env = environment(device)
    env["commit"] = args.commit or env.get("commit")
    result = {"benchmark": "ssd", "env": env, "quoted_official": {f"{b}x{L}": v for (b, L), v in QUOTED.items()},
              "quoted_note": "mamba_chunk_scan_combined one direction, 6x64, state 64, chunk 128, bf16, H100 80GB "
                             "HBM3, from the issue; not installed on the GPU machine, never measured here"}  # fmt: skip
    out = args.out or RESULTS / f"ssd_{card_slug(env.get('card', 'cpu'))}_{env['date'][:10]}.json"

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")

    shapes = ((1, 100), (2, 67)) if args.smoke else SHAPES
    configs = ((32, 4, 4, 1, 1),) if args.smoke else CONFIGS
    if args.configs:  # chunk:fwd_warps:bwd_warps[:segments[:stages]]
        configs = tuple((*(int(v) for v in c.split(":")), 1, 1)[:5] for c in args.configs.split(","))
    sizes = (64,) if args.smoke else tuple(MODEL_SIZES)
    if args.model_sizes:
        sizes = tuple(int(v) for v in args.model_sizes.split(","))
    result["ceilings"] = ceilings(device)
    log("ceilings", result["ceilings"])
    on_gpu = device.type == "cuda"
    sections = [
        ("correct", lambda: correctness(device, sorted({c[0] for c in configs}), length=67 if args.smoke else 1000)),
        ("model_paths", lambda: model_paths_agree(device) if on_gpu else {"skipped": "cpu"}),
        ("split", lambda: split_check(device, length=300 if args.smoke else 16384)),
        ("op", lambda: time_op(device, shapes, configs, args.rep_ms)),
        ("model", lambda: model_rows(device, sizes, args)),
        ("profile", lambda: layer_profile(device, 1024, 64) if on_gpu else {"skipped": "cpu"}),
    ]
    for name, fn in sections:
        if name in skip:
            continue
        result[name] = guarded(fn)
        if name == "op" and isinstance(result["op"], list) and any("fwd_bwd_ms" in r for r in result["op"]):
            use_best(result)
        if name == "model" and isinstance(result["model"], list):
            result["model_ratios"] = model_ratios(result["model"])
            log("model ratios", result["model_ratios"])
        save()
    log("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
