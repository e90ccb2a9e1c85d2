"""The README's CPU run, timed: ``vimscope segment`` on the demo slide with the default model, on the CPU.

Runs the CLI in this process (``--overwrite -q``; the shipped ``vim_tiny_nuclei``, 256 px tiles, halo 32, 0.25
µm/px, so the 0.499 µm/px slide is upsampled 2x) and reports the wall time, the process's CPU time (all threads:
on a shared machine the fairer number; on an idle one wall ~ CPU / cores for the parallel parts), tiles/s and the
run summary's stage split (``timings_s``: the tile loop's model and host parts, the finish steps). Then the model
alone: one forward pass over a batch of the run's tiles, CPU seconds per tile, with the precision the run used.

    python -m benchmarks.pipeline.cpu_demo                          # as the README runs it
    python -m benchmarks.pipeline.cpu_demo --threads 1              # per-component CPU time, no spin-waiting
    python -m benchmarks.pipeline.cpu_demo --precision float32      # the float32 reference path, for comparison

``--runs N`` repeats the whole run in N fresh processes, as a user would call it, and reports the median wall
time with every run. ``--json`` writes it all (default ``benchmarks/results/cpu_demo_cpu_<date>.json``). The
goal (DESIGN.md): at most 30 s wall on the 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common.runinfo import RESULTS, git_commit, module_versions, write_result

GOAL_S = 30.0


def set_threads(threads: int | None) -> None:
    """Pin torch's and numba's thread counts (before the first parallel call); None keeps their defaults."""
    if threads is None:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)


def run_cli(slide: Path, out: Path, precision: str | None) -> tuple[float, float, dict]:
    """``vimscope segment SLIDE -o OUT`` in this process; (wall s, CPU s, the run's summary)."""
    from vimscope.cli.main import main as cli

    argv = ["segment", str(slide), "-o", str(out), "--overwrite", "-q"]
    if precision is not None:
        cfg = out / "precision.yaml"
        out.mkdir(parents=True, exist_ok=True)
        cfg.write_text(f"precision: {precision}\n")
        argv += ["--config", str(cfg)]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        cli(argv)
    except SystemExit as e:  # click's standalone mode
        if e.code not in (0, None):
            raise RuntimeError(f"vimscope segment exited with {e.code}") from None
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = json.loads(next(out.glob("*.summary.json")).read_text())
    return wall, cpu, summary


def model_alone(precision: str | None, batch: int, repeat: int = 3) -> dict:
    """CPU seconds per tile of the default model's forward pass, as the run calls it (``pipeline.step.forward``)."""
    import torch

    from vimscope.pipeline.config import PipelineConfig
    from vimscope.pipeline.model import load_model
    from vimscope.pipeline.step import forward

    kw = {"device": "cpu"} | ({"precision": precision} if precision else {})
    lm = load_model(PipelineConfig.load(**kw))
    x = torch.randn(batch, 3, lm.spec.tile, lm.spec.tile)
    forward(lm, x, True, False)  # compile / load the numba kernels
    cpus = []
    for _ in range(repeat):
        c0 = time.process_time()
        forward(lm, x, True, False)
        cpus.append(time.process_time() - c0)
    return {"dtype": str(lm.dtype).replace("torch.", ""), "batch": batch, "cpu_s_per_tile": min(cpus) / batch}


def repeat(args) -> int:
    """``args.runs`` runs, each in a fresh process (model alone in the last only): every run and the median."""
    import statistics
    import subprocess

    docs = []
    with tempfile.TemporaryDirectory(prefix="vimscope-cpu-demo-runs-") as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, "-m", "benchmarks.pipeline.cpu_demo", "--json", str(out)]
            cmd += [f"--{k}={v}" for k, v in (("slide", args.slide), ("threads", args.threads),
                                              ("precision", args.precision)) if v is not None]  # fmt: skip
            cmd += [] if i == args.runs - 1 and not args.no_model_alone else ["--no-model-alone"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            docs.append(json.loads(out.read_text()))
            last = docs[-1]
            print(f"run {i + 1}/{args.runs}: wall {last['wall_s']:.1f} s, CPU {last['cpu_s']:.1f} s", flush=True)
    walls = [d["wall_s"] for d in docs]
    doc = docs[-1] | {
        "runs": [{k: d[k] for k in ("wall_s", "cpu_s", "user_s", "sys_s", "timings_s", "objects")} for d in docs],
        "wall_s": statistics.median(walls),
        "wall_s_range": [min(walls), max(walls)],
        "cpu_s": statistics.median(d["cpu_s"] for d in docs),
        "note": "wall_s and cpu_s: medians over the runs (fresh processes, one after another); timings_s: the last run",
    }
    spread = f"{min(walls):.1f}-{max(walls):.1f}"
    print(f"median wall {doc['wall_s']:.1f} s over {len(walls)} runs ({spread}), goal {GOAL_S:.0f} s")
    write_json(doc, args.json)
    return 0


def write_json(doc: dict, where: Path | None) -> None:
    """``doc`` to ``where`` ('-': ``cpu_demo_cpu_<date>.json`` in the results folder), nowhere when None."""
    if where is not None:
        default = RESULTS / f"cpu_demo_cpu_{dt.date.today().isoformat()}.json"
        write_result(doc, default if str(where) == "-" else where, "cpu_demo")


def main() -> int:
    import vimscope.cli.main  # noqa: F401  (sets the CLI's OpenMP wait policy before torch loads)
    from vimscope.demo import demo_slide_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slide", type=Path, default=None, help="default: the demo slide the set-up fetched")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: theirs)")
    p.add_argument("--precision", default=None, help="float32 or bfloat16 (default: the pipeline's auto)")
    p.add_argument("--no-model-alone", action="store_true", help="skip the model-alone timing")
    p.add_argument("--json", type=Path, default=None, help="also write the results here ('-': the default path)")
    p.add_argument("--runs", type=int, default=1, help="repeat in this many fresh processes; report the median")
    args = p.parse_args()
    if args.runs > 1:
        return repeat(args)

    slide = args.slide or demo_slide_path()
    if slide is None:
        print("no demo slide: run .ci/setup (it fetches the slide) or pass --slide", file=sys.stderr)
        return 2
    set_threads(args.threads)
    import torch

    with tempfile.TemporaryDirectory(prefix="vimscope-cpu-demo-") as tmp:
        wall, cpu, summary = run_cli(slide, Path(tmp), args.precision)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    tiles = summary["tiles"]["run"] if isinstance(summary["tiles"], dict) else summary["tiles"]
    doc = {
        "benchmark": "cpu_demo",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "threads": {"torch": torch.get_num_threads(), "numba": int(os.environ.get("NUMBA_NUM_THREADS", 0)) or None},
        "versions": {"python": platform.python_version(), **module_versions(["torch", "numba", "numpy"])},
        "slide": slide.name,
        "model": summary.get("model"),
        "precision": args.precision or "auto",
        "tiles": tiles,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "tiles_per_s": round(tiles / wall, 2) if tiles else None,
        "timings_s": summary.get("timings_s"),
        "objects": summary.get("objects"),
        "goal_wall_s": GOAL_S,
    }
    if not args.no_model_alone:
        doc["model_alone"] = model_alone(args.precision, summary.get("batch_size") or 4)
    cores = os.cpu_count()
    print(f"{slide.name}: {tiles} tiles, wall {wall:.1f} s, CPU {cpu:.1f} s ({cores} cores), goal {GOAL_S:.0f} s")
    for k, v in (doc["timings_s"] or {}).items():
        print(f"  {k:<20}{v:>9.2f}")
    if "model_alone" in doc:
        m = doc["model_alone"]
        print(f"model alone ({m['dtype']}, batch {m['batch']}): {1000 * m['cpu_s_per_tile']:.0f} ms CPU per tile")
    write_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
