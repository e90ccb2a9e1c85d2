"""``vimscope train``, ``vimscope eval`` and ``vimscope pack``: fine-tune on your own labels without writing code.

``train`` runs a training config (YAML: model, data, split, schedule) with a progress bar and leaves checkpoints,
metrics.json/png and an exported ``model.safetensors`` in the run folder; ``eval`` scores any checkpoint on a
labelled set through the same pipeline as ``segment``; ``pack`` bundles a config's data into one file for a
machine without the data folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from vimscope.errors import ConfigError


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _config_path(config: str) -> Path:
    """A YAML file, or the name of a packaged training config (``vimscope/configs/train/<name>.yaml``)."""
    path = Path(config)
    if not path.suffix and not path.exists():
        from vimscope.config import packaged_config

        return packaged_config("train", config)
    return path


def _epoch_line(m: dict) -> str:
    keys = ["train_loss", "val_mean_dice", "val_aji", "val_object_f1", "val_pq", "seconds"]
    parts = [f"{k.removeprefix('train_').removeprefix('val_')}={_fmt(m[k])}" for k in keys if m.get(k) is not None]
    return f"epoch {m['epoch']}: " + " ".join(parts)


@click.command(name="train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--out", type=click.Path(file_okay=False), default=None, help="Run folder (default: the config's out)."
)
@click.option("--resume", is_flag=True, help="Continue the run in the folder on its saved schedule.")
@click.option("--overwrite", is_flag=True, help="Start afresh in a folder that already holds a run.")
@click.option("--init", type=click.Path(dir_okay=False), default=None, help="Official Vim checkpoint for the backbone.")
@click.option(
    "--pack", type=click.Path(dir_okay=False), default=None, help="Train on this pack instead of the config's data."
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=int, default=None, help="Override the number of epochs.")
@click.option("--steps-per-epoch", type=int, default=None, help="Override the optimizer steps per epoch.")
@click.option("--batch-size", type=int, default=None, help="Override the batch size.")
@click.option("--max-minutes", type=float, default=None, help="Stop cleanly (resumable) after this wall time.")
@click.option(
    "--budget-minutes",
    type=float,
    default=None,
    help="Choose the number of epochs from the first steps' speed so the run fits this time.",
)
def train(
    config, out, resume, overwrite, init, pack, device, epochs, steps_per_epoch, batch_size, max_minutes, budget_minutes
):
    """Train a model on labelled images as described by CONFIG (a YAML file or a packaged config name)."""
    from vimscope.cli.trainprogress import TrainProgress
    from vimscope.train import Trainer, config_base, load_train_config

    overrides = {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "max_minutes": max_minutes,
        "budget_minutes": budget_minutes,
    }
    if pack is not None:
        overrides["data"] = [{"kind": "pack", "path": str(Path(pack).resolve())}]
    cfg = load_train_config(config, **overrides)
    base = config_base(config)
    trainer = Trainer(cfg, base_dir=base, out=out, resume=resume, init=init, device=device, overwrite=overwrite)
    click.echo(
        f"training {trainer.spec.name} on {len(trainer.train_images)} images "
        f"(validation: {len(trainer.val_images)}) on {trainer.device}, {trainer.config.total_steps} steps "
        f"-> {trainer.out}",
        err=True,
    )
    result = None
    with TrainProgress() as bar:
        for event in trainer.iter_train():
            bar.update(event)
            if event.kind == "epoch":
                bar.log(_epoch_line(event.metrics))
            elif event.kind == "calibrated":
                bar.log(f"budget: {event.message}")
                bar.retotal(event.total)
            elif event.kind == "stopped":
                bar.log(f"stopped: {event.message}")
                result = event.metrics or None
            elif event.kind == "done":
                result = event.metrics
    if result is not None:
        best = result.get("best") or {}
        score = -best["score"] if best.get("metric") == "loss" else best.get("score")  # stored as higher = better
        what = f"best {best['metric']} {_fmt(score)} at epoch {best['epoch']}" if best else "no epoch finished"
        click.echo(f"done: {what}; weights {result['weights']}")


@click.command(name="eval")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML with a data: list (a training config works); default: the checkpoint's own data.",
)
@click.option("--pack", type=click.Path(dir_okay=False), default=None, help="Evaluate on a training pack.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder with images/ and masks/ (image/mask pairs).",
)
@click.option(
    "--mask-kind",
    type=click.Choice(["instances", "classes"]),
    default="instances",
    help="With --folder: what mask values mean.",
)
@click.option("--mask-suffix", default="", help="With --folder: mask name = image stem + this suffix.")
@click.option("--mpp", type=float, default=None, help="With --folder: pixel size of the images (µm/px).")
@click.option(
    "--split",
    type=click.Choice(["validation", "train", "all"]),
    default=None,
    help="Which images (default: validation for the checkpoint's own data, else all).",
)
@click.option(
    "--path",
    "infer_path",
    type=click.Choice(["pipeline", "memory"]),
    default="pipeline",
    help="pipeline: as `vimscope segment` does (default); memory: the training loop's quick path.",
)
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=4, help="Tiles per batch.")
@click.option("--tile", type=int, default=None, help="Inference tile in px (default: the model's).")
@click.option("--overlap", "halo", type=int, default=None, help="Halo in px on each tile side (default: the model's).")
@click.option("--tta", is_flag=True, default=False, help="Test-time augmentation, as `vimscope segment --tta`.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None, help="Write the metrics as JSON here.")
def evaluate(
    weights,
    data_file,
    pack,
    folder,
    mask_kind,
    mask_suffix,
    mpp,
    split,
    infer_path,
    device,
    batch_size,
    tile,
    halo,
    tta,
    out,
):
    """Score WEIGHTS (a vimscope checkpoint) on a labelled set: Dice/IoU per class, AJI and object F1."""
    from vimscope.config import load_yaml
    from vimscope.train import config_base
    from vimscope.train.evaluate import evaluate as run_eval

    given = [x for x in (data_file, pack, folder) if x is not None]
    if len(given) > 1:
        raise ConfigError("give one of --data, --pack or --folder")
    data, base, names = None, None, None
    if data_file is not None:
        data_file = _config_path(data_file)
        doc = load_yaml(data_file)
        if "data" not in doc:
            raise ConfigError(f"{data_file}: no data: list")
        data, base = doc["data"], config_base(data_file)
        if split == "validation":
            names = (doc.get("split") or {}).get("validation")
            if not names:
                raise ConfigError(f"{data_file}: no split.validation names")
    elif pack is not None:
        data = [{"kind": "pack", "path": str(Path(pack).resolve())}]
    elif folder is not None:
        entry = {"kind": "folder", "path": str(Path(folder).resolve()), "mask_kind": mask_kind, "mpp": mpp}
        entry["mask_suffix"] = mask_suffix
        data = [entry]
    chosen_split = split or ("validation" if data is None else "all")

    def report(i, n, row):
        parts = [f"{k}={_fmt(row[k])}" for k in ("aji", "object_f1", "foreground_dice") if k in row]
        click.echo(f"[{i}/{n}] {row['image']} " + " ".join(parts), err=True)

    summary = run_eval(
        weights,
        data=data,
        base=base,
        names=names,
        split=chosen_split if data is None else "all",
        path=infer_path,
        device=device,
        batch_size=batch_size,
        tile=tile,
        halo=halo,
        tta=tta,
        out=out,
        on_image=report,
    )
    shown = {k: v for k, v in summary.items() if k != "per_image"}
    click.echo(json.dumps(shown, indent=1))


@click.command(name="pack")
@click.argument("config")
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="The pack file to write.")
@click.option(
    "--codec",
    type=click.Choice(["auto", "jpegxl", "webp", "png", "zstd"]),
    default="auto",
    help="Lossless codec for images (auto: JPEG XL for 8-bit images).",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=None,
    help="Store 8-bit RGB images as lossy WebP at this quality (labels stay lossless); default lossless.",
)
def pack(config, out, codec, quality):
    """Bundle the data of CONFIG (a training config or any YAML with a data: list) into one pack file.

    Images finer than the config's model pixel size are stored at it (training resamples them to it anyway)."""
    from vimscope.config import load_yaml
    from vimscope.train import build_pack, config_base, pack_images, pack_summary

    path = _config_path(config)
    doc = load_yaml(path)
    if "data" not in doc:
        raise ConfigError(f"{config}: no data: list")
    images = pack_images(doc, config_base(path))
    manifest = build_pack(images, out, codec=codec, sources=doc["data"], quality=quality)
    click.echo(f"{out}: {pack_summary(manifest)}")
