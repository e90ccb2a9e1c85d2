"""Launch-configuration sweep of the bidirectional scan (vimscope_kernels.bimamba_inner) on one CUDA GPU.

For the vim_tiny shapes that matter (E=384, N=16, R=12, bf16 by default), in one time-boxed run:
1. compiles every candidate configuration in parallel worker processes (small inputs specialised exactly as the
   real launches: the kernels land in Triton's disk cache, so the timing below never waits for ptxas);
2. per shape: the default configuration (forward, backward, forward+backward and every kernel stage alone);
   a forward sweep (tiles, warps, pipeline stages, channels-last state tiles, polynomial exp2, in-kernel dt_proj)
   timing the forward alone; a backward sweep timing the backward alone (autograd, same forward); a second round
   of chunk lengths for the two best of each; then the best forward + best backward together, per stage again;
3. every candidate's output and gradients are compared with the default's (max |diff| / max |ref|); a candidate
   above the dtype's tolerance is marked wrong and can't win;
4. writes JSON (incrementally, after every shape) with the per-kernel registers/spills of each candidate, the
   best configuration per shape and a proposed ``config.TUNED`` table, and prints the table.

    python benchmarks/tune_scan.py --out $OUT/tune.json --budget-s 200
Medians of CUDA-event timings with the L2 flushed before each repetition (as triton.testing.do_bench does, with
fewer repetitions for slow candidates). Needs only torch and triton. Without a GPU it runs as a dry run through
Triton's interpreter on a tiny shape (checks the script, times nothing meaningful).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

E, R, N = 384, 12, 16
SHAPES = [(16385, 8), (6085, 64), (4097, 64), (16385, 1), (401, 256)]  # (L, B), most important first
SHAPE_WEIGHT = {(16385, 8): 1.0, (6085, 64): 1.6, (4097, 64): 1.2, (16385, 1): 0.5, (401, 256): 1.0}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
TOLERANCE = {"bf16": 3e-2, "fp16": 5e-3, "fp32": 2e-4}  # max |diff| / max |ref| against the default config

# forward keys only (the backward keeps its defaults); {} is the default configuration. Registers/spills of each
# on sm_90 without a GPU: python benchmarks/compile_report.py --elast 1 --block-t 2 (etc.). num_stages is not swept:
# sm_90 code is identical for 1, 2 and 3 stages (no loop here is software-pipelined; compile_report, 2026-11-26).
FWD_CANDIDATES = [
    {},
    dict(block_t=8),
    dict(block_e=32),
    dict(block_e=64, num_warps=8),
    dict(exp_poly=2),
    dict(skip_last_chunk=True),
    dict(elast=True, block_t=2),  # one channel per thread: BE = 32 x num_warps = 128, no shuffles at all
    dict(elast=True, block_t=2, skip_last_chunk=True),
    dict(elast=True, block_t=4),
    dict(elast=True, block_t=2, num_warps=2),
    dict(elast=True, block_t=2, num_warps=1),
    dict(elast=True, block_t=4, num_warps=1),
    dict(elast=True, block_t=2, sm_warps=32),
    dict(elast=True, block_t=2, exp_poly=2),
    dict(elast=True, block_t=2, exp_poly=3),
    dict(elast=True, block_t=2, exp_poly=1),
    dict(fuse_dt_proj=True),
]
# backward keys only (the forward keeps its defaults). bwd_rev_flip removes Triton's lane butterflies from the reverse
# scans (bitwise the same results); bwd_block_t=8 removes the spills; channels-last (bwd_elast) moves the channel
# sums dB, dC across lanes, bwd_edot puts them on the tensor cores
BWD_CANDIDATES = [
    {},
    dict(bwd_rev_flip=True),
    dict(bwd_block_t=8),
    dict(bwd_block_t=8, bwd_rev_flip=True),
    dict(bwd_block_t=4, bwd_rev_flip=True),
    dict(bwd_block_t=16, bwd_block_e=8, bwd_rev_flip=True),
    dict(bwd_block_t=8, bwd_block_e=32, bwd_num_warps=8, bwd_rev_flip=True),
    dict(bwd_block_t=8, bwd_num_warps=2, bwd_rev_flip=True),
    dict(bwd_block_t=8, bwd_exp_poly=2, bwd_rev_flip=True),
    dict(bwd_block_t=8, bwd_rev_flip=True, bwd_skip_last_chunk=True),
    dict(bwd_elast=True, bwd_block_t=2, bwd_rev_flip=True),
    dict(bwd_elast=True, bwd_block_t=2, bwd_rev_flip=True, bwd_edot=True),
    dict(bwd_elast=True, bwd_block_t=1, bwd_rev_flip=True, bwd_edot=True),
    dict(bwd_elast=True, bwd_block_t=2, bwd_num_warps=2, bwd_rev_flip=True, bwd_edot=True),
    dict(bwd_elast=True, bwd_block_t=2, bwd_num_warps=1, bwd_rev_flip=True, bwd_edot=True),
]


def _key(launch: dict) -> str:
    return json.dumps(launch, sort_keys=True)


# ----------------------------------------------------------------------------------------------- parallel compile


def _compile_worker(launch: dict, dtype_name: str) -> dict:
    """Forward (+ backward for the default and backward candidates) of one configuration at small sizes, with and
    without chunking: compiles every scan kernel the real shapes launch with it (their specialisation depends on E,
    N, R, dtype and the constexprs, not on B or L) into Triton's disk cache."""
    t0 = time.time()
    try:
        import vimscope_kernels
        from bench_scan import vim_params
        from triton.runtime.jit import JITFunction

        if not getattr(JITFunction, "_compile_only", False):  # compile, never launch: the GPU stays free for timing
            launch_fn = JITFunction.run
            JITFunction.run = lambda self, *a, grid, warmup, **kw: launch_fn(self, *a, grid=grid, warmup=True, **kw)
            JITFunction._compile_only = True

        dtype = DTYPES[dtype_name]
        params = vim_params(E, R, dtype)
        tile = max(launch.get("block_t", 16), launch.get("bwd_block_t", 0) or 0)
        chunk = max(64, 4 * tile)
        pinned = launch | {"chunk_len": chunk, "bwd_chunk_len": chunk}
        backward = not launch or any(k.startswith("bwd_") for k in launch)
        for length in (2 * chunk + 1, chunk - 1):  # several chunks (HAS_INIT) and one
            xz = torch.randn(2, length, 2 * E, device="cuda").to(dtype).requires_grad_(backward)
            with torch.set_grad_enabled(backward):
                y = vimscope_kernels.bimamba_inner(xz, *params, **pinned)
            if backward:
                y.backward(torch.ones_like(y))
        torch.cuda.synchronize()
        return {"ok": True, "seconds": time.time() - t0}
    except Exception as e:  # noqa: BLE001 - reported, the candidate is skipped
        return {"ok": False, "seconds": time.time() - t0, "error": repr(e)[:400]}


