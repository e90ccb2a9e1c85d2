"""Pipeline throughput on the GPU machine: the ceilings and the end-to-end rate, measured in one run.

Slides: ``synthetic``, a JPEG-tiled pyramidal TIFF of ``--size`` px a side (512 px YCbCr tiles at 0.25 µm/px, the
default model's resolution, nothing resampled; ``vimscope.synthetic.jpeg_pyramid``) and the demo SVS (``--demo``; 240
px RGB-photometric tiles with shared tables at 0.5 µm/px), run at the default model's resolution (``demo``: read
2x upsampled, so the reader decodes) and at its own (``demo@native``: the JPEG tile path applies; the model then
runs at the wrong scale, which changes nothing about throughput).

Every rate is output megapixels per second: the processing-resolution area of the tile cores a stage delivers
(a 256 px tile with a 32 px halo delivers 192 x 192 px), so decode, model and end-to-end are in one unit.

- decode-alone: the pipeline's loaders over the slide's tiles with no model, each batch normalised on the device as
  the model would take it: ``reader`` (decode=cpu: tifffile or OpenSlide decodes, all reader threads),
  ``cpu-tiles`` (the level's own JPEG tiles on CPU threads) and ``nvjpeg`` (the GPU decode path). ``raw decode``
  is the decoders alone on the level's tiles (TIFF tile px/s): libjpeg-turbo on all threads, nvjpeg in batches.
- model-alone: the default model (vim_tiny_nuclei; bf16 autocast and the fused scan, as the pipeline runs it) at
  its default tile and the pipeline's default batch (auto: 32 on CUDA), random uint8 tiles already on the GPU,
  normalised as batches are; also at batch 4 (or 32), and the U-Net baseline (vimscope/configs/train/nuclei_unet.yaml,
  random weights).
- host-alone: the real pipeline with a model of the default model's IO contract that computes nothing (its maps
  are the input's channels): the ceiling of stitching, writing and the loop itself.
- end-to-end: ``vimscope.pipeline.iter_run`` into a fresh folder, one run per ``--e2e`` name: ``gpu``
  (decode=gpu, the default pipeline on a GPU), ``cpu`` (decode=cpu: the reader decodes), ``gpu-eager`` (no CUDA
  graph), ``gpu-after`` (instances and class regions after the loop instead of beside it: what they cost the
  loop), ``gpu-window`` (tile windows assembled one by one, not a batch row at a time), ``gpu-full`` (also the
  rest of the run), ``gpu-profile`` (a stack sampler over every thread: where each
  thread's wall time goes). ``tiles`` counts from the plan event to the last tile event (the goal's measure); runs
  longer than their share of ``--budget-s`` stop there and report the rate so far. ``run`` (call to done: tissue
  mask, pyramids, nuclei, GeoJSON) for ``gpu-full`` and the ``demo`` runs. ``loop_s``: the pipeline's own split of
  the tile loop (see ``pipeline.loop``); ``thread_cpu_s``: CPU seconds per thread group over the run.

Goal: end-to-end >= 90% of min(model-alone, decode-alone of the path the run used). GPU busy fraction: nvidia-smi
every 100 ms during each end-to-end run (``common.probes.GpuSampler``). Host peak RSS: VmHWM, reset per phase.

    python -m benchmarks.pipeline.throughput --demo .carry/CMU-1-Small-Region.svs --out gpu_out/pipeline.json
    python -m benchmarks.pipeline.throughput --device cpu --size 2048 --model vim_test_nuclei --budget-s 120  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from benchmarks.common.probes import GpuSampler, StackSampler, ThreadCpu, followers_after_loop
from benchmarks.common.runinfo import RESULTS, gpu_names, module_versions
from benchmarks.pipeline.ceilings import (
    NullModel,
    core_area,
    decode_alone,
    model_alone,
    mpx,
    peak_rss_mb,
    raw_decode,
    reset_peak_rss,
    unet_baseline,
)
from benchmarks.pipeline.mosaic_slide import DATA, mosaic_in
from benchmarks.pipeline.report import ratios, table
from vimscope.synthetic import jpeg_pyramid


# --- small helpers ---------------------------------------------------------------------------------------------
class Clock:
    """The run's deadline; each phase gets a share of what is left."""

    def __init__(self, budget: float):
        self.t0 = time.perf_counter()
        self.budget = budget

    @property
    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def cap(self, share: float, floor: float = 1.0) -> float:
        return max(floor, min(share * self.budget, self.left))


