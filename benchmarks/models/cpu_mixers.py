"""CPU cost of the SSD mixer against the Mamba-1 mixer: whole segmentation models, side by side, one process.

The nuclei models of ``configs/train`` (``nuclei_vim_ssd_tiny`` and ``nuclei_vim_tiny``: the same decoder and
heads, only the backbone's mixer differs), random weights, float32, a batch of four 256 px tiles (257 tokens),
``torch.inference_mode()``. The calls alternate between the models (A B A B ...) so that a busy neighbour on a
shared machine slows both alike; the medians and their ratio are printed and, with ``--json``, written with the
machine, versions and commit. The process settings are the CLI's (``OMP_WAIT_POLICY=PASSIVE``, glibc malloc
thresholds), applied before torch loads, as in ``vimscope segment``. ``--chunked`` adds a third model in the same
rotation: vim_ssd_tiny with its mixers forced onto the chunked PyTorch form (``backend="torch"``), the SSD's CPU
path before the compiled scan.

    python -m benchmarks.models.cpu_mixers                  # 8 calls each, after 2 warm-ups
    python -m benchmarks.models.cpu_mixers --calls 12 --chunked --profile   # + the chunked form, a profile
"""

from __future__ import annotations

from vimscope.cli.process import keep_freed_memory, set_openmp_passive

set_openmp_passive()  # before torch loads (nothing above imports it)
keep_freed_memory()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from benchmarks.common.runinfo import RESULTS, git_commit, module_versions, write_result  # noqa: E402

CONFIGS = {"vim_ssd_tiny": "nuclei_vim_ssd_tiny", "vim_tiny": "nuclei_vim_tiny"}


def build(config: str, tile: int) -> torch.nn.Module:
    """The segmentation model of a training config, random weights (the registry's fixed seed), eval mode."""
    from importlib import resources

    from vimscope.models.registry import build_model
    from vimscope.train.config import load_train_config, resolve_spec

    path = Path(str(resources.files("vimscope") / "configs" / "train" / f"{config}.yaml"))
    cfg = load_train_config(path)
    torch.manual_seed(0)
    return build_model(resolve_spec(cfg.model, tile=tile)).eval()


def timed(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Seconds of one forward."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        return time.perf_counter() - t0


def show_profile(model: torch.nn.Module, x: torch.Tensor, rows: int = 25) -> None:
    """torch.profiler's table of one forward, ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as p:
        model(x)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=8, help="timed calls per model (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--chunked", action="store_true", help="also time vim_ssd_tiny on the chunked PyTorch form")
    ap.add_argument("--profile", action="store_true", help="print a profile of the SSD model's forward")
    ap.add_argument("--json", type=Path, default=None, help="write the result ('-': benchmarks/results/...)")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()  # a shared machine: the neighbours' load, before and after the timed calls
    models = {name: build(cfg, args.tile) for name, cfg in CONFIGS.items()}
    if args.chunked:
        from vimscope.models.vim_ssd import SSDMixer

        models["vim_ssd_tiny_chunked"] = chunked = build(CONFIGS["vim_ssd_tiny"], args.tile)
        for module in chunked.modules():
            if isinstance(module, SSDMixer):
                module.backend = "torch"
    x = torch.randn(args.batch, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.warmup + args.calls):
        for name, model in models.items():
            t = timed(model, x)
            if i >= args.warmup:
                times[name].append(t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {name: med[name] / med["vim_tiny"] for name in med if name != "vim_tiny"}
    for name, ts in times.items():
        line = f"{name:>20}: median {1e3 * med[name]:7.1f} ms  (min {1e3 * min(ts):.1f}, max {1e3 * max(ts):.1f})"
        print(line + (f"  {ratios[name]:.3f}x vim_tiny" if name in ratios else ""))
    if args.profile:
        show_profile(models["vim_ssd_tiny"], x)
    if args.json is not None:
        doc = {
            "benchmark": "cpu_mixers",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "versions": module_versions(["torch", "numpy", "numba"]),
            "batch": args.batch,
            "tile": args.tile,
            "dtype": "float32",
            "loadavg_before_after": [round(v, 2) for v in (*load_before, *os.getloadavg())],
            "ms": {name: [round(1e3 * t, 2) for t in ts] for name, ts in times.items()},
            "median_ms": {name: round(1e3 * m, 2) for name, m in med.items()},
            "ratio_to_vim_tiny": {name: round(r, 4) for name, r in ratios.items()},
        }
        default = RESULTS / f"cpu_mixers_cpu_{dt.date.today().isoformat()}.json"
        write_result(doc, default if str(args.json) == "-" else args.json, "cpu_mixers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