class Compiler:
    """Submits every candidate to a pool of spawned processes; ``ready`` waits for one within a deadline."""

    def __init__(self, launches: list[dict], dtypes: list[str], workers: int):
        self.futures: dict[tuple, cf.Future] = {}
        self.t0 = time.time()
        self.pool = None
        if workers <= 0 or not torch.cuda.is_available():
            return
        try:
            ctx = multiprocessing.get_context("spawn")
            self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            for dtype in dtypes:
                for launch in launches:
                    self.futures[(dtype, _key(launch))] = self.pool.submit(_compile_worker, launch, dtype)
        except Exception as e:  # noqa: BLE001 - without a pool, kernels compile on first use
            print(f"compile pool unavailable ({e!r}); compiling in-process", flush=True)
            self.pool = None

    def ready(self, launch: dict, dtype: str, timeout: float) -> tuple[bool, str]:
        """(True, note) when the kernels are in the disk cache, or when the worker failed (the candidate then
        compiles in-process, and a real compile error is reported by the measurement); (False, why) on timeout."""
        fut = self.futures.get((dtype, _key(launch)))
        if fut is None:
            return True, ""
        try:
            res = fut.result(timeout=max(0.0, timeout))
        except cf.TimeoutError:
            return False, "not compiled in time"
        except Exception as e:  # noqa: BLE001 - a broken pool: compile in-process
            return True, f"compile worker failed: {e!r}"[:300]
        return True, "" if res["ok"] else f"compile worker: {res.get('error', '?')}"

    def summary(self) -> dict:
        out = {"tasks": len(self.futures), "done": 0, "ok": 0, "worker_s": 0.0, "errors": []}
        for (dtype, key), f in self.futures.items():
            if not f.done() or f.cancelled():
                continue
            out["done"] += 1
            try:
                res = f.result()
            except Exception as e:  # noqa: BLE001
                res = {"ok": False, "error": repr(e)[:200]}
            out["ok"] += bool(res["ok"])
            out["worker_s"] += res.get("seconds", 0.0)
            if not res["ok"]:
                out["errors"].append({"dtype": dtype, "launch": key, "error": res.get("error")})
        out["seconds_since_start"] = time.time() - self.t0
        return out

    def close(self) -> None:
        """Stop the workers now (a compile still running must not hold up the exit)."""
        if self.pool is None:
            return
        procs = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()


