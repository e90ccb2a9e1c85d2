"""The JSON of a side-by-side training comparison: each run's schedule, speed and best validation epoch (from the
``runs.tgz`` that ``benchmarks/device/train.sh`` brings back) and each model's ``vimscope eval`` result, measured
afterwards through the product's own inference path.

    python -m benchmarks.models.train_report --runs runs.tgz --configs nuclei_vim_tiny,nuclei_unet \\
        --eval nuclei_vim_tiny=eval.json --card "NVIDIA H100 80GB HBM3" --command "..." --out result.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import tarfile
from pathlib import Path

from benchmarks.common.runinfo import git_commit, write_result

VAL_KEYS = ("val_mean_dice", "val_mean_iou", "val_aji", "val_object_f1", "val_pq")


def _member(tar: tarfile.TarFile, name: str):
    try:
        return tar.extractfile(name)
    except KeyError:
        return None


def run_summary(tar: tarfile.TarFile, cfg: str) -> dict:
    """Steps, speed, calibration, the best epoch and the last one of one run."""
    history = json.load(_member(tar, f"{cfg}/metrics.json"))
    log = io.TextIOWrapper(_member(tar, f"{cfg}.log")).read().splitlines()
    best = max(history, key=lambda r: r.get("val_aji", r.get("val_mean_dice", 0.0)))
    pick = lambda row: {k.removeprefix("val_"): round(row[k], 4) for k in VAL_KEYS if k in row}  # noqa: E731
    seconds = sum(r["seconds"] for r in history)
    return {
        "steps": history[-1]["step"],
        "epochs": len(history),
        "train_seconds": round(seconds, 1),
        "steps_per_second_mean": round(history[-1]["step"] / seconds, 3) if seconds else None,
        "calibration": next((line for line in log if line.startswith("budget:")), None),
        "best_epoch": best["epoch"],
        "best_validation": pick(best),
        "last_validation": pick(history[-1]),
        "stops": [line for line in log if line.startswith(("stopped:", "done:"))],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="runs.tgz from benchmarks/device/train.sh")
    ap.add_argument("--configs", required=True, help="comma-separated config names")
    ap.add_argument("--eval", action="append", default=[], help="CONFIG=EVAL_JSON (vimscope eval --out)")
    ap.add_argument("--tune", action="append", default=[], help="CONFIG=TUNE_JSON (benchmarks.models.tune_split)")
    ap.add_argument("--card", required=True)
    ap.add_argument("--command", required=True, help="the device command that trained them")
    ap.add_argument("--versions", default="", help="the GPU machine's torch / triton versions")
    ap.add_argument("--note", default="")
    ap.add_argument("--benchmark", default="train")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    with tarfile.open(args.runs) as tar:
        runs = {cfg: run_summary(tar, cfg) for cfg in args.configs.split(",")}
    for item in args.eval:
        cfg, path = item.split("=", 1)
        full = json.loads(Path(path).read_text())
        runs[cfg]["eval"] = {k: v for k, v in full.items() if k != "weights"}
    for item in args.tune:
        cfg, path = item.split("=", 1)
        runs[cfg]["tune_split"] = {k: v for k, v in json.loads(Path(path).read_text()).items() if k != "weights"}
    result = {
        "benchmark": args.benchmark,
        "card": args.card,
        "command": args.command,
        "note": args.note,
        "versions": args.versions,
        "date": dt.date.today().isoformat(),
        "commit": git_commit(),
        "runs": runs,
    }
    write_result(result, args.out, args.benchmark)
    print(json.dumps({cfg: r["best_validation"] for cfg, r in runs.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
