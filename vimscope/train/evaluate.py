"""``vimscope eval``: a checkpoint's metrics on a labelled set, through the product's own inference path.

Each labelled image goes through ``vimscope.pipeline.run`` exactly as ``vimscope segment`` would process it
(tiling, stitching, instance post-processing, OME-Zarr labels), and the written labels are compared with the
ground truth: per-class Dice / IoU over the set, per-image AJI, object F1 and PQ for instance models and for
class models with one foreground class (their objects are its connected regions, as footprints are traced). The
``memory`` path (the training loop's in-memory tiled prediction) is kept for quick checks and for comparing
the two.

An image whose pixel size is within 2 % of the model's is read at its own (no resampling: the model's tiles
then cover the ground truth pixel for pixel); otherwise the labels are resampled (nearest) to the output grid.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import LabelledImage, LoadContext, load_sources
from vimscope.train.metrics import MetricAccumulator

__all__ = ["evaluate", "evaluation_data", "predict_with_pipeline"]

PATHS = ("pipeline", "memory")
MPP_TOLERANCE = 0.02


def _write_image(im: LabelledImage, folder: Path) -> Path:
    """The image as a file the slide readers open: PNG for 8-bit grey/RGB, TIFF otherwise."""
    if im.image.dtype == np.uint8 and im.image.shape[2] in (1, 3):
        from PIL import Image

        path = folder / f"{im.name}.png"
        Image.fromarray(im.image[:, :, 0] if im.image.shape[2] == 1 else im.image).save(path)
        return path
    import tifffile

    path = folder / f"{im.name}.tif"
    tifffile.imwrite(path, im.image, photometric="minisblack", planarconfig="contig")
    return path


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape == shape:
        return a
    rows = np.minimum((np.arange(shape[0]) + 0.5) * a.shape[0] / shape[0], a.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * a.shape[1] / shape[1], a.shape[1] - 1).astype(int)
    return a[rows][:, cols]


def predict_with_pipeline(model, im: LabelledImage, *, workdir: Path, device: str, batch_size: int) -> dict:
    """Classes (and instances) of one image as ``vimscope segment`` writes them, at the output grid."""
    import zarr

    from vimscope.pipeline import PipelineConfig, run

    spec = model.spec
    instances = spec.output == "nuclei"
    mpp = im.mpp if im.mpp is not None else (spec.mpp or 1.0)
    target = spec.mpp
    if target is not None and abs(mpp / target - 1) < MPP_TOLERANCE:
        target = mpp
    config = PipelineConfig.load(
        mpp=mpp,
        target_mpp=target,
        device=device,
        batch_size=batch_size,
        tissue=False,
        overwrite=True,
        outputs=["classes", "nuclei"] if instances else ["classes"],
    )
    path = _write_image(im, workdir)
    out = workdir / f"{im.name}.out"
    result = run(str(path), config, out=out, model=model)
    store = zarr.open_group(str(result.paths["zarr"]), mode="r")
    labels = store["labels"] if "labels" in store else store
    pred = {"classes": np.asarray(labels["classes"]["0"])}
    if instances:
        pred["instances"] = np.asarray(labels["nuclei"]["0"]).astype(np.int64)
    return pred


def predict_in_memory(model, im: LabelledImage, *, batch_size: int, amp: bool) -> dict:
    from vimscope.train.infer import maps_to_labels, predict_maps_for
    from vimscope.train.sampler import rescale_to

    spec = model.spec
    maps = predict_maps_for(model, rescale_to(im, spec.mpp).image, spec, batch_size=batch_size, amp=amp)
    return maps_to_labels(maps, spec.postprocess, spec.output == "nuclei", mpp=spec.mpp)


def evaluation_data(weights: str | Path, data: list[dict] | None, split: str) -> tuple[list[dict], Path | None, list]:
    """The data entries and image names to evaluate: given ones, or the checkpoint's own training data and split
    (``split``: validation, train or all)."""
    from vimscope.models.safetensors_header import read_metadata

    meta = read_metadata(weights)
    names: list[str] | None = None
    base = None
    if data is None:
        train_config = meta["train_config"]
        if not train_config:
            raise ConfigError(f"{weights} carries no training config: give the data to evaluate on (--data)")
        data = train_config["data"]
        base = Path(meta["state"]["base_dir"]) if meta["state"].get("base_dir") else None
    saved_split = meta["state"].get("split") or {}
    if split != "all":
        if split not in saved_split:
            raise ConfigError(f"{weights} records no {split!r} split; use --split all")
        names = saved_split[split]
    return data, base, names


def region_objects(
    pred_classes: np.ndarray,
    gt_classes: np.ndarray,
    gt_instances: np.ndarray | None,
    split: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Objects of a model with one foreground class: its connected regions (4-connected, as the class regions
    are traced into polygons), split where they touch when the model's ``postprocess.split`` asks for it (``split``:
    its thresholds in pixels, as the footprints are split), the prediction cleared where the ground truth is
    unlabelled; the ground truth's own instances where it has them, else its connected regions."""
    from skimage.measure import label

    from vimscope.instances.touching import split_touching
    from vimscope.train.metrics import IGNORE_INDEX

    labelled = gt_classes != IGNORE_INDEX
    mask = (pred_classes == 1) & labelled
    pred = split_touching(mask, *split) if split else label(mask, connectivity=1).astype(np.int32)
    gt = gt_instances if gt_instances is not None else label(gt_classes == 1, connectivity=1).astype(np.int32)
    return pred, gt