def pipeline_batch(config, device: torch.device) -> int:
    """The batch size the pipeline runs with (``batch_size: 0`` is auto, resolved in ``pipeline.plan``)."""
    if config.batch_size:
        return config.batch_size
    from vimscope.pipeline.plan import CPU_BATCH, GPU_BATCH

    return GPU_BATCH if device.type == "cuda" else CPU_BATCH


# --- slides ----------------------------------------------------------------------------------------------------
def slides(args, workdir: Path) -> dict[str, dict]:
    """name -> {path, target_mpp (None: the model's)}."""
    out = {}
    synthetic = workdir / f"synthetic-{args.size}.tif"
    if not synthetic.exists():
        t = time.perf_counter()
        jpeg_pyramid(synthetic, args.size, mpp=0.25, seed=1)
        print(f"synthetic {args.size} px slide written in {time.perf_counter() - t:.1f} s", flush=True)
    out["synthetic"] = {"path": synthetic, "target_mpp": None}
    if "mosaic" in args.slides.split(","):
        width, height = (int(v) for v in args.mosaic.lower().split("x"))
        out["mosaic"] = {"path": mosaic_in(workdir, width, height, args.cells), "target_mpp": None}
    if args.demo and Path(args.demo).exists():
        from vimscope.io import open_slide

        out["demo"] = {"path": Path(args.demo), "target_mpp": None}
        with open_slide(args.demo) as r:
            out["demo@native"] = {"path": Path(args.demo), "target_mpp": r.meta.mpp}
    elif args.demo:
        print(f"demo slide {args.demo} not found: skipped", flush=True)
    return out


def make_plan(reader, spec, target_mpp):
    from vimscope.tiling.plan import plan_tiles

    return plan_tiles(reader.meta, target_mpp=target_mpp or spec.mpp, tile=spec.tile, halo=spec.halo)


# --- end-to-end ------------------------------------------------------------------------------------------------
E2E_VARIANTS = {  # --e2e names -> config changes; see the module text
    "gpu": {"decode": "gpu"},
    "cpu": {"decode": "cpu"},
    "gpu-eager": {"decode": "gpu", "cuda_graphs": False},
    "gpu-after": {"decode": "gpu"},
    "gpu-full": {"decode": "gpu"},
    "gpu-profile": {"decode": "gpu"},
    "gpu-window": {"decode": "gpu"},
}


@contextlib.contextmanager
def windows_one_by_one(on: bool):
    """With ``on``, the GPU decode path assembles each tile window on its own (``assemble_window``) instead of a
    batch row at a time: what the row gather saves the loop."""
    from vimscope.tiling.jpegloader import JpegTileLoader

    before = JpegTileLoader.gather_rows
    JpegTileLoader.gather_rows = not on
    try:
        yield
    finally:
        JpegTileLoader.gather_rows = before


def end_to_end(
    slide: Path, config: dict, out: Path, cap: float, *, finish: bool, model=None, progress_s: float = 0.0
) -> dict:
    """One run of the real pipeline; stops after the last tile (or at ``cap`` s of tiles) unless ``finish``; with
    ``progress_s``, prints the latest event that often (where a run stopped by a time limit got to)."""
    from vimscope.pipeline import iter_run

    shutil.rmtree(out, ignore_errors=True)
    reset_peak_rss()
    result: dict = {}
    plan = None
    done = 0
    t_call = time.perf_counter()
    t_plan = t_tile = None
    w_plan = w_tile = None
    with GpuSampler() as sampler, ThreadCpu() as threads:
        gen = iter_run(slide, config, out=out, model=model)
        with contextlib.closing(gen):
            printed = time.perf_counter()
            for ev in gen:
                now = time.perf_counter()
                if progress_s and now - printed >= progress_s:
                    printed = now
                    print(f"  {now - t_call:7.1f} s  {ev.stage} {ev.done}/{ev.total}", flush=True)
                if ev.stage == "plan":
                    t_plan, w_plan, plan = now, time.time(), ev.outputs["plan"]
                    result["decode"] = ev.outputs.get("decode")
                    result["tiles_planned"] = ev.total
                elif ev.stage == "tiles":
                    done, t_tile, w_tile = ev.done, now, time.time()
                    result["loop_s"] = {k: round(v, 2) for k, v in (ev.outputs.get("timings") or {}).items()}
                    last = done == ev.total
                    if (last and not finish) or (not last and now - t_plan > cap):
                        result["stopped_early"] = not last
                        break
                elif ev.stage == "done":
                    res = ev.outputs.get("result")
                    result["run_s"] = round(now - t_call, 2)
                    if res is not None:
                        s = res.summary
                        result["decode"] = s.get("decode", result.get("decode"))
                        result["timings_s"] = s.get("timings_s")
                        result["objects"] = s.get("objects")
                        result["run_mpx_s"] = mpx(s["megapixels"] * 1e6, now - t_call)
    result["peak_rss_mb"] = peak_rss_mb()
    if plan is None or t_tile is None:
        return {**result, "skipped": "no tiles ran"}
    order = sorted(range(len(plan.tiles)))[:done]
    seconds = t_tile - t_plan
    result.update(
        tiles=done,
        core_mpx=round(core_area(plan, range(len(plan.tiles))) / 1e6, 2),
        tiles_s=round(seconds, 2),
        mpx_s=mpx(core_area(plan, order), seconds),
        setup_s=round(t_plan - t_call, 2),
        gpu_busy=sampler.busy(w_plan, w_tile),
        thread_cpu_s=threads.by_group(),
    )
    shutil.rmtree(out, ignore_errors=True)
    return result


