"""The touching-building split of a one-foreground-class model, tuned on its validation images: the model runs once
per image through the product's pipeline (as ``vimscope eval`` does), then every setting of a small grid of
``postprocess.split`` thresholds (metres, ``vimscope.instances.touching``) and no split at all is scored on the same
prediction. Prints one row per setting; ``--json`` keeps them all.

    python -m benchmarks.models.tune_split runs/buildings_unet/model.safetensors \\
        --data vimscope/configs/train/buildings_unet.yaml --json tune.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.common.runinfo import git_commit, write_result
from vimscope.models import TestTimeAugmented
from vimscope.models.registry import create_model
from vimscope.train.datasets.base import LoadContext, load_sources
from vimscope.train.evaluate import _score, evaluation_data, predict_with_pipeline
from vimscope.train.metrics import MetricAccumulator

GRID = {"h": (0.2, 0.3, 0.5), "min_distance": (0.6, 1.0), "min_area": (4.0, 9.0)}


def score(preds: list, spec, split: dict | None) -> dict:
    """Per-image mean metrics of the cached predictions with one ``postprocess.split`` setting (None: plain
    4-connected regions), scored as ``vimscope eval`` scores them (``evaluate._score``)."""
    post = {k: v for k, v in (spec.postprocess or {}).items() if k != "split"}
    setting = replace(spec, postprocess={**post, "split": split} if split else post)
    names = [c.name for c in spec.classes]
    acc = MetricAccumulator(len(names), names)
    for im, classes in preds:
        _score(acc, im, {"classes": classes}, setting)
    summary = acc.summary()
    return {k: round(summary[k], 4) for k in ("mean_iou", "object_f1", "precision", "recall", "aji", "pq")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--data", required=True, help="YAML with a data: list (the training config)")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--tta", action="store_true", help="test-time augmentation, as `vimscope segment --tta`")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import yaml

    entries, _, _ = evaluation_data(args.weights, yaml.safe_load(Path(args.data).read_text())["data"], "all")
    _, _, names = evaluation_data(args.weights, None, args.split)
    model = create_model(weights=args.weights)
    if args.tta:
        model = TestTimeAugmented(model)
    images = [im for im in load_sources(entries, LoadContext(target_mpp=model.spec.mpp)) if im.name in set(names)]
    with tempfile.TemporaryDirectory(prefix="vimscope-tune-") as tmp:
        preds = [
            (im, predict_with_pipeline(model, im, workdir=Path(tmp), device="cpu", batch_size=2)["classes"])
            for im in images
        ]
    rows = [{"split": None, **score(preds, model.spec, None)}]
    for h, dist, area in itertools.product(*GRID.values()):
        setting = {"h": h, "min_distance": dist, "min_area": area}
        rows.append({"split": setting, **score(preds, model.spec, setting)})
    for row in rows:
        print(json.dumps(row))
    if args.json:
        doc = {"benchmark": "tune_split", "weights": args.weights, "tta": args.tta, "images": names}
        doc.update(date=dt.date.today().isoformat(), commit=git_commit(), device="cpu", rows=rows)
        write_result(doc, Path(args.json), "tune_split")


if __name__ == "__main__":
    main()
