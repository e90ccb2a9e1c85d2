"""Backbone benchmark: vim_tiny with the Triton scan vs DeiT-Tiny (timm, fused SDPA and eager attention).

One run on one card: batch inference at 224, 512, 1024, 1248, 2048 and 4096 px, the same batch per size for every
model (BATCHES: it fills an H100 and fits vim_tiny and DeiT-flash; eager attention's L x L scores may not fit, and
an out-of-memory case is recorded as "oom"), ``torch.inference_mode()``, warm-up, then the median of CUDA-event
times: images/s and peak GPU memory (``max_memory_allocated`` after a reset, weights and input included) per
(model, size); the sizes the goals name (1248, 2048, 4096) run first, so ``--budget-s`` cuts the others. Then a
time budget of one Vim layer (torch.profiler, kernels grouped into scan, GEMMs, norm + residual, casts/copies,
other) at 1024 and 2048 px, and of a whole forward.

Models and precision (``--precision bf16``, the default): every model is cast to bfloat16 (``.to(bfloat16)``,
input in bf16), the cheapest faithful choice: vim_tiny's residual stream stays float32 and its RMSNorm computes
in float32 (the model code does both whatever the weights' dtype, as hustvl/Vim's ``residual_in_fp32``), and the
mixer hands the scan float32 inputs. ``--precision autocast`` keeps float32 weights under bf16 autocast (what
``vimscope segment`` does); one vim_tiny row per ``--compare-autocast-sizes`` size times that mode too, so the
JSON says which is faster. vim_tiny is built by the registry (``create_model("vim_tiny")``: the feature head, the
token grid is the output) with its 224 px position embedding, resampled to the image size in every forward as in
the pipeline. DeiT-Tiny is ``timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=S,
num_classes=1000)``, random weights, ``model(x)``; "flash" runs its fused ``F.scaled_dot_product_attention``
inside ``sdpa_kernel(FLASH_ATTENTION)`` (efficient attention where flash cannot run; the backend and the
kernels it launched are in the JSON), "eager" sets ``fused_attn = False`` on every attention module.

The official Vim-Tiny (mamba_ssm) cannot be installed on the GPU machine: its images/s are quoted from issue 5
and DESIGN.md as constants (``official_quoted`` in the JSON), never measured here.

    python -m benchmarks.models.backbone --plot benchmarks/results/backbone.png     # ~2-3 min on an H100
    python -m benchmarks.models.backbone --device cpu --sizes 64,128 --batch 2 --profile-sizes 64 \\
        --compare-autocast-sizes 64 --target-s 0.2                                   # smoke test of every path
Needs torch, triton, timm (numpy and matplotlib for ``--plot``) and the source tree: no zarr, dask or openslide.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common.runinfo import RESULTS, card_slug, git_commit, module_versions
from benchmarks.models.backbone_budget import ATTENTION_KERNELS, budget, scan_kernel_names
from benchmarks.models.backbone_report import OFFICIAL_QUOTED, fmt, markdown, plot, ratios

SIZES = (224, 512, 1024, 1248, 2048, 4096)
# one batch per size for every model: about 50k-520k tokens in flight; eager DeiT's bf16 scores need
# 2 x batch x 3 heads x L^2 x 2 bytes (48 GiB at 2048 / 16, 206 GB at 4096 / 8: recorded as oom)
BATCHES = {224: 256, 512: 128, 1024: 64, 1248: 64, 2048: 16, 4096: 8}
PROFILE_SIZES = (1024, 2048)
GOAL_SIZES = (1248, 2048, 4096)
MODELS = (
    "vim_tiny", "deit_tiny_flash", "deit_tiny_eager", "vim_ssd_tiny", "vim_ssd_tiny_fused", "vim_tiny_chunked",
    "vim_tiny_split",
)  # fmt: skip
# built by create_model (vim_ssd_tiny: the SSD mixer, same backbone; vim_tiny_chunked / _split: vim_tiny run with
# the launch keys of VARIANTS)
VIM_MODELS = ("vim_tiny", "vim_ssd_tiny", "vim_ssd_tiny_fused", "vim_tiny_chunked", "vim_tiny_split")
# vimscope_kernels' launch-table keys set around vim_tiny_chunked's calls: the training forward's chunked scan and
# PyTorch's add + RMSNorm, the inference path before the sequential kernel and the fused norm became the default.
CHUNKED = {"seq_fwd": False, "triton_rmsnorm": False}
# the conv + x_proj as a conv kernel and a cuBLAS GEMM instead of the fused Triton kernel
VARIANTS = {"vim_tiny_chunked": CHUNKED, "vim_tiny_split": {"conv_xproj": "split"}}
# vim_ssd_tiny with the SSD op's launch keys (vimscope_kernels.ssd.function.LAUNCH): the inference form whose
# direction 1 finishes the output (no planes buffer)
SSD_VARIANTS = {"vim_ssd_tiny_fused": {"infer_form": "fused"}}
PATCH = 16


# ----------------------------------------------------------------------------------------------- models


class WithLaunch(torch.nn.Module):
    """A model whose every call runs with some launch-table keys of vimscope_kernels set (restored after)."""

    def __init__(self, model: torch.nn.Module, launch: dict, table: dict | None = None):
        super().__init__()
        from vimscope_kernels.common.config import DEFAULTS

        self.model, self.launch, self.table = model, launch, DEFAULTS if table is None else table

    def forward(self, *args, **kwargs):
        saved = {k: self.table[k] for k in self.launch}
        self.table.update(self.launch)
        try:
            return self.model(*args, **kwargs)
        finally:
            self.table.update(saved)


def build_vim(device: torch.device, precision: str, name: str = "vim_tiny") -> torch.nn.Module:
    from vimscope.models import create_model

    launch = VARIANTS.get(name)
    base = "vim_tiny" if launch else "vim_ssd_tiny" if name in SSD_VARIANTS else name
    model = create_model(base)  # feature head; 224 px position embedding, resampled
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    if name in SSD_VARIANTS:
        from vimscope_kernels.ssd.function import LAUNCH

        return WithLaunch(model, SSD_VARIANTS[name], LAUNCH)
    return WithLaunch(model, launch) if launch else model


def build_deit(size: int, device: torch.device, precision: str) -> torch.nn.Module:
    import timm

    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=size, num_classes=1000)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return model.to(device=device, dtype=dtype).eval()


def set_fused_attention(model: torch.nn.Module, fused: bool) -> int:
    """Set ``fused_attn`` on every timm attention module; returns how many there are."""
    n = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
            n += 1
    return n


def sdpa_backend(device: torch.device, dtype: torch.dtype) -> dict:
    """Flash attention when it runs at DeiT-Tiny's shapes (3 heads of 64), else memory-efficient attention.

    Returns the backend's name, the ``sdpa_kernel`` argument and the kernels (or CPU ops) a probe call launched.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    q = torch.randn(2, 3, 197, 64, device=device, dtype=dtype)
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel(backend), torch.inference_mode():
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
                with profile(activities=activities) as prof:
                    torch.nn.functional.scaled_dot_product_attention(q, q, q)
                    synchronize(device)
        except RuntimeError as e:
            print(f"sdpa backend {name} unavailable: {str(e).splitlines()[0][:200]}", flush=True)
            continue
        events = [e for e in prof.key_averages() if ATTENTION_KERNELS.search(e.key)]  # GPU kernels first, then CPU ops
        events.sort(key=lambda e: (e.device_type != torch.autograd.DeviceType.CUDA, e.key))
        return {"name": name, "backend": backend, "probe_kernels": [e.key[:120] for e in events[:6]]}
    raise RuntimeError("neither flash nor memory-efficient SDPA runs here")


