"""Validation during training: whole-image tiled prediction on the held-out images, their metrics, and the choice of
post-processing thresholds on them (``tune_postprocess``)."""

from __future__ import annotations

import torch

from vimscope.config import ModelSpec
from vimscope.train.datasets.base import LabelledImage
from vimscope.train.infer import maps_to_labels, predict_maps_for
from vimscope.train.metrics import MetricAccumulator

__all__ = ["tune_thresholds", "validate"]


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    spec: ModelSpec,
    images: list[LabelledImage],
    *,
    instances: bool,
    batch_size: int = 4,
    amp: bool = False,
    postprocess: dict | None = None,
) -> dict:
    """Whole-image tiled prediction on each image and the dataset metrics (``MetricAccumulator.summary``)."""
    names = [c.name for c in spec.classes] or [str(k) for k in range(len(spec.classes))]
    acc = MetricAccumulator(len(spec.classes), names)
    for im in images:
        maps = predict_maps_for(model, im.image, spec, batch_size=batch_size, amp=amp)
        with_instances = instances and im.instances is not None
        post = postprocess if postprocess is not None else spec.postprocess
        labels = maps_to_labels(maps, post, with_instances, mpp=spec.mpp)  # images come at the model's pixel size
        acc.add(
            im.name,
            labels["classes"],
            im.classes,
            labels.get("instances") if with_instances else None,
            im.instances if with_instances else None,
        )
    return acc.summary()


@torch.no_grad()
def tune_thresholds(
    model: torch.nn.Module, spec: ModelSpec, images: list[LabelledImage], *, batch_size: int, amp: bool
):
    """Instance post-processing thresholds chosen on ``images`` (those with instance labels); see ``train.tune``."""
    from vimscope.train.tune import tune_postprocess

    maps, gts = [], []
    for im in images:
        if im.instances is None:
            continue
        m = predict_maps_for(model, im.image, spec, batch_size=batch_size, amp=amp)
        entry = {"nucleus": 1.0 - m["probabilities"][0]}
        entry.update({k: v for k, v in m.items() if k in ("boundary", "distance")})
        maps.append(entry)
        gts.append(im.instances)
    return tune_postprocess(maps, gts, base=spec.postprocess, mpp=spec.mpp)
