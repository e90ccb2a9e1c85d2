"""The host side of a nuclei run on the CPU, without the model's cost: where the seconds after the GPU go.

A generated JPEG-tiled slide (``vimscope.synthetic.jpeg_pyramid``: pink tissue, purple nuclei of 3-7 px) runs through
``vimscope.pipeline.run`` with the default pipeline outputs and a fake model that carries the shipped nuclei
model's spec (``vim_tiny_nuclei``: tile 256, halo 32, 0.25 µm/px, nucleus + boundary + distance maps) but costs
almost nothing: its maps come from the input's dark blobs, so the instance, polygon and GeoJSON stages see
thousands of nuclei per 4096² as with the real model. Prints the run summary's ``timings_s`` per stage (tile
loop parts and the finish steps), objects, Mpx/s, and a cProfile top list over every thread the run starts;
``--json`` writes it all (default ``benchmarks/results/host-<date>.json``). CPU seconds (all threads) are the
fairer number on a small machine, where the threads beside the loop compete with it for the cores.
``--after-loop`` runs instances and class regions after the tile loop instead of beside it: each finish step
then has its own seconds (``finish_*``), none hidden in the overlap.

    python -m benchmarks.pipeline.host                      # 4096² slide
    python -m benchmarks.pipeline.host --size 8192 --no-profile --repeat 3
    python -m benchmarks.pipeline.host --mosaic --size 8192   # real H&E crops (mosaic_slide) instead of drawn blobs
Another version on the same slide: the same command in that version's checkout (same ``--workdir``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common.probes import followers_after_loop
from benchmarks.common.runinfo import write_result
from benchmarks.pipeline.mosaic_slide import DATA, mosaic_in
from vimscope.synthetic import jpeg_pyramid


class FakeNuclei(torch.nn.Module):
    """Nuclei maps from the input's dark (purple) blobs, with the real nuclei model's IO contract.

    nucleus logit: how far the red channel is below 170/255 (stroma is ~230, nuclei 110); distance: a soft
    erosion of the nucleus mask (1 deep inside, 0 at the rim); boundary: the mask's rim. Overlapping blobs merge
    into one foreground blob that the watershed may split, as with real touching nuclei.
    """

    def __init__(self):
        super().__init__()
        from vimscope.models import load_spec

        self.spec = load_spec("vim_tiny_nuclei")

    def forward(self, x):
        red = x[:, :1] * self.spec.std[0] + self.spec.mean[0]  # back to 0-1
        nucleus = (170 / 255 - red) * 40.0
        mask = (nucleus > 0).float()
        # box means as two 1-D passes (cheap on a CPU: the fake model should cost little beside the host work)
        inner3 = _box_mean(mask, 3)
        inner5 = _box_mean(mask, 5)
        distance = ((inner5 - 0.6) / 0.4) * mask
        boundary = torch.where((mask > 0) & (inner3 < 0.999), 4.0, -4.0)
        logits = torch.cat([torch.zeros_like(nucleus), nucleus], dim=1)
        return {"logits": logits, "boundary": boundary, "distance": distance}


def _box_mean(a: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window (borders: over the pixels inside), as a row pass then a column pass."""
    a = F.avg_pool2d(a, (1, k), 1, (0, k // 2), count_include_pad=False)
    return F.avg_pool2d(a, (k, 1), 1, (k // 2, 0), count_include_pad=False)


class ThreadProfiles:
    """cProfile in the calling thread and in every thread started while it is on (writer, zarr, pools)."""

    def __init__(self):
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_):
        p = cProfile.Profile()
        with self._lock:
            self.profiles.append(p)
        p.enable()  # replaces this hook in the new thread

    def __enter__(self):
        self.main = cProfile.Profile()
        threading.setprofile(self._start_in_thread)
        self.main.enable()
        return self

    def __exit__(self, *exc):
        self.main.disable()
        threading.setprofile(None)

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.main)
        for p in self.profiles:
            try:
                stats.add(p)
            except (TypeError, ValueError):  # a thread that never returned into Python
                continue
        return stats


def profile_table(stats: pstats.Stats, sort: str, top: int) -> list[dict]:
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _) in stats.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": nc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: r[sort], reverse=True)
    return [{**r, "tottime": round(r["tottime"], 3), "cumtime": round(r["cumtime"], 3)} for r in rows[:top]]


def run_once(slide: Path, out: Path, batch_size: int, profile: bool, stripe_width: int | None = None):
    from vimscope.pipeline import PipelineConfig, run

    cfg = PipelineConfig.load(device="cpu", batch_size=batch_size, overwrite=True, stripe_width=stripe_width)
    model = FakeNuclei()
    prof = ThreadProfiles() if profile else None
    t0, c0 = time.perf_counter(), time.process_time()
    if prof is not None:
        with prof:
            result = run(slide, cfg, out=out, model=model)
    else:
        result = run(slide, cfg, out=out, model=model)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return result, wall, cpu, prof


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=4096, help="slide side in px at 0.25 µm/px (default 4096)")
    p.add_argument("--width", type=int, default=None, help="the mosaic's width, when not --size (a wide slide)")
    p.add_argument("--stripe-width", type=int, default=None, help="the pipeline's stripe width (default its own)")
    p.add_argument("--mosaic", action="store_true", help="the real-pixel slide of mosaic_slide instead of drawn blobs")
    p.add_argument("--cells", type=Path, default=DATA, help="its crops (default ../shared/data/labelled, or a pack)")
    p.add_argument("--batch-size", type=int, default=16, help="tiles per fake forward pass")
    p.add_argument("--repeat", type=int, default=1, help="runs (the table shows medians)")
    p.add_argument("--no-profile", action="store_true", help="skip cProfile (it slows Python-heavy stages)")
    p.add_argument("--after-loop", action="store_true", help="instances and regions after the loop, not beside it")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vimscope-bench-host")
    p.add_argument("--pstats", type=Path, default=None, help="dump the merged profile here (for pstats / snakeviz)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here ('-': the default path)")
    return p.parse_args()