def _with_tile(model, tile: int | None, halo: int | None):
    """The model with another inference tile or halo in its contract (e.g. a larger tile than the training one)."""
    if tile is not None or halo is not None:
        changed = replace(model.spec, tile=tile or model.spec.tile, halo=model.spec.halo if halo is None else halo)
        changed.validate()
        if changed.tile % max(1, changed.size_multiple):
            raise ConfigError(f"tile {changed.tile} must be a multiple of {changed.size_multiple} for this model")
        model.spec = changed
    return model


def _score(acc: MetricAccumulator, im: LabelledImage, pred: dict, spec) -> dict:
    """Add one image's prediction (at the output grid, the model's pixel size) to ``acc``; its row of metrics."""
    from vimscope.instances.touching import SplitParams

    shape = pred["classes"].shape
    gt_classes = _resize_nearest(im.classes, shape)
    gt_inst = _resize_nearest(im.instances, shape) if im.instances is not None else None
    pred_inst = pred.get("instances")
    if pred_inst is None and len(spec.classes) == 2:
        split = SplitParams.from_dict((spec.postprocess or {}).get("split"))
        in_px = split.in_pixels(spec.mpp or 1.0) if split else None
        pred_inst, gt_inst = region_objects(pred["classes"], gt_classes, gt_inst, in_px)
    return acc.add(im.name, pred["classes"], gt_classes, pred_inst, gt_inst)


def evaluate(
    weights: str | Path,
    *,
    data: list[dict] | None = None,
    base: Path | None = None,
    names: list[str] | None = None,
    split: str = "all",
    path: str = "pipeline",
    device: str = "auto",
    batch_size: int = 4,
    tile: int | None = None,
    halo: int | None = None,
    tta: bool = False,
    out: str | Path | None = None,
    on_image=None,
) -> dict:
    """Metrics of ``weights`` on ``data`` (default: the checkpoint's own data and its recorded ``split``), only the
    images in ``names`` when given; written to ``out`` as JSON when given."""
    from vimscope.models import TestTimeAugmented
    from vimscope.models.device import resolve_device
    from vimscope.models.registry import create_model

    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
    entries, saved_base, split_names = evaluation_data(weights, data, split if data is None else "all")
    names = names if names is not None else split_names
    torch_device = resolve_device(device)
    model = _with_tile(create_model(weights=weights).to(torch_device), tile, halo)
    spec = model.spec
    if tta:  # the pipeline runs the model it is given: wrapped here, for both paths
        model = TestTimeAugmented(model)
    images = load_sources(entries, LoadContext(base=base or saved_base, target_mpp=spec.mpp))
    if names is not None:
        missing = sorted(set(names) - {im.name for im in images})
        if missing:
            raise ConfigError(f"no image named {missing[0]!r} in the data")
        images = [im for im in images if im.name in set(names)]
    if not images:
        raise ConfigError("no labelled images to evaluate")
    class_names = [c.name for c in spec.classes]
    if len(images[0].class_names) != len(class_names):
        raise ConfigError(f"the data has {len(images[0].class_names)} classes, the model {len(class_names)}")
    acc = MetricAccumulator(len(class_names), class_names)
    megapixels, seconds = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="vimscope-eval-") as tmp:
        for i, im in enumerate(images):
            t0 = time.perf_counter()
            if path == "pipeline":
                pred = predict_with_pipeline(
                    model, im, workdir=Path(tmp), device=str(torch_device), batch_size=batch_size
                )
            else:
                pred = predict_in_memory(model, im, batch_size=batch_size, amp=torch_device.type == "cuda")
            seconds += time.perf_counter() - t0
            shape = pred["classes"].shape
            megapixels += shape[0] * shape[1] / 1e6
            row = _score(acc, im, pred, spec)
            if on_image is not None:
                on_image(i + 1, len(images), row)
    summary = acc.summary()
    summary.update(
        weights=str(weights),
        model=spec.name,
        path=path,
        device=str(torch_device),
        tile=spec.tile,
        halo=spec.halo,
        tta=tta,
        seconds=round(seconds, 3),
        megapixels_per_second=round(megapixels / seconds, 4) if seconds else None,
    )
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
    return summary
