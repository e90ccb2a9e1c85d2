"""Batch throughput on the GPU machine: slides/hour, megapixels/s, GPU busy fraction, per-slide fixed overhead.

Generates JPEG-tiled pyramidal TIFF slides of synthetic tissue, warms the workers (kernels compiled, model
cached) on a throw-away batch, then times ``vimscope batch`` over the slides, sampling every GPU with
``nvidia-smi`` while it runs. Goals (issue 10): GPU busy >= 85 % and per-slide fixed overhead <= 5 s.

Per-slide fixed overhead is measured two ways: the median time of tiny slides (where compute is nil) and the
intercept of a straight-line fit of every slide's time slot (start to start on its worker) against its
megapixels. Each slide must be done exactly once; the script checks the state files and says so.

Configurations (``--configs``): ``local`` (``--workers local``: one process per visible GPU) and ``dask:N``
(a ``dask scheduler`` plus N ``dask worker --resources GPU=1`` processes, one per GPU, each with its own
``CUDA_VISIBLE_DEVICES``; issue 13). ``--kill`` adds a run of the last dask configuration in which one worker is
killed mid-run: the batch must still complete with each slide done once. With two or more configurations the
JSON has a top-level ``scaling`` (throughput of the last over the first).

    python -m benchmarks.batch.throughput                         # one GPU, local workers
    python -m benchmarks.batch.throughput --configs dask:1,dask:2 --kill --size 20480 --slides 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common.probes import GpuSampler
from benchmarks.common.runinfo import RESULTS, gpu_names, module_versions
from vimscope.synthetic import jpeg_pyramid

VIMSCOPE = [sys.executable, "-m", "vimscope"]


# --- synthetic slides -----------------------------------------------------------------------------------------
def make_slides(specs: list[tuple[Path, int, int]], mpp: float) -> None:
    """Write the missing slides of ``specs`` ((path, size, seed)) in parallel processes."""
    from concurrent.futures import ProcessPoolExecutor

    todo = [(p, n, s) for p, n, s in specs if not p.exists()]
    with ProcessPoolExecutor(max(1, min(len(todo), os.cpu_count() or 1))) as pool:
        for f in [pool.submit(jpeg_pyramid, p, n, mpp=mpp, seed=s) for p, n, s in todo]:
            f.result()


# --- clusters --------------------------------------------------------------------------------------------------
def _gpus_of(config: str) -> int:
    return int(config.split(":")[1]) if ":" in config else 1


class DaskCluster:
    """A scheduler and one ``dask worker`` per GPU (``per_gpu`` processes each), as the README tells users."""

    def __init__(self, n: int, workdir: Path, *, per_gpu: int = 1):
        self.n, self.workdir, self.per_gpu = n, workdir, per_gpu
        self.file = workdir / f"scheduler-{n}.json"
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        self.file.unlink(missing_ok=True)
        self.log = open(self.workdir / f"dask-{self.n}.log", "ab")  # scheduler and worker chatter, not the table
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        cmd = [*dask, "--scheduler-file", str(self.file), "--no-dashboard"]
        self.procs.append(subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT))
        while not self.file.exists():
            time.sleep(0.2)
        for i in range(self.n):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i)}
            cmd = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.file)]
            cmd += ["--nthreads", "1", "--nworkers", str(self.per_gpu), "--resources", "GPU=1", "--memory-limit", "0"]
            cmd += ["--no-dashboard"]
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT))
        from distributed import Client

        with Client(scheduler_file=str(self.file)) as c:
            c.wait_for_workers(self.n * self.per_gpu, timeout=180)
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


# --- one timed batch -------------------------------------------------------------------------------------------
def run_batch(inputs: Path, out: Path, execution: list[str], extra: list[str], *, kill_after: float | None = None):
    cmd = [*VIMSCOPE, "batch", str(inputs), "-o", str(out), *execution, *extra]
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    killed = None
    if kill_after is not None:
        killed = _kill_one_worker_when(out, proc, kill_after)
    rc = proc.wait()
    return rc, t0, time.time(), killed


def _kill_one_worker_when(out: Path, proc: subprocess.Popen, after_fraction: float):
    """Kill the process holding a lease once ``after_fraction`` of the slides are done (a worker, mid-slide)."""
    state_dir, lease_dir = out / "_batch" / "state", out / "_batch" / "leases"
    while proc.poll() is None:
        states = [json.loads(p.read_text()) for p in state_dir.glob("*.json")] if state_dir.exists() else []
        done = sum(s["status"] == "done" for s in states)
        if states and done >= after_fraction * len(states):
            for lease in lease_dir.glob("*.lease"):
                try:
                    info = json.loads(lease.read_text())
                    os.kill(info["pid"], signal.SIGKILL)
                    return {"slide": lease.stem, "pid": info["pid"], "at_done": done}
                except (OSError, ValueError):
                    continue
        time.sleep(0.2)
    return None


def summarise(out: Path, t0: float, t1: float, sampler: GpuSampler) -> dict:
    states = [json.loads(p.read_text()) for p in sorted((out / "_batch" / "state").glob("*.json"))]
    done_once = all(sum(a.get("outcome") == "done" for a in s["attempts"]) == 1 for s in states)
    mpx = [_megapixels(s) for s in states]
    starts = sorted(a["started"] for s in states for a in s["attempts"] if a.get("outcome") == "done")
    work_t0, work_t1 = (
        (starts[0], max(a.get("finished", t1) for s in states for a in s["attempts"])) if starts else (t0, t1)
    )
    slots = _slots(states)
    fit = np.polyfit([m for m, _ in slots], [s for _, s in slots], 1) if len(slots) >= 3 else (None, None)
    return {
        "slides": len(states),
        "done": sum(s["status"] == "done" for s in states),
        "failed": [s["name"] for s in states if s["status"] != "done"],
        "each_done_exactly_once": done_once,
        "wall_s": round(t1 - t0, 2),
        "startup_s": round(work_t0 - t0, 2),
        "slides_per_hour": round(len(states) / (t1 - t0) * 3600, 1),
        "megapixels_per_s": round(sum(mpx) / (work_t1 - work_t0), 2),
        "gpu_busy": sampler.busy(work_t0, work_t1),
        "tiny_slide_seconds_median": _median(
            [s["timings"].get("total") for s in states if s["name"].startswith("tiny")]
        ),
        "large_slide_seconds_median": _median(
            [s["timings"].get("total") for s in states if s["name"].startswith("large")]
        ),
        "overhead_fit_s": None if fit[1] is None else round(float(fit[1]), 3),
        "seconds_per_megapixel_fit": None if fit[0] is None else round(float(fit[0]), 5),
        "output_hashes": _output_hashes(out, states),
    }


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _megapixels(state: dict) -> float:
    s = state.get("summary") or {}
    if "megapixels" in s:
        return float(s["megapixels"])
    shape = s.get("out_shape")
    return shape[0] * shape[1] / 1e6 if shape else 0.0


def _slots(states: list[dict]) -> list[tuple[float, float]]:
    """(megapixels, seconds from this slide's start to the next start on the same worker) per slide."""
    by_worker: dict[tuple, list[tuple[float, float, float]]] = {}
    for s in states:
        for a in s["attempts"]:
            if a.get("outcome") == "done":
                by_worker.setdefault((a["host"], a["pid"]), []).append((a["started"], a["finished"], _megapixels(s)))
    slots = []
    for runs in by_worker.values():
        runs.sort()
        for (start, _, mpx), (nxt, _, _) in zip(runs, runs[1:]):
            slots.append((mpx, nxt - start))
    return slots


def _output_hashes(out: Path, states: list[dict]) -> dict[str, str]:
    import hashlib

    hashes = {}
    for s in states:
        h = hashlib.sha256()
        folder = out / s["name"]
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix not in (".json", ".md", ".png") and not f.name.startswith("."):
                h.update(f.relative_to(folder).as_posix().encode())
                h.update(f.read_bytes())
        hashes[s["name"]] = h.hexdigest()[:16]
    return hashes


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=12, help="large slides in the timed batch")
    ap.add_argument("--size", type=int, default=8192, help="side of a large slide (px at level 0)")
    ap.add_argument("--warm-size", type=int, default=2048, help="side of the warm-up / calibration slides")
    ap.add_argument("--tiny", type=int, default=8, help="512 x 512 slides for the fixed-overhead estimate")
    ap.add_argument("--configs", default="local", help="comma list of local | dask:N")
    ap.add_argument(
        "--per-gpu", type=int, default=1, help="worker processes per GPU: one's host work overlaps another's model"
    )
    ap.add_argument("--target-s", type=float, default=0, help="size the batch to last about this long (calibrated)")
    ap.add_argument("--only-kill", action="store_true", help="only the killed-worker run (a second device call)")
    ap.add_argument("--kill", action="store_true", help="also run the last dask config with a worker killed mid-run")
    ap.add_argument("--mpp", type=float, default=0.25, help="slide pixel size (the default model's: no resampling)")
    ap.add_argument("--model", default=None, help="model name (default: the pipeline's default)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vimscope-bench-batch"))
    ap.add_argument(
        "--json", type=Path, default=None, help="result file (default benchmarks/results/batch-<date>.json)"
    )
    return ap.parse_args()