# ----------------------------------------------------------------------------------------------- timing


class Timer:
    """Median of CUDA-event timings, the L2 flushed before each repetition; at least 3 and at most 100 repetitions,
    as many as fit ``rep_ms`` (a dry run on the CPU times one call with perf_counter)."""

    def __init__(self, rep_ms: float):
        self.rep_ms = rep_ms
        self.cuda = torch.cuda.is_available()
        self.flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda") if self.cuda else None

    def __call__(self, fn, reset=None) -> float:
        if not self.cuda:
            if reset:
                reset()
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
        if reset:
            reset()
        fn()  # warm-up
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if reset:
            reset()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end)
        n = int(min(100, max(3, self.rep_ms / max(estimate, 1e-3))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for s, e in events:
            if reset:
                reset()
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in events)


# ----------------------------------------------------------------------------------------------- one shape


class Shape:
    """Inputs of one (L, B, dtype) and the measurements of configurations on them."""

    def __init__(self, length: int, batch: int, dtype_name: str, timer: Timer, device: str):
        from bench_scan import vim_params

        self.L, self.B, self.dtype_name, self.timer = length, batch, dtype_name, timer
        dtype = DTYPES[dtype_name]
        g = torch.Generator(device=device).manual_seed(1)
        self.xz = torch.randn(batch, length, 2 * E, generator=g, device=device).to(dtype)
        self.dy = torch.randn(batch, length, E, generator=g, device=device).to(dtype)
        self.params = vim_params(E, R, dtype) if device == "cuda" else _cpu_params(dtype)
        self.xz_g = self.xz.clone().requires_grad_()
        self.params_g = [p.clone().requires_grad_() for p in self.params]
        self.reference: dict | None = None

    def _op(self, xz, params, launch):
        import vimscope_kernels

        return vimscope_kernels.bimamba_inner(xz, *params, backend="triton", **launch)

    def _zero_grads(self):
        for t in (self.xz_g, *self.params_g):
            t.grad = None

    def outputs(self, launch: dict) -> dict:
        """y and every gradient of one forward + backward."""
        self._zero_grads()
        y = self._op(self.xz_g, self.params_g, launch)
        y.backward(self.dy)
        out = {"y": y.detach(), "d_xz": self.xz_g.grad}
        out.update({f"d_p{i}": p.grad for i, p in enumerate(self.params_g)})
        self._zero_grads()
        return out

    def forward_output(self, launch: dict) -> torch.Tensor:
        with torch.no_grad():
            return self._op(self.xz, self.params, launch)

    def time_forward(self, launch: dict) -> float:
        def fwd():
            with torch.no_grad():
                self._op(self.xz, self.params, launch)

        return self.timer(fwd)

    def time_backward(self, launch: dict) -> float:
        self._zero_grads()
        y = self._op(self.xz_g, self.params_g, launch)
        return self.timer(lambda: torch.autograd.backward(y, self.dy, retain_graph=True), reset=self._zero_grads)

    def time_fwd_bwd(self, launch: dict) -> float:
        return self.timer(lambda: self._op(self.xz_g, self.params_g, launch).backward(self.dy), reset=self._zero_grads)

    def stages(self, launch: dict) -> dict:
        """Median ms of every kernel stage alone (bimamba.stage_calls), forward then backward."""
        from vimscope_kernels.selective_scan import bimamba, config

        cfg = config.scan_config(self.B, self.L, E, self.xz.device, dtype=self.xz.dtype, **launch)
        calls = bimamba.stage_calls(self.xz, self.params, self.dy, cfg)
        return {name: self.timer(fn) for name, fn in calls.items()}

    def resolved(self, launch: dict) -> dict:
        """The configuration a launch dict resolves to here (chunk lengths, tiles, switches)."""
        from vimscope_kernels.selective_scan import config

        cfg = config.scan_config(self.B, self.L, E, self.xz.device, dtype=self.xz.dtype, **launch)
        return {k: cfg[k] for k in config.LAUNCH_KEYS if k in cfg} | {"n_chunks": cfg["n_chunks"]}


def _cpu_params(dtype):
    sys.path.insert(0, str(ROOT))
    from tests.kernels.helpers import vim_params

    return [v.to(dtype) for v in vim_params(E, N, R).values()]


def max_rel(out, ref) -> float:
    out, ref = out.float(), ref.float()
    if not torch.isfinite(out).all():
        return math.inf
    scale = ref.abs().max().item()
    diff = (out - ref).abs().max().item()
    return diff / scale if scale > 0 else diff


def compare(out: dict, ref: dict) -> dict:
    return {k: max_rel(out[k], ref[k]) for k in ref}


def kernel_stats() -> dict:
    from vimscope_kernels.selective_scan import config

    return {k: {"regs": v.get("n_regs"), "spills": v.get("n_spills")} for k, v in config.KERNEL_STATS.items()}


def reset_stats() -> None:
    from vimscope_kernels.selective_scan import config

    config.KERNEL_STATS.clear()


def bounds(length: int, batch: int, dtype_name: str, rates: dict) -> dict:
    """bench_scan's bound: max(minimum bytes / copy bandwidth, exp2 count / exp2 rate) per pass."""
    size = torch.finfo(DTYPES[dtype_name]).bits // 8
    elems = batch * length * E
    out = {}
    for kind, nbytes, n_exp in (("fwd", 3 * elems * size, 2 * elems * N), ("fwd_bwd", 8 * elems * size,
                                                                               4 * elems * N)):  # fmt: skip
        t_bytes = nbytes / rates["copy_Bps"] * 1e3
        t_exp = n_exp / rates["exp2_per_s"] * 1e3
        out[kind] = {"ms": max(t_bytes, t_exp), "by": "bytes" if t_bytes >= t_exp else "exp2"}
    return out


def chunk_variants(auto: int, length: int) -> list[int]:
    """Chunk lengths to try around the launcher's choice, and one chunk (no chunk-state pass at all)."""
    top = 1 << max(0, length - 1).bit_length()
    return sorted({c for c in (auto // 4, auto // 2, auto * 2, top) if 64 <= c <= top and c != auto})


def measure_default(shape: Shape, log) -> dict:
    """The default configuration: forward, backward, forward+backward, kernel resources and every stage alone."""
    res: dict = {"L": shape.L, "B": shape.B, "dtype": shape.dtype_name, "E": E, "R": R, "N": N}
    reset_stats()
    shape.outputs({})
    res["default"] = {
        "resolved": shape.resolved({}),
        "fwd_ms": shape.time_forward({}),
        "bwd_ms": shape.time_backward({}),
        "fwd_bwd_ms": shape.time_fwd_bwd({}),
        "kernels": kernel_stats(),
    }
    d = res["default"]
    log(f"  default: fwd {d['fwd_ms']:.3f} ms, bwd {d['bwd_ms']:.3f} ms, fwd+bwd {d['fwd_bwd_ms']:.3f} ms")
    try:
        res["stages"] = {"default": shape.stages({})}
        log("  stages (default): " + ", ".join(f"{k} {v:.3f}" for k, v in res["stages"]["default"].items()))
    except Exception as e:  # noqa: BLE001
        res["stages"] = {"default": {"error": repr(e)[:300]}}
    return res


def sweep_shape(shape: Shape, res: dict, comp: Compiler, deadline: float, log) -> dict:
    """Forward sweep, backward sweep, chunk rounds, best combined (and its stages); recorded into ``res``."""
    dtype, tol = shape.dtype_name, TOLERANCE[shape.dtype_name]

    def left() -> float:
        return deadline - time.time()

    shape.reference = shape.outputs({})
    d = res["default"]

    def run_candidates(cands, kind):
        rows = []
        for launch in cands:
            if left() < 2.0:
                rows.append({"launch": launch, "skipped": "shape budget"})
                continue
            ok, why = comp.ready(launch, dtype, timeout=min(left() - 2.0, 30.0))
            if not ok:
                rows.append({"launch": launch, "skipped": why})
                log(f"  {kind} {launch}: skipped ({why})")
                continue
            row = {"launch": launch, "resolved": shape.resolved(launch)}
            if why:
                row["compile_note"] = why
            try:
                reset_stats()
                if kind == "fwd":
                    row["errors"] = {"y": max_rel(shape.forward_output(launch), shape.reference["y"])}
                    row["fwd_ms"] = shape.time_forward(launch)
                else:
                    row["errors"] = compare(shape.outputs(launch), shape.reference)
                    row["bwd_ms"] = shape.time_backward(launch)
                row["max_err"] = max(row["errors"].values())
                row["ok"] = row["max_err"] <= tol
                row["kernels"] = kernel_stats()
                t = row[f"{kind}_ms"]
                log(f"  {kind} {launch}: {t:.3f} ms (default {d[f'{kind}_ms']:.3f}), max err {row['max_err']:.1e}"
                    + ("" if row["ok"] else "  WRONG"))  # fmt: skip
            except Exception as e:  # noqa: BLE001 - one failing candidate must not end the sweep
                row["error"] = repr(e)[:400]
                log(f"  {kind} {launch}: ERROR {row['error'][:160]}")
            rows.append(row)
        return rows

    def best_of(rows, kind, n):
        good = [r for r in rows if r.get("ok") and f"{kind}_ms" in r]
        return sorted(good, key=lambda r: r[f"{kind}_ms"])[:n]

    # budget split: forward sweep ~25%, backward ~45%, chunk rounds ~15%, combined + stages the rest
    start_left = left()
    fwd_deadline = time.time() + 0.25 * start_left
    saved = deadline

    def sub(frac_end):
        return min(saved, time.time() + frac_end)

    deadline = fwd_deadline
    res["fwd_sweep"] = run_candidates(FWD_CANDIDATES[1:], "fwd")
    deadline = sub(0.45 * start_left)
    res["bwd_sweep"] = run_candidates(BWD_CANDIDATES[1:], "bwd")
    default_fwd = {"launch": {}, "fwd_ms": d["fwd_ms"], "ok": True, "resolved": d["resolved"]}
    default_bwd = {"launch": {}, "bwd_ms": d["bwd_ms"], "ok": True, "resolved": d["resolved"]}
    deadline = sub(0.15 * start_left)
    chunk_f = []
    for row in best_of(res["fwd_sweep"] + [default_fwd], "fwd", 2):
        if row["launch"].get("fuse_dt_proj"):
            continue
        for c in chunk_variants(row["resolved"]["chunk_len"], shape.L):
            chunk_f.append(row["launch"] | {"chunk_len": c})
    chunk_b = []
    for row in best_of(res["bwd_sweep"] + [default_bwd], "bwd", 2):
        for c in chunk_variants(row["resolved"]["bwd_chunk_len"], shape.L):
            chunk_b.append(row["launch"] | {"bwd_chunk_len": c})
    res["fwd_chunk_sweep"] = run_candidates(chunk_f, "fwd")
    res["bwd_chunk_sweep"] = run_candidates(chunk_b, "bwd")
    deadline = saved
    best_f = best_of(res["fwd_sweep"] + res["fwd_chunk_sweep"] + [default_fwd], "fwd", 1)[0]
    best_b = best_of(res["bwd_sweep"] + res["bwd_chunk_sweep"] + [default_bwd], "bwd", 1)[0]
    # every key pinned to what each half was measured with (unset bwd_* keys follow the forward's: the chunk length,
    # the tile length, the switches...)
    fwd_keys = (
        "chunk_len",
        "block_t",
        "block_e",
        "num_warps",
        "num_stages",
        "elast",
        "exp_poly",
        "skip_last_chunk",
        "fuse_dt_proj",
    )
    best = {k: best_f["resolved"][k] for k in fwd_keys}
    best |= {k: v for k, v in best_b["resolved"].items() if k.startswith("bwd_")}
    res["best_launch"] = best
    res["best_fwd"], res["best_bwd"] = best_f, best_b
    if left() > 1.0:
        try:
            reset_stats()
            errors = compare(shape.outputs(best), shape.reference)
            res["best"] = {
                "launch": best,
                "resolved": shape.resolved(best),
                "errors": errors,
                "ok": max(errors.values()) <= tol,
                "fwd_ms": shape.time_forward(best),
                "bwd_ms": shape.time_backward(best),
                "fwd_bwd_ms": shape.time_fwd_bwd(best),
                "kernels": kernel_stats(),
            }
            b = res["best"]
            log(f"  best {best}: fwd {b['fwd_ms']:.3f} ms, bwd {b['bwd_ms']:.3f} ms, fwd+bwd {b['fwd_bwd_ms']:.3f} ms"
                f" (default {d['fwd_bwd_ms']:.3f}), max err {max(errors.values()):.1e}")  # fmt: skip
        except Exception as e:  # noqa: BLE001
            res["best_error"] = repr(e)[:400]
            log(f"  best {best}: ERROR {res['best_error'][:160]}")
    if left() > 1.0 and res.get("best", {}).get("ok"):
        try:
            res.setdefault("stages", {})["best"] = shape.stages(best)
            log("  stages (best): " + ", ".join(f"{k} {v:.3f}" for k, v in res["stages"]["best"].items()))
        except Exception as e:  # noqa: BLE001
            res.setdefault("stages", {})["best"] = {"error": repr(e)[:300]}
    return res


# ----------------------------------------------------------------------------------------------- report


def proposed_table(results: list[dict], arch: str, device: str) -> dict:
    """bucket -> launch keys of the best configuration, for shapes whose best beat the default by > 2% (fwd+bwd or
    fwd); each entry is cut to the keys that change what it resolves to."""
    from vimscope_kernels.selective_scan.config import _pow2_at_least

    table = {}
    for r in results:
        best, d = r.get("best"), r.get("default")
        if not best or not best.get("ok") or not d:
            continue
        if best["fwd_bwd_ms"] > 0.98 * d["fwd_bwd_ms"] and best["fwd_ms"] > 0.98 * d["fwd_ms"]:
            continue
        key = (arch, r["dtype"], _pow2_at_least(E), _pow2_at_least(r["L"]), _pow2_at_least(r["B"]))
        table[repr(key)] = minimal_launch(best["launch"], r, device)
    return table


def minimal_launch(launch: dict, r: dict, device: str) -> dict:
    """Drop keys one by one while the launch still resolves to the same configuration at this shape."""
    from vimscope_kernels.selective_scan import config

    def resolve(lz):
        cfg = config.scan_config(r["B"], r["L"], E, torch.device(device), dtype=DTYPES[r["dtype"]], **lz)
        return {k: cfg[k] for k in config.LAUNCH_KEYS if k in cfg}

    target, out = resolve(launch), dict(launch)
    for k in list(out):
        trial = {j: v for j, v in out.items() if j != k}
        if resolve(trial) == target:
            out = trial
    return out


def table_source(table: dict) -> str:
    lines = ["TUNED: dict[tuple[str, str, int, int, int], dict] = {"]
    for key, launch in table.items():
        lines.append(f"    {key}: {launch!r},")
    return "\n".join(lines + ["}"])


def summary_lines(results: list[dict], rates: dict) -> list[str]:
    from bench_scan import OFFICIAL_COPY_TBPS, OFFICIAL_MS  # noqa: F401

    out = ["| L | B | dtype | default fwd / bwd / fwd+bwd ms | best fwd / bwd / fwd+bwd ms | fwd+bwd x | "
           "fwd / bound | fwd+bwd / bound | vs 2x official + flips (fwd / fwd+bwd) |", "|---" * 9 + "|"]  # fmt: skip
    for r in results:
        d, b = r.get("default"), r.get("best") or r.get("default")
        if not d:
            continue
        bd = bounds(r["L"], r["B"], r["dtype"], rates)
        off = OFFICIAL_MS.get((r["L"], r["B"]), {}).get(r["dtype"])
        vs = ""
        if off:
            size = torch.finfo(DTYPES[r["dtype"]]).bits // 8
            flip = 2 * 3 * r["B"] * r["L"] * E * size / rates["copy_Bps"] * 1e3
            vs = f"{(2 * off[0] + flip) / b['fwd_ms']:.2f}x / {(2 * off[1] + 2 * flip) / b['fwd_bwd_ms']:.2f}x"
        out.append(
            f"| {r['L']} | {r['B']} | {r['dtype']} | {d['fwd_ms']:.3f} / {d['bwd_ms']:.3f} / {d['fwd_bwd_ms']:.3f} "
            f"| {b['fwd_ms']:.3f} / {b['bwd_ms']:.3f} / {b['fwd_bwd_ms']:.3f} "
            f"| {d['fwd_bwd_ms'] / b['fwd_bwd_ms']:.2f} "
            f"| {b['fwd_ms'] / bd['fwd']['ms']:.1f} | {b['fwd_bwd_ms'] / bd['fwd_bwd']['ms']:.1f} | {vs} |"
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tune.json")
    ap.add_argument("--budget-s", type=float, default=200.0, help="hard wall-clock budget of the whole run")
    ap.add_argument("--dtypes", default="bf16", help="comma-separated: bf16,fp32,fp16")
    ap.add_argument("--shapes", default="", help="L:B,L:B,... (default: the five vim_tiny shapes)")
    ap.add_argument("--workers", type=int, default=-1, help="compile processes (default: CPUs - 2, at most 14)")
    ap.add_argument("--rep-ms", type=float, default=40.0, help="timing window per measurement")
    ap.add_argument("--limit", type=int, default=0, help="only the first N candidates of each sweep (dry runs)")
    args = ap.parse_args(argv)
    if args.limit:
        FWD_CANDIDATES[args.limit :] = []
        BWD_CANDIDATES[args.limit :] = []
    t_start = time.time()
    hard_end = t_start + args.budget_s
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.path.insert(0, str(ROOT))  # the dry run's import path (the GPU machine uses run_gpu.sh's shim)
    from bench_scan import environment
    from vimscope_kernels.selective_scan import config

    config.RECORD_STATS = True
    dtypes = [s for s in args.dtypes.split(",") if s]
    shapes = [tuple(int(x) for x in s.split(":")) for s in args.shapes.split(",") if s] or SHAPES
    if not cuda:
        shapes, dtypes = [(37, 2)], ["fp32"]
    workers = args.workers if args.workers >= 0 else max(1, min(14, (os.cpu_count() or 4) - 2))
    launches = [{}] + BWD_CANDIDATES[1:] + FWD_CANDIDATES[1:]  # the slowest compiles first
    comp = Compiler(launches, dtypes, workers if cuda else 0)

    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)

    log(f"{len(launches)} configurations x {len(dtypes)} dtype(s) compiling in {workers if comp.pool else 0} "
        "processes")  # fmt: skip
    result = {
        "environment": environment() if cuda else {"device": "cpu (interpreter dry run)"},
        "command": " ".join(["python"] + sys.argv),
        "budget_s": args.budget_s,
        "config_defaults": dict(config.DEFAULTS),
        "fwd_candidates": FWD_CANDIDATES,
        "bwd_candidates": BWD_CANDIDATES,
        "shapes": [],
    }
    if cuda:
        from bench_scan import copy_bandwidth, exp2_rate

        result["rates"] = {"copy_Bps": copy_bandwidth(), "exp2_per_s": exp2_rate()}
    else:
        result["rates"] = {"copy_Bps": 1e10, "exp2_per_s": 1e9}
    rates = result["rates"]
    log(f"copy {rates['copy_Bps'] / 1e12:.2f} TB/s, exp2 {rates['exp2_per_s'] / 1e12:.2f} T/s")
    arch = "sm{}{}".format(*torch.cuda.get_device_capability()) if cuda else "cpu"
    timer = Timer(args.rep_ms)
    jobs = [(L, B, dt) for dt in dtypes for (L, B) in shapes]
    device = "cuda" if cuda else "cpu"
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        result["compile"] = comp.summary()
        result["seconds"] = time.time() - t_start
        args.out.write_text(json.dumps(result, indent=1, default=str))

    # phase 1, while the candidates compile: the default configuration of every shape (it compiles first)
    results = {}
    for length, batch, dname in jobs:
        if hard_end - time.time() < 30.0:
            break
        log(f"L={length} B={batch} {dname}: default")
        comp.ready({}, dname, timeout=max(0.0, min(90.0, hard_end - time.time() - 60.0)))
        try:
            results[(length, batch, dname)] = measure_default(Shape(length, batch, dname, timer, device), log)
        except Exception as e:  # noqa: BLE001 - keep the other shapes
            results[(length, batch, dname)] = {"L": length, "B": batch, "dtype": dname,
                                               "error": traceback.format_exc()[-1500:]}  # fmt: skip
            log(f"  ERROR {e!r}")
        if cuda:
            torch.cuda.empty_cache()
    result["shapes"] = list(results.values())
    save()
    # phase 2: wait for the compile pool (at most until 35% of the budget), then sweep shape by shape
    wait_until = t_start + 0.35 * args.budget_s
    for fut in comp.futures.values():
        try:
            fut.result(timeout=max(0.0, wait_until - time.time()))
        except Exception:  # noqa: BLE001,S110 - a timeout or a failed worker: the sweep handles both
            pass
    log(f"compile: {json.dumps({k: v for k, v in comp.summary().items() if k != 'errors'})}")
    todo = [k for k in jobs if k in results and "default" in results[k]]
    weights = [SHAPE_WEIGHT.get((L, B), 1.0) for L, B, _ in todo]
    reserve = 8.0  # writing the report
    for i, key in enumerate(todo):
        length, batch, dname = key
        left = hard_end - reserve - time.time()
        if left < 5.0:
            results[key]["sweep_skipped"] = "budget"
            log(f"L={length} B={batch} {dname}: sweep skipped (budget)")
            continue
        share = left * weights[i] / sum(weights[i:])
        log(f"L={length} B={batch} {dname}: sweep, {share:.0f} s of {left:.0f} s left")
        try:
            shape = Shape(length, batch, dname, timer, device)
            sweep_shape(shape, results[key], comp, time.time() + share, log)
            results[key]["bounds"] = bounds(length, batch, dname, rates)
            del shape
        except Exception as e:  # noqa: BLE001 - keep the other shapes
            results[key]["sweep_error"] = traceback.format_exc()[-1500:]
            log(f"L={length} B={batch} {dname}: ERROR {e!r}")
        if cuda:
            torch.cuda.empty_cache()
        save()
    result["compile"] = comp.summary()
    comp.close()
    table = proposed_table(result["shapes"], arch, device)
    result["proposed_table"] = table
    result["proposed_table_py"] = table_source(table)
    result["seconds"] = time.time() - t_start
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(summary_lines(result["shapes"], rates)))
    print("\nproposed kernels/selective_scan/config.py table (best fwd+bwd per bucket, > 2% over the default):")
    print(result["proposed_table_py"])
    print(f"compile: {json.dumps(result['compile'])}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
