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

    python -m benchmarks.kernels.tune_scan --out $OUT/tune.json --budget-s 200
Medians of CUDA-event timings with the L2 flushed before each repetition (as triton.testing.do_bench does, with
fewer repetitions for slow candidates). Needs only torch and triton. Without a GPU it runs as a dry run through
Triton's interpreter on a tiny shape (checks the script, times nothing meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from benchmarks.common.runinfo import RESULTS
from benchmarks.kernels.tune_pool import Compiler
from benchmarks.kernels.tune_report import proposed_table, summary_lines, table_source
from benchmarks.kernels.tune_shape import E, N, R, Shape, Timer, bounds, compare, kernel_stats, max_rel, reset_stats

SHAPES = [(16385, 8), (6085, 64), (4097, 64), (16385, 1), (401, 256)]  # (L, B), most important first
SHAPE_WEIGHT = {(16385, 8): 1.0, (6085, 64): 1.6, (4097, 64): 1.2, (16385, 1): 0.5, (401, 256): 1.0}
TOLERANCE = {"bf16": 3e-2, "fp16": 5e-3, "fp32": 2e-4}  # max |diff| / max |ref| against the default config

# forward keys only (the backward keeps its defaults); {} is the default configuration. Registers/spills of each
# on sm_90 without a GPU: python -m benchmarks.kernels.compile_report --elast 1 --block-t 2 (etc.). num_stages is
# not swept:
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


class Sweep:
    """The candidates of one shape measured against its default, each within the current ``deadline``."""

    def __init__(self, shape: Shape, res: dict, comp: Compiler, deadline: float, log):
        self.shape, self.comp, self.deadline, self.log = shape, comp, deadline, log
        self.dtype, self.tol = shape.dtype_name, TOLERANCE[shape.dtype_name]
        self.default = res["default"]

    def left(self) -> float:
        return self.deadline - time.time()

    def run_candidates(self, cands, kind):
        rows = []
        for launch in cands:
            if self.left() < 2.0:
                rows.append({"launch": launch, "skipped": "shape budget"})
                continue
            ok, why = self.comp.ready(launch, self.dtype, timeout=min(self.left() - 2.0, 30.0))
            if not ok:
                rows.append({"launch": launch, "skipped": why})
                self.log(f"  {kind} {launch}: skipped ({why})")
                continue
            row = {"launch": launch, "resolved": self.shape.resolved(launch)}
            if why:
                row["compile_note"] = why
            rows.append(self.measure(row, launch, kind))
        return rows

    def measure(self, row: dict, launch: dict, kind: str) -> dict:
        """Errors against the reference and the time of one pass (``kind``: fwd or bwd), recorded into ``row``."""
        shape, d = self.shape, self.default
        try:
            reset_stats()
            if kind == "fwd":
                row["errors"] = {"y": max_rel(shape.forward_output(launch), shape.reference["y"])}
                row["fwd_ms"] = shape.time_forward(launch)
            else:
                row["errors"] = compare(shape.outputs(launch), shape.reference)
                row["bwd_ms"] = shape.time_backward(launch)
            row["max_err"] = max(row["errors"].values())
            row["ok"] = row["max_err"] <= self.tol
            row["kernels"] = kernel_stats()
            t = row[f"{kind}_ms"]
            self.log(f"  {kind} {launch}: {t:.3f} ms (default {d[f'{kind}_ms']:.3f}), max err {row['max_err']:.1e}"
                     + ("" if row["ok"] else "  WRONG"))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one failing candidate must not end the sweep
            row["error"] = repr(e)[:400]
            self.log(f"  {kind} {launch}: ERROR {row['error'][:160]}")
        return row


def best_of(rows, kind, n):
    good = [r for r in rows if r.get("ok") and f"{kind}_ms" in r]
    return sorted(good, key=lambda r: r[f"{kind}_ms"])[:n]