def run_all(args, slide: Path) -> tuple[list[dict], ThreadProfiles | None]:
    """``--repeat`` runs (the first profiled unless ``--no-profile``): one record per run, and the profile."""
    runs = []
    prof = None
    for i in range(args.repeat):
        with followers_after_loop(args.after_loop):  # no jobs beside the loop: finish runs them
            result, wall, cpu, prof_i = run_once(
                slide, args.workdir / "out", args.batch_size, not args.no_profile and i == 0, args.stripe_width
            )
        prof = prof or prof_i
        s = result.summary
        runs.append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "timings_s": s["timings_s"],
                "objects": s.get("objects"),
                "mpx": s["megapixels"],
            }
        )
        rate = s["megapixels"] / wall
        print(f"run {i + 1}: {wall:.1f} s ({cpu:.1f} s CPU), {rate:.2f} Mpx/s, objects {s.get('objects')}")
    return runs, prof


def summarise(args, slide: Path, runs: list[dict]) -> dict:
    """The medians over the runs, printed as a table and returned as the result document."""
    keys = list(runs[0]["timings_s"])
    median = {k: round(statistics.median(r["timings_s"].get(k, 0.0) for r in runs), 2) for k in keys}
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    print(f"\n{slide.name}: {runs[0]['mpx']} Mpx, {os.cpu_count()} cores, median of {len(runs)} run(s)")
    print(f"{'stage':<24}{'seconds':>10}")
    for k, v in median.items():
        print(f"{k:<24}{v:>10.2f}")
    print(f"{'wall':<24}{wall:>10.2f}   ({runs[0]['mpx'] / wall:.2f} Mpx/s)")
    print(f"{'CPU (all threads)':<24}{cpu:>10.2f}")
    return {
        "benchmark": "host",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "args": {k: str(v) for k, v in vars(args).items()},
        "slide": {
            "size": args.size,
            "width": args.width or args.size,
            "megapixels": runs[0]["mpx"],
            "kind": "mosaic" if args.mosaic else "drawn",
        },
        "objects": runs[0]["objects"],
        "timings_s_median": median,
        "wall_s_median": round(wall, 2),
        "cpu_s_median": round(cpu, 2),
        "megapixels_per_s": round(runs[0]["mpx"] / wall, 3),
        "runs": runs,
    }


def main() -> int:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.mosaic:  # real H&E crops (benchmarks.pipeline.mosaic_slide): real nucleus shapes and densities
        slide = mosaic_in(args.workdir, args.width or args.size, args.size, args.cells)
    else:
        slide = args.workdir / f"host-{args.size}.tif"
        if not slide.exists():
            jpeg_pyramid(slide, args.size, mpp=0.25, seed=0)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))

    runs, prof = run_all(args, slide)
    doc = summarise(args, slide, runs)
    if prof is not None:
        stats = prof.stats()
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("tottime").print_stats(args.top)
        print(buf.getvalue())
        if args.pstats is not None:
            stats.dump_stats(args.pstats)
        doc["profile_tottime"] = profile_table(stats, "tottime", args.top)
        doc["profile_cumtime"] = profile_table(stats, "cumtime", args.top)
    if args.json is not None:
        write_result(doc, args.json, "host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
