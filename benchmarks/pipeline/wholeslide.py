"""The whole run of a realistic slide, call to done, beside the model alone: the pipeline's end-to-end measure.

The real-pixel mosaic (``mosaic_slide``: 80,000 x 60,000 px at 0.25 µm/px, about half tissue, hundreds of
thousands of nuclei) goes through ``vimscope.pipeline.iter_run`` with the default model and the default outputs
(instances, class regions, GeoJSON, pyramids, summary), once, to the end. Beside it, in the same process and on the
same card: the model alone (``ceilings.model_alone``: the default model, tile and batch, tiles already on the
GPU). Recorded: wall seconds from the call to the done event, the tile loop's seconds and Mpx/s (core area of the
tiles, the model-alone unit), both as ratios of the model-alone rate, GPU busy during the loop (nvidia-smi every
100 ms), each stage's seconds from the run summary, CPU seconds per thread group, peak host RSS, the objects found.

    python -m benchmarks.pipeline.wholeslide --cells .carry/cells.zip --out gpu_out/wholeslide.json
    python -m benchmarks.pipeline.wholeslide --device cpu --model vim_test_nuclei --size 4096x3072   # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.common.runinfo import git_commit, gpu_names, write_result
from benchmarks.pipeline.ceilings import model_alone
from benchmarks.pipeline.mosaic_slide import DATA, mosaic_in
from benchmarks.pipeline.throughput import end_to_end, pipeline_batch, versions


def parse_args(argv=None) -> argparse.Namespace:
    from vimscope.pipeline.config import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="80000x60000", help="WIDTHxHEIGHT of the mosaic (px at 0.25 µm/px)")
    ap.add_argument("--cells", type=Path, default=DATA, help="its crops: ../shared/data/labelled or a pack")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--model-s", type=float, default=20.0, help="seconds of model-alone timing")
    ap.add_argument("--stripe-width", type=int, default=None, help="the pipeline's stripe width (default: its own)")
    ap.add_argument("--cell-threads", type=int, default=None, help="instance cells labelled at once (default: auto)")
    ap.add_argument("--warm-size", default="4096x2048", help="a small mosaic run first, untimed ('' for none)")
    ap.add_argument("--progress-s", type=float, default=15.0, help="print the run's latest event this often")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vimscope-bench-wholeslide"))
    ap.add_argument(
        "--out", type=Path, default=Path("-"), help="JSON (default benchmarks/results/wholeslide-<date>.json)"
    )
    return ap.parse_args(argv)


def main(argv=None) -> int:
    import vimscope
    from vimscope.models import create_model
    from vimscope.pipeline.config import PipelineConfig

    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    slide = mosaic_in(args.workdir, width, height, args.cells)
    built_s = round(time.perf_counter() - t0, 1)
    device = torch.device(args.device)
    overrides = {"stripe_width": args.stripe_width} if args.stripe_width else {}
    config = PipelineConfig.load(device=args.device, model=args.model, **overrides)
    batch = pipeline_batch(config, device)

    module = create_model(args.model)
    spec = module.spec
    alone = model_alone(module, spec, device, batch, args.model_s)
    del module
    print(f"model alone: {alone}", flush=True)
    if args.cell_threads:
        import vimscope.pipeline.instances as instances

        instances.cell_threads = lambda: args.cell_threads
    warm_s = None
    if args.warm_size:  # compiled code (numba's cache, Triton, CUDA graphs) ready, as for a user's second slide
        t1 = time.perf_counter()
        small = mosaic_in(args.workdir, *(int(v) for v in args.warm_size.lower().split("x")), args.cells)
        end_to_end(small, config.replace(overwrite=True).to_dict(), args.workdir / "warm", float("inf"), finish=True)
        warm_s = round(time.perf_counter() - t1, 1)
        print(f"warm-up run: {warm_s} s", flush=True)
    run = end_to_end(
        slide,
        config.replace(overwrite=True).to_dict(),
        args.workdir / "out",
        float("inf"),
        finish=True,
        progress_s=args.progress_s,
    )
    model_rate = alone["mpx_s"]
    core_mpx = run.get("core_mpx")
    doc = {
        "benchmark": "wholeslide",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "card": (gpu_names() or ["cpu"])[0] if device.type == "cuda" else "cpu",
        "host": platform.node(),
        "cpu_threads": len(os.sched_getaffinity(0)),
        "versions": versions(),
        "package": str(Path(vimscope.__file__).parent),  # which vimscope ran (a baseline's tree, on the device)
        "config": {"stripe_width": config.stripe_width, "batch_size": batch},
        "args": {k: str(v) for k, v in vars(args).items()},
        "slide": {"path": str(slide), "width": width, "height": height, "built_s": built_s, "warm_up_s": warm_s},
        "model_alone": alone,
        "run": run,
        "objects": run.pop("objects", None),
        "ratios": {
            "tile_loop_vs_model": _ratio(run.get("mpx_s"), model_rate),
            "whole_run_vs_model": _ratio(core_mpx / run["run_s"] if run.get("run_s") else None, model_rate),
            "model_alone_s": round(core_mpx / model_rate, 1) if model_rate and core_mpx else None,
        },
    }
    write_result(doc, args.out, "wholeslide")
    print(json.dumps({k: doc[k] for k in ("slide", "ratios")}, indent=1))
    print(f"run: {run.get('run_s')} s call to done, loop {run.get('tiles_s')} s, GPU busy {run.get('gpu_busy')}")
    return 0


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


if __name__ == "__main__":
    sys.exit(main())