def chunk_candidates(fwd_rows: list[dict], bwd_rows: list[dict], length: int) -> tuple[list[dict], list[dict]]:
    """Chunk-length variants of the two best forwards (fused dt_proj left out) and the two best backwards."""
    chunk_f = []
    for row in best_of(fwd_rows, "fwd", 2):
        if row["launch"].get("fuse_dt_proj"):
            continue
        for c in chunk_variants(row["resolved"]["chunk_len"], length):
            chunk_f.append(row["launch"] | {"chunk_len": c})
    chunk_b = []
    for row in best_of(bwd_rows, "bwd", 2):
        for c in chunk_variants(row["resolved"]["bwd_chunk_len"], length):
            chunk_b.append(row["launch"] | {"bwd_chunk_len": c})
    return chunk_f, chunk_b


# every key pinned to what each half was measured with (unset bwd_* keys follow the forward's: the chunk length,
# the tile length, the switches...)
FWD_KEYS = (
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


def sweep_shape(shape: Shape, res: dict, comp: Compiler, deadline: float, log) -> dict:
    """Forward sweep, backward sweep, chunk rounds, best combined (and its stages); recorded into ``res``."""
    sweep = Sweep(shape, res, comp, deadline, log)
    shape.reference = shape.outputs({})
    d = res["default"]

    # budget split: forward sweep ~25%, backward ~45%, chunk rounds ~15%, combined + stages the rest
    start_left = sweep.left()
    fwd_deadline = time.time() + 0.25 * start_left
    saved = deadline

    def sub(frac_end):
        return min(saved, time.time() + frac_end)

    sweep.deadline = fwd_deadline
    res["fwd_sweep"] = sweep.run_candidates(FWD_CANDIDATES[1:], "fwd")
    sweep.deadline = sub(0.45 * start_left)
    res["bwd_sweep"] = sweep.run_candidates(BWD_CANDIDATES[1:], "bwd")
    default_fwd = {"launch": {}, "fwd_ms": d["fwd_ms"], "ok": True, "resolved": d["resolved"]}
    default_bwd = {"launch": {}, "bwd_ms": d["bwd_ms"], "ok": True, "resolved": d["resolved"]}
    sweep.deadline = sub(0.15 * start_left)
    chunk_f, chunk_b = chunk_candidates(res["fwd_sweep"] + [default_fwd], res["bwd_sweep"] + [default_bwd], shape.L)
    res["fwd_chunk_sweep"] = sweep.run_candidates(chunk_f, "fwd")
    res["bwd_chunk_sweep"] = sweep.run_candidates(chunk_b, "bwd")
    sweep.deadline = saved
    best_f = best_of(res["fwd_sweep"] + res["fwd_chunk_sweep"] + [default_fwd], "fwd", 1)[0]
    best_b = best_of(res["bwd_sweep"] + res["bwd_chunk_sweep"] + [default_bwd], "bwd", 1)[0]
    best = {k: best_f["resolved"][k] for k in FWD_KEYS}
    best |= {k: v for k, v in best_b["resolved"].items() if k.startswith("bwd_")}
    res["best_launch"] = best
    res["best_fwd"], res["best_bwd"] = best_f, best_b
    measure_best(sweep, res, best)
    return res


def measure_best(sweep: Sweep, res: dict, best: dict) -> None:
    """The best forward + best backward together, then (when correct) its stages alone; recorded into ``res``."""
    shape, d, log = sweep.shape, sweep.default, sweep.log
    if sweep.left() > 1.0:
        try:
            reset_stats()
            errors = compare(shape.outputs(best), shape.reference)
            res["best"] = {
                "launch": best,
                "resolved": shape.resolved(best),
                "errors": errors,
                "ok": max(errors.values()) <= sweep.tol,
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
    if sweep.left() > 1.0 and res.get("best", {}).get("ok"):
        try:
            res.setdefault("stages", {})["best"] = shape.stages(best)
            log("  stages (best): " + ", ".join(f"{k} {v:.3f}" for k, v in res["stages"]["best"].items()))
        except Exception as e:  # noqa: BLE001
            res.setdefault("stages", {})["best"] = {"error": repr(e)[:300]}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "tune.json")
    ap.add_argument("--budget-s", type=float, default=200.0, help="hard wall-clock budget of the whole run")
    ap.add_argument("--dtypes", default="bf16", help="comma-separated: bf16,fp32,fp16")
    ap.add_argument("--shapes", default="", help="L:B,L:B,... (default: the five vim_tiny shapes)")
    ap.add_argument("--workers", type=int, default=-1, help="compile processes (default: CPUs - 2, at most 14)")
    ap.add_argument("--rep-ms", type=float, default=40.0, help="timing window per measurement")
    ap.add_argument("--limit", type=int, default=0, help="only the first N candidates of each sweep (dry runs)")
    return ap.parse_args(argv)


def run_header(args: argparse.Namespace, cuda: bool, defaults: dict) -> dict:
    """The JSON's fixed part: environment, command, budget, candidates, and the copy / exp2 rates of this card."""
    from benchmarks.kernels.scan import environment

    result = {
        "environment": environment() if cuda else {"device": "cpu (interpreter dry run)"},
        "command": " ".join(["python"] + sys.argv),
        "budget_s": args.budget_s,
        "config_defaults": dict(defaults),
        "fwd_candidates": FWD_CANDIDATES,
        "bwd_candidates": BWD_CANDIDATES,
        "shapes": [],
    }
    if cuda:
        from benchmarks.kernels.scan import copy_bandwidth, exp2_rate

        result["rates"] = {"copy_Bps": copy_bandwidth(), "exp2_per_s": exp2_rate()}
    else:
        result["rates"] = {"copy_Bps": 1e10, "exp2_per_s": 1e9}
    return result


def measure_defaults(jobs, comp: Compiler, timer: Timer, device: str, hard_end: float, log) -> dict:
    """Phase 1, while the candidates compile: the default configuration of every shape (it compiles first)."""
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
        if device == "cuda":
            torch.cuda.empty_cache()
    return results


def wait_for_pool(comp: Compiler, wait_until: float) -> None:
    for fut in comp.futures.values():
        try:
            fut.result(timeout=max(0.0, wait_until - time.time()))
        except Exception:  # noqa: BLE001,S110 - a timeout or a failed worker: the sweep handles both
            pass


def sweep_all(jobs, results: dict, comp: Compiler, timer: Timer, device: str, hard_end: float, rates: dict, log,
              save) -> None:  # fmt: skip
    """Phase 2: sweep shape by shape, each given a share of the time left by its weight; saved after each."""
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
        if device == "cuda":
            torch.cuda.empty_cache()
        save()


def write_report(result: dict, comp: Compiler, out: Path, arch: str, device: str, t_start: float) -> None:
    """The proposed table into the JSON, then the summary table, the table's source and the compile summary."""
    result["compile"] = comp.summary()
    comp.close()
    table = proposed_table(result["shapes"], arch, device)
    result["proposed_table"] = table
    result["proposed_table_py"] = table_source(table)
    result["seconds"] = time.time() - t_start
    out.write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(summary_lines(result["shapes"], result["rates"])))
    print("\nproposed kernels/common/config.py table (best fwd+bwd per bucket, > 2% over the default):")
    print(result["proposed_table_py"])
    print(f"compile: {json.dumps(result['compile'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.limit:
        FWD_CANDIDATES[args.limit :] = []
        BWD_CANDIDATES[args.limit :] = []
    t_start = time.time()
    hard_end = t_start + args.budget_s
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from vimscope_kernels.common import config

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
    result = run_header(args, cuda, config.DEFAULTS)
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

    results = measure_defaults(jobs, comp, timer, device, hard_end, log)
    result["shapes"] = list(results.values())
    save()
    # phase 2: wait for the compile pool (at most until 35% of the budget), then sweep shape by shape
    wait_for_pool(comp, t_start + 0.35 * args.budget_s)
    log(f"compile: {json.dumps({k: v for k, v in comp.summary().items() if k != 'errors'})}")
    sweep_all(jobs, results, comp, timer, device, hard_end, rates, log, save)
    write_report(result, comp, args.out, arch, device, t_start)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