def measure(args, config: str, kill: bool, warm: Path, n_warm: int, pool: Path, tiny: list, extra: list) -> dict:
    """One configuration: warm the workers, calibrate the batch (``--target-s``), run the timed batch (killing a
    worker mid-run with ``kill``) and summarise it."""
    tag = f"{config.replace(':', '-')}{'-kill' if kill else ''}"
    out, inputs = args.workdir / f"out-{tag}", args.workdir / f"slides-{tag}"
    n_gpus = _gpus_of(config)
    slots = n_gpus * args.per_gpu
    run_extra = [*extra, "--reader-threads", str(max(2, (os.cpu_count() or 2) // slots))]
    subprocess.run(["rm", "-rf", str(out), str(inputs), *map(str, args.workdir.glob("warm-out*"))], check=True)
    if config == "local":
        execution, cluster = ["--workers", str(slots)], None
    else:
        cluster = DaskCluster(n_gpus, args.workdir, per_gpu=args.per_gpu).__enter__()
        execution = ["--scheduler-file", str(cluster.file)]
    try:
        run_batch(warm, args.workdir / "warm-out", execution, run_extra)  # compile kernels, load models
        rate = None
        if args.target_s:  # a second warm batch measures the rate: enough large slides for target_s seconds
            _, w0, w1, _ = run_batch(warm, args.workdir / "warm-out2", execution, run_extra)
            rate = n_warm * args.warm_size**2 / 1e6 / (w1 - w0)
        n_large = max(args.slides, math.ceil(args.target_s * rate / (args.size**2 / 1e6))) if rate else args.slides
        n_large = -(-n_large // slots) * slots  # whole rounds: no half-empty last round skews the rate
        large = [(pool / f"large-{i:02d}.tif", args.size, i) for i in range(n_large)]
        make_slides(large, args.mpp)
        inputs.mkdir(parents=True)
        for p, _, _ in large + tiny:
            (inputs / p.name).symlink_to(p)
        label = config + (" (worker killed)" if kill else "")
        print(f"{label}: {n_large} slides of {args.size}^2 (calibrated {rate and round(rate, 1)} Mpx/s)", flush=True)
        with GpuSampler() as sampler:
            rc, t0, t1, killed = run_batch(inputs, out, execution, run_extra, kill_after=0.4 if kill else None)
        res = summarise(out, t0, t1, sampler)
        res.update(rc=rc, killed=killed, gpus=n_gpus, processes_per_gpu=args.per_gpu, calibrated_mpx_s=rate)
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)
    return res


def main() -> int:
    args = parse_args()
    pool, warm = args.workdir / "pool", args.workdir / "warm"
    for d in (pool, warm):
        d.mkdir(parents=True, exist_ok=True)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    most_slots = max(_gpus_of(c) for c in configs) * args.per_gpu
    t = time.time()
    tiny = [(pool / f"tiny-{i:02d}.tif", 512, 100 + i) for i in range(args.tiny)]
    warm_specs = [(warm / f"warm-{i:02d}.tif", args.warm_size, 200 + i) for i in range(2 * most_slots)]
    make_slides(tiny + warm_specs, args.mpp)
    print(f"slides ready in {time.time() - t:.0f} s", flush=True)

    extra = ["--mpp", str(args.mpp)] + (["--model", args.model] if args.model else [])
    results = {}
    runs = [(c, False) for c in configs if not args.only_kill] + ([(configs[-1], True)] if args.kill else [])
    for config, kill in runs:
        label = config + (" (worker killed)" if kill else "")
        res = measure(args, config, kill, warm, len(warm_specs), pool, tiny, extra)
        results[label] = res
        _write_results(args, results)
        busy = ", ".join(f"GPU{k} {v:.0%}" for k, v in res["gpu_busy"].items()) or "n/a"
        print(
            f"{label:>22}: {res['slides_per_hour']:8.1f} slides/h {res['megapixels_per_s']:8.1f} Mpx/s  busy {busy}  "
            f"overhead fit {res['overhead_fit_s']} s, tiny-slide median {res['tiny_slide_seconds_median']} s  "
            f"once={res['each_done_exactly_once']} rc={res['rc']}",
            flush=True,
        )

    _write_results(args, results)
    return 0


def _write_results(args, results: dict) -> None:
    """The JSON of the configurations measured so far (written after each: a call cut short keeps them)."""
    doc = {
        "benchmark": "batch",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu": gpu_names(),
        "versions": module_versions(("vimscope", "torch", "triton", "distributed")),
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
    }
    timed = [r for label, r in results.items() if "killed" not in label]
    if len(timed) >= 2:
        doc["scaling"] = round(timed[-1]["megapixels_per_s"] / max(timed[0]["megapixels_per_s"], 1e-9), 3)
    if len(results) >= 2:  # the same slide in every run gives the same bytes (the runs share their first slides)
        hashes = [r["output_hashes"] for r in results.values()]
        common = set.intersection(*(set(h) for h in hashes))
        doc["outputs_identical_across_runs"] = all(h[k] == hashes[0][k] for h in hashes for k in common)
    path = args.json or RESULTS / f"batch-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
