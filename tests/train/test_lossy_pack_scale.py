"""Lossy image packs (labels exact), packs at the model's pixel size, scale jitter, and the objects of a
one-foreground-class model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vimscope.train.augment import AugmentConfig
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage
from vimscope.train.evaluate import region_objects
from vimscope.train.pack import build_pack, read_pack
from vimscope.train.sampler import TileSampler, downsample_to


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([yy * 200 / h, xx * 200 / w, (yy + xx) * 100 / (h + w)], -1) + 20
    return base.astype(np.uint8)


def test_lossy_pack_keeps_labels_exact_and_records_quality(tmp_path):
    inst = np.zeros((64, 96), np.int32)
    inst[5:20, 5:30], inst[30:60, 40:90] = 1, 2
    classes = np.zeros((64, 96), np.uint8)
    classes[:, :10] = IGNORE_INDEX
    classes[30:60, 40:90] = 1
    images = [
        LabelledImage("a", _smooth_rgb(64, 96), instances=inst, mpp=0.25),
        LabelledImage("b", _smooth_rgb(64, 96)[::-1].copy(), classes=classes, mpp=0.25),
        LabelledImage("grey", _smooth_rgb(64, 96)[:, :, :1].copy(), classes=classes, mpp=0.25),
    ]
    manifest = build_pack(images, tmp_path / "p.vspack", quality=90)
    entries = {it["name"]: it["image"] for it in manifest["items"]}
    assert manifest["lossy_quality"] == 90
    assert entries["a"]["codec"] == "webp" and entries["a"]["quality"] == 90 and entries["a"]["psnr"] > 30
    assert "quality" not in entries["grey"]  # only 8-bit RGB images are stored lossy
    back = {im.name: im for im in read_pack(tmp_path / "p.vspack")}
    assert np.array_equal(back["a"].instances, inst) and np.array_equal(back["b"].classes, classes)
    assert np.array_equal(back["grey"].image, images[2].image)
    err = np.abs(back["a"].image.astype(int) - images[0].image).mean()
    assert 0 < err < 3  # lossy, and close
    lossless = build_pack(images, tmp_path / "q.vspack")
    assert lossless["lossy_quality"] is None and all("quality" not in it["image"] for it in lossless["items"])


def test_packs_store_finer_images_at_the_model_pixel_size():
    fine = LabelledImage("fine", _smooth_rgb(64, 64), classes=np.zeros((64, 64), np.uint8), mpp=0.075)
    coarse = LabelledImage("coarse", _smooth_rgb(32, 32), classes=np.zeros((32, 32), np.uint8), mpp=0.3)
    assert downsample_to(fine, 0.15).shape == (32, 32) and downsample_to(fine, 0.15).mpp == 0.15
    assert downsample_to(coarse, 0.15) is coarse and downsample_to(fine, None) is fine


def _sampler(scale: float, instance_maps=None):
    h = w = 96
    inst = np.zeros((h, w), np.int32)
    inst[10:40, 10:40] = 1
    classes = (inst > 0).astype(np.uint8)
    img = LabelledImage("x", _smooth_rgb(h, w), classes=classes, instances=inst, mpp=1.0)
    return TileSampler(
        [img],
        tile=32,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        augment=AugmentConfig(
            flips=False, rot90=False, hed=0, brightness=0, contrast=0, saturation=0, hue=0, scale=scale
        ),
        instance_maps=instance_maps,
    )


def test_scale_jitter_zooms_crops_back_to_the_tile():
    sampler = _sampler(0.5)
    sides = {sampler._side(torch.Generator().manual_seed(s)) for s in range(40)}
    assert min(sides) >= 21 and max(sides) <= 48 and len(sides) > 5  # 32 / 1.5 .. 32 * 1.5
    for seed in range(6):
        x, t = sampler.sample(3, torch.Generator().manual_seed(seed))
        assert x.shape == (3, 3, 32, 32) and t["classes"].shape == (3, 32, 32)
        assert set(t["classes"].unique().tolist()) <= {0, 1}  # nearest: no blended labels
    a = sampler.sample(2, torch.Generator().manual_seed(7))
    b = sampler.sample(2, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0])  # the zoom comes from the generator: resumable runs draw the same
    plain = _sampler(0.0)
    assert plain._side(torch.Generator().manual_seed(0)) == 32
    with pytest.raises(ValueError, match="distort"):
        _sampler(0.5, instance_maps=["boundary"])


def test_region_objects_ignore_unlabelled_ground_truth():
    gt = np.zeros((20, 20), np.uint8)
    gt[2:6, 2:6] = 1
    gt[2:6, 8:12] = 1
    gt[:, 15:] = IGNORE_INDEX
    pred = np.zeros((20, 20), np.uint8)
    pred[2:6, 2:12] = 1  # the two buildings merged into one region
    pred[10:14, 16:19] = 1  # in the unlabelled strip: not an object of the evaluation
    p, g = region_objects(pred, gt, None)
    assert p.max() == 1 and g.max() == 2 and p[10:14, 16:19].max() == 0
    own = np.zeros((20, 20), np.int32)
    own[2:6, 2:6] = 7
    assert region_objects(pred, gt, own)[1] is own