def versions() -> dict:
    out = {"python": platform.python_version()}
    out.update(module_versions(("torch", "triton", "torchvision", "tifffile", "imagecodecs", "openslide", "zarr",
                                "numpy", "numba")))  # fmt: skip
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
    return out


def parse_args() -> argparse.Namespace:
    from vimscope.pipeline.config import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=16384, help="side of the synthetic slide (px at 0.25 µm/px)")
    default_demo = Path.home() / ".cache" / "vimscope" / "CMU-1-Small-Region.svs"
    ap.add_argument("--demo", default=str(default_demo), help="the demo SVS ('' to skip)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model of the model-alone and end-to-end runs")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the pipeline's)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="the whole run ends within about this")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vimscope-bench-pipeline"))
    ap.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/pipeline-<date>.json)")
    ap.add_argument(
        "--slides", default="synthetic,demo,demo@native", help="which slides (comma-separated; also mosaic)"
    )
    ap.add_argument("--mosaic", default="80000x60000", help="WIDTHxHEIGHT of the real-pixel slide 'mosaic'")
    ap.add_argument("--cells", type=Path, default=DATA, help="its crops: ../shared/data/labelled (default) or a pack")
    ap.add_argument("--e2e", default="gpu,cpu", help=f"end-to-end runs, of: {', '.join(E2E_VARIANTS)}")
    ap.add_argument("--eager", action="store_true", help="model-alone also without CUDA graphs")
    args = ap.parse_args()
    for variant in args.e2e.split(","):
        if variant not in E2E_VARIANTS:
            ap.error(f"unknown --e2e run {variant!r}")
    return args


def measure_models(doc: dict, args, device: torch.device, batch_size: int, clock: Clock):
    """model-alone (slide-independent, measured once): the default batch, another batch, the U-Net, eager; returns
    the model's spec."""
    from vimscope.models import create_model

    module = create_model(args.model)
    spec = module.spec
    print(f"model-alone {spec.name} ...", flush=True)
    doc["model_alone"]["default"] = model_alone(module, spec, device, batch_size, clock.cap(0.04, 2.0))
    print(f"  {doc['model_alone']['default']}", flush=True)
    if clock.left > 0.7 * args.budget_s:
        other = 4 if batch_size >= 32 else 32
        doc["model_alone"][f"batch {other}"] = model_alone(module, spec, device, other, clock.cap(0.02, 1.0))
        with contextlib.suppress(Exception):
            unet, uspec = unet_baseline()
            doc["model_alone"]["unet"] = model_alone(unet, uspec, device, batch_size, clock.cap(0.02, 1.0))
        print(
            f"  batch {other}: {doc['model_alone'][f'batch {other}'].get('mpx_s')}, unet: "
            f"{doc['model_alone'].get('unet', {}).get('mpx_s')} Mpx/s",
            flush=True,
        )
    if args.eager and device.type == "cuda":
        doc["model_alone"]["eager"] = model_alone(module, spec, device, batch_size, clock.cap(0.03, 1.0), graphs=False)
        print(f"  eager: {doc['model_alone']['eager'].get('mpx_s')} Mpx/s", flush=True)
    return spec