# ----------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call (CUDA events on a GPU)."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def measure(fn: Callable[[], object], device: torch.device, target_s: float, min_reps: int, max_reps: int) -> dict:
    """First call (compiles), one warm-up, then reps ~ target_s / warm-up time: median seconds and peak memory."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    first_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    warm = timed_call(fn, device)
    reps = max(min_reps, min(max_reps, int(target_s / max(warm, 1e-6))))
    times = [timed_call(fn, device) for _ in range(reps)]
    out = {"median_s": statistics.median(times), "min_s": min(times), "reps": reps, "first_call_s": first_s}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["resident_gib"] = base / 2**30  # weights + input before the forward
    return out


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


# ----------------------------------------------------------------------------------------------- profiles


def profile_kernels(fn: Callable[[], object], device: torch.device, reps: int) -> list[dict]:
    """Kernels (CPU ops on a CPU run) of ``reps`` calls: name, total ms and count per call."""
    from torch.profiler import ProfilerActivity, profile, schedule

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=reps, repeat=1)) as prof:
        for _ in range(1 + reps):  # the first, profiled but not recorded, pays the profiler's start-up
            fn()
            synchronize(device)
            prof.step()
    rows = []
    for e in prof.key_averages():
        if cuda:
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        else:
            us = e.self_cpu_time_total
        if us > 0 and not e.key.startswith("ProfilerStep"):
            rows.append({"name": e.key, "ms": us / 1e3 / reps, "count": e.count / reps})
    return rows


def layer_budget(model, size: int, batch: int, device: torch.device, precision: str, reps: int) -> dict:
    """One Vim block (the middle one) at this image size, then one whole forward: kernel time by category."""
    scan_names = scan_kernel_names()
    backbone = getattr(model, "backbone", model)
    block = backbone.layers[len(backbone.layers) // 2]
    tokens = (size // PATCH) ** 2 + 1
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    hidden = torch.randn(batch, tokens, backbone.embed_dim, device=device, dtype=dtype)
    residual = torch.randn(batch, tokens, backbone.embed_dim, device=device, dtype=torch.float32)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    with torch.inference_mode(), autocast(device, precision):
        layer = lambda: block(hidden, residual)  # noqa: E731
        layer()
        wall = measure(layer, device, 0.3, 3, 20)["median_s"] * 1e3
        one = budget(profile_kernels(layer, device, reps), scan_names)
        forward = lambda: model(x)  # noqa: E731
        forward()
        fwd_wall = measure(forward, device, 0.3, 2, 5)["median_s"] * 1e3
        whole = budget(profile_kernels(forward, device, 1), scan_names, top=6)
    depth = len(backbone.layers)
    if not one["kernel_launches"]:
        raise RuntimeError("the profiler recorded no kernels (CUPTI unavailable?)")
    one["wall_ms"] = wall
    one["gap_ms"] = wall - one["kernel_ms"]  # launch overhead and idle time between kernels
    whole["wall_ms"] = fwd_wall
    whole["outside_blocks_kernel_ms"] = whole["kernel_ms"] - depth * one["kernel_ms"]
    return {"size": size, "batch": batch, "tokens": tokens, "depth": depth, "layer": one, "forward": whole}


# ----------------------------------------------------------------------------------------------- cases


def autocast(device: torch.device, precision: str):
    if precision == "autocast":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_case(name, model, size, batch, device, precision, args, attention=None) -> dict:
    """One (model, size) row: images/s and peak memory, or the status that stopped it ("oom", "error: ...")."""
    from torch.nn.attention import sdpa_kernel

    row = {"model": name, "size": size, "batch": batch, "tokens": (size // PATCH) ** 2 + 1, "precision": precision}
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    error = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        backend = sdpa_kernel(attention["backend"]) if attention else contextlib.nullcontext()
        with torch.inference_mode(), autocast(device, precision), backend:
            row.update(measure(lambda: model(x), device, args.target_s, args.min_reps, args.max_reps))
        row["status"] = "ok"
        row["ms_per_batch"] = row["median_s"] * 1e3
        row["images_per_s"] = batch / row["median_s"]
        row["tokens_per_s"] = row["images_per_s"] * row["tokens"]
    except Exception as e:  # recorded, never fatal: eager attention runs out of memory at large sizes
        error = e
    if error is not None:
        row["status"] = "oom" if is_oom(error) else f"error: {type(error).__name__}: {str(error)[:300]}"
        if device.type == "cuda":  # reached before it failed (not a peak to compare)
            row["peak_before_failure_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del error
    x = None
    free(device)
    return row


def environment(device: torch.device) -> dict:
    env = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    env["commit"] = git_commit()
    env.update(module_versions(("triton", "timm", "numpy"), include_missing=True))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(card=torch.cuda.get_device_name(device), sms=props.multi_processor_count,
                   memory_gib=props.total_memory / 2**30, cudnn=torch.backends.cudnn.version())  # fmt: skip
    else:
        env.update(card="cpu", threads=torch.get_num_threads())
    return env


# ----------------------------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    sizes = [int(s) for s in text.split(",") if s.strip()]
    bad = [s for s in sizes if s % PATCH or s < PATCH]
    if bad:
        raise argparse.ArgumentTypeError(f"sizes must be positive multiples of {PATCH}, got {bad}")
    return sizes


def batch_for(size: int, args) -> int:
    if args.batch:
        return args.batch
    if size in BATCHES:
        return BATCHES[size]
    tokens = (size // PATCH) ** 2 + 1
    return 1 << max(0, (400_000 // tokens).bit_length() - 1)  # a power of two near 400k tokens


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/backbone_<card>_<date>.json)")
    ap.add_argument("--plot", type=Path, help="also write this PNG (images/s and peak memory against size)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=parse_sizes, default=list(SIZES))
    ap.add_argument("--batch", type=int, help=f"one batch for every size (default per size: {BATCHES})")
    ap.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    ap.add_argument("--precision", choices=("bf16", "autocast", "fp32"), default="bf16")
    ap.add_argument("--compare-autocast-sizes", type=parse_sizes, default=[1248], help="also vim_tiny under autocast")
    ap.add_argument("--profile-sizes", type=parse_sizes, default=list(PROFILE_SIZES), help="one-layer budgets")
    ap.add_argument("--profile-reps", type=int, default=5)
    ap.add_argument("--target-s", type=float, default=1.0, help="timed seconds per case (at least --min-reps calls)")
    ap.add_argument("--min-reps", type=int, default=3)
    ap.add_argument("--max-reps", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=170.0, help="skip remaining cases after this many seconds")
    return ap


def attention_backend(device: torch.device, precision: str, models: list[str]) -> dict | None:
    """The SDPA backend DeiT-flash runs with, or None (no flash row wanted, or neither backend runs here)."""
    attn_dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    try:
        return sdpa_backend(device, attn_dtype) if "deit_tiny_flash" in models else None
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return None


def run_header(args, env: dict, attention: dict | None) -> dict:
    """The JSON's fixed part: environment, command, arguments, the choices made, the quoted official figures."""
    return {
        "environment": env,
        "command": " ".join(["python"] + sys.argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "choices": {
            "precision": args.precision,
            "vim_residual": "float32 residual stream and float32 RMSNorm statistics (model code, any precision)",
            "vim_scan_inputs": "as vimscope/models/mixer.py passes them (when written: xz and parameters cast to fp32)",
            "vim_model": "create_model('vim_tiny'): feature head, 224 px pos-embed resampled to the size per forward",
            "deit_model": "timm deit_tiny_patch16_224, pretrained=False, img_size=size, num_classes=1000, model(x)",
            "sdpa_backend": attention and {k: v for k, v in attention.items() if k != "backend"},
            "batches": {s: batch_for(s, args) for s in args.sizes},
        },
        "official_quoted": {
            "note": "quoted from issue 5 and DESIGN.md, not measured by this script",
            "rows": OFFICIAL_QUOTED,
        },
    }


def model_for(name, precision, size, device, args, vim: dict, deit):
    """``(model, deit, attention modules)`` of one case: a Vim model cached in ``vim`` (it does not depend on the
    size), DeiT built once per size (``deit``, None until then) with its attention set to fused or eager."""
    if name in VIM_MODELS:
        if (name, precision) not in vim:
            vim[name, precision] = build_vim(device, precision, name)
        return vim[name, precision], deit, None
    if deit is None:
        deit = build_deit(size, device, args.precision)
    n_attn = set_fused_attention(deit, name == "deit_tiny_flash")
    return deit, deit, n_attn


def profile_layer(model, size, batch, device, precision, args, over_budget, layers: list[dict]) -> None:
    """The one-layer budget of vim_tiny at this size, appended to ``layers`` (its status when it cannot run)."""
    if over_budget():
        layers.append({"size": size, "status": "skipped: budget"})
        return
    try:
        layers.append(layer_budget(model, size, batch, device, precision, args.profile_reps))
    except Exception as e:
        layers.append({"size": size, "status": "oom" if is_oom(e) else f"error: {e!r}"[:300]})
    free(device)


def run_size(size, models, args, device, attention, vim: dict, over_budget, rows: list, layers: list) -> None:
    """Every model at one image size (vim_tiny under autocast too where asked), rows and layer budgets appended."""
    batch = batch_for(size, args)
    plan = [(m, args.precision) for m in models]
    if "vim_tiny" in models and size in args.compare_autocast_sizes and args.precision != "autocast":
        plan.insert(1, ("vim_tiny", "autocast"))
    deit = None
    for name, precision in plan:
        label = name if precision == args.precision else f"{name}_{precision}"
        if over_budget():
            rows.append({"model": label, "size": size, "batch": batch, "status": "skipped: budget"})
            continue
        if name == "deit_tiny_flash" and attention is None:
            rows.append({"model": label, "size": size, "batch": batch, "status": "unavailable: no flash SDPA"})
            continue
        try:
            model, deit, n_attn = model_for(name, precision, size, device, args, vim, deit)
        except Exception as e:  # timm missing on this machine, or a model that cannot be built
            status = f"unavailable: {e}" if isinstance(e, ImportError) else f"error: {e!r}"[:300]
            rows.append({"model": label, "size": size, "batch": batch, "status": status})
            continue
        att = attention if name == "deit_tiny_flash" else None
        row = run_case(label, model, size, batch, device, precision, args, att)
        if name.startswith("deit"):
            row["attention_modules"] = n_attn
        rows.append(row)
        print(f"{size:>5} px  B={batch:<4} {label:<18} {row['status']:<6} "
              f"{fmt(row.get('images_per_s'), '9.1f')} images/s  peak {fmt(row.get('peak_gib'), '.2f')} GiB",
              flush=True)  # fmt: skip
        if name == "vim_tiny" and precision == args.precision and size in args.profile_sizes:
            profile_layer(model, size, batch, device, precision, args, over_budget, layers)
    deit = model = None
    free(device)


def write_outputs(result: dict, rows: list[dict], layers: list[dict], env: dict, args, t_start: float) -> None:
    """Rows in model order, the ratios and goals; the JSON, the markdown table (printed too) and the plot."""
    order = {m: i for i, m in enumerate(MODELS)}
    rows.sort(key=lambda r: (r["size"], order.get(r["model"], 0.5)))  # vim_tiny_autocast right after vim_tiny
    layers.sort(key=lambda lb: lb["size"])
    summary = ratios(rows)
    result.update(rows=rows, summary=summary, layer_budget=layers, seconds=time.time() - t_start)
    if args.out is None:
        date = env["date"][:10]
        args.out = RESULTS / f"backbone_{card_slug(env['card'])}_{date}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    table = markdown(rows, summary, layers)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    if args.plot:
        plot(rows, args.plot, env["card"], args.precision)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu for a smoke test", file=sys.stderr)
        return 2
    models = [m for m in args.models.split(",") if m]
    if set(models) - set(MODELS):
        ap.error(f"unknown models {sorted(set(models) - set(MODELS))}")
    t_start = time.time()
    env = environment(device)
    attention = attention_backend(device, args.precision, models)
    result = run_header(args, env, attention)
    print(f"{env['card']}: torch {env['torch']}, triton {env['triton']}, timm {env['timm']}; {args.precision}; "
          f"sdpa {attention and attention['name']} {attention and attention['probe_kernels']}", flush=True)  # fmt: skip
    rows, layers = [], []
    vim = {}  # (name, precision) -> model (size-independent)

    def over_budget() -> bool:
        return time.time() - t_start > args.budget_s

    # the sizes the goals name run first, so a run cut short by --budget-s still answers them
    for size in sorted(args.sizes, key=lambda s: (s not in GOAL_SIZES, s)):
        run_size(size, models, args, device, attention, vim, over_budget, rows, layers)
    write_outputs(result, rows, layers, env, args, t_start)
    return 1 if any(r["status"].startswith("error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