def measure_decode(entry: dict, name: str, slide: dict, spec, device, batch_size, workers, share, clock) -> None:
    """The slide's plan, raw decode and decode-alone of each loader path, into ``entry``."""
    from vimscope.io import open_slide

    with open_slide(slide["path"]) as reader:
        plan = make_plan(reader, spec, slide["target_mpp"])
        entry.update(
            megapixels=round(core_area(plan, range(len(plan.tiles))) / 1e6, 1),
            tiles=len(plan.tiles),
            read_level=plan.read_level,
            level_scale=plan.level_scale,
        )
        print(f"{name}: {entry['megapixels']} Mpx in {len(plan.tiles)} tiles", flush=True)
        entry["raw_decode"] = raw_decode(reader, plan, device, workers, min(0.04 * share, clock.left / 8))
        entry["decode_alone"] = {}
        # untimed: reader threads open their handles, jpegcheck compiles (numba) or fills its verdict cache
        decode_alone("reader", reader, plan, device, spec, batch_size, workers, min(2.0, 0.01 * share))
        for path_name in ("reader", "cpu-tiles", "nvjpeg"):
            cap = min(0.06 * share, max(1.0, clock.left / 10))
            r = decode_alone(path_name, reader, plan, device, spec, batch_size, workers, cap)
            entry["decode_alone"][path_name] = r
            print(f"  decode-alone {path_name}: {r}", flush=True)


def measure_runs(entry: dict, slide: dict, cfg: dict, args, spec, share: float, clock: Clock, finish: bool) -> None:
    """host-alone and each ``--e2e`` run of the real pipeline on the slide, into ``entry``."""
    entry["end_to_end"] = {}
    if clock.left > 15:
        entry["host_alone"] = end_to_end(
            slide["path"],
            {**cfg, "decode": "gpu"},
            args.workdir / "out-host",
            min(0.15 * share, clock.left / 4),
            finish=False,
            model=NullModel(spec),
        )
        print(f"  host-alone: {entry['host_alone']}", flush=True)
    for variant in args.e2e.split(","):
        if clock.left < 10:
            entry["end_to_end"][variant] = {"skipped": "budget spent"}
            continue
        profiling = variant.endswith("-profile")
        with (
            followers_after_loop("-after" in variant),
            windows_one_by_one(variant.endswith("-window")),
            StackSampler() if profiling else contextlib.nullcontext() as prof,
        ):
            r = end_to_end(
                slide["path"],
                {**cfg, **E2E_VARIANTS[variant]},
                args.workdir / f"out-{variant}",
                min(0.25 * share, clock.left / 3),
                finish=finish or variant.endswith("-full"),
            )
        if profiling:  # where each thread spends its time, sampled (wall seconds, waiting included)
            r["samples"] = prof.table()
        entry["end_to_end"][variant] = r
        print(f"  end-to-end {variant}: {r}", flush=True)


def main() -> int:
    from vimscope.pipeline.config import PipelineConfig
    from vimscope.tiling.loader import default_workers

    args = parse_args()
    clock = Clock(args.budget_s)
    device = torch.device(args.device)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = PipelineConfig.load(device=args.device, model=args.model)
    batch_size = args.batch or pipeline_batch(base, device)
    workers = default_workers()
    doc: dict = {
        "benchmark": "pipeline",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu": gpu_names(),
        "cpu_threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "reader_threads": workers,
        "versions": versions(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "model_alone": {},
        "slides": {},
    }
    todo = {k: v for k, v in slides(args, args.workdir).items() if k in args.slides.split(",")}
    spec = measure_models(doc, args, device, batch_size, clock)
    model_mpx = doc["model_alone"]["default"]["mpx_s"]

    shares = {"synthetic": 0.55, "demo": 0.12, "demo@native": 0.12}
    for name, s in todo.items():
        share = shares.get(name, 0.1) * args.budget_s
        if clock.left < 10:
            doc["slides"][name] = {"skipped": "budget spent"}
            continue
        entry: dict = {"path": str(s["path"]), "target_mpp": s["target_mpp"]}
        doc["slides"][name] = entry
        measure_decode(entry, name, s, spec, device, batch_size, workers, share, clock)
        finish = name == "demo"  # the whole run too (tissue mask, pyramids, nuclei, GeoJSON): small enough
        cfg = base.replace(target_mpp=s["target_mpp"], overwrite=True, batch_size=batch_size).to_dict()
        measure_runs(entry, s, cfg, args, spec, share, clock, finish)
        ratios(entry, model_mpx)

    doc["seconds"] = round(time.perf_counter() - clock.t0, 1)
    doc["table"] = table(doc)
    path = args.out or RESULTS / f"pipeline-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print()
    print(doc["table"])
    print(f"\nwrote {path} ({doc['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
