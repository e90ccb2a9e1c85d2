"""Augmentation (HED stain space, geometry), instance targets, and training packs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from vimscope.errors import ConfigError
from vimscope.train.augment import AugmentConfig, flip_rotate, hed_jitter, hed_to_rgb, rgb_to_hed
from vimscope.train.datasets.base import LabelledImage
from vimscope.train.pack import build_pack, read_manifest, read_pack
from vimscope.train.targets import boundary_map, distance_map, touching_gaps


def test_hed_conversion_matches_scikit_image_and_round_trips():
    from skimage.color import rgb2hed

    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.05, 1.0, (2, 8, 8, 3))
    ours = rgb_to_hed(torch.from_numpy(rgb).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    ref = rgb2hed(rgb)  # clamps negative stain amounts at 0; we keep them
    positive = ours > 0
    assert np.allclose(ours[positive], ref[positive], atol=1e-10)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    assert torch.allclose(hed_to_rgb(rgb_to_hed(x)), x, atol=1e-9)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(hed_jitter(x, 0.0, g), x)
    jittered = hed_jitter(x, 0.1, g)
    assert not torch.allclose(jittered, x) and float((jittered - x).abs().max()) < 0.5


def test_flips_and_rotations_move_images_and_labels_together():
    img = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    labels = img[:, 0].clone()  # label = the image's first channel, so alignment is checkable
    g = torch.Generator().manual_seed(5)
    out_img, out_labels = flip_rotate([img, labels], AugmentConfig(), g)
    assert torch.equal(out_img[:, 0], out_labels)
    assert not torch.equal(out_img, img)  # this seed flips or rotates something
    assert sorted(out_img.flatten().tolist()) == sorted(img.flatten().tolist())


def test_boundary_and_distance_targets():
    inst = np.zeros((9, 12), np.int32)
    inst[1:8, 1:6] = 1
    inst[1:8, 6:11] = 2  # touching object
    b = boundary_map(inst, width=1)
    assert b[4, 3] == 0 and b[1, 3] == 1  # interior / top edge
    assert b[4, 5] == 1 and b[4, 6] == 1  # both sides of the contact line
    assert b[0, 0] == 0  # background is never boundary
    d = distance_map(inst)
    assert d[inst == 0].max() == 0
    for k in (1, 2):
        assert d[inst == k].max() == pytest.approx(1.0)
    assert d[4, 3] == 1.0 and d[1, 3] < d[4, 3]


def _images():
    rng = np.random.default_rng(1)
    inst = np.zeros((30, 40), np.int32)
    inst[2:9, 3:12] = 1
    inst[15:25, 20:33] = 70000  # beyond uint16: stored with zstd
    classes = np.full((30, 40), 255, np.uint8)
    classes[:20] = 0
    classes[5:10, 5:10] = 2
    return [
        LabelledImage("rgb", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), instances=inst, mpp=0.25, group="g1"),
        LabelledImage(
            "bands",
            rng.integers(0, 9000, (30, 40, 5), dtype=np.uint16),
            classes=classes,
            mpp=10.0,
            class_names=["bg", "a", "b"],
        ),
    ]


def test_touching_gaps_mark_only_where_two_objects_meet():
    rng = np.random.default_rng(3)
    inst = np.zeros((40, 50), np.int32)
    inst[5:15, 5:20], inst[5:15, 20:30] = 1, 2  # touching along column 20
    inst[25:35, 5:15] = 3  # alone
    inst[25:35, 17:25] = 4  # 2 px of background from 3: within radius 2, not touching 3 but near it
    for radius in (1, 2):
        gaps = touching_gaps(inst, radius)
        # brute force: an object pixel with a different object in its (2r+1)^2 window
        ref = np.zeros_like(gaps)
        for r, c in zip(*np.nonzero(inst)):
            win = inst[max(r - radius, 0) : r + radius + 1, max(c - radius, 0) : c + radius + 1]
            ref[r, c] = ((win > 0) & (win != inst[r, c])).any()
        assert (gaps == ref).all()
    assert touching_gaps(inst, 1)[5:15, 19:21].all() and touching_gaps(inst, 1).sum() == 20
    assert not touching_gaps(inst, 0).any()
    big = rng.integers(0, 4, (30, 30)).astype(np.int32)  # every object touches another somewhere
    assert touching_gaps(big, 1)[big > 0].mean() > 0.5


def test_pack_round_trips_losslessly_and_checks_hashes(tmp_path):
    images = _images()
    path = tmp_path / "set.vspack"
    manifest = build_pack(images, path)
    assert manifest["bytes"] == path.stat().st_size and len(manifest["sha256"]) == 64
    codecs = {
        (item["name"], k): item[k]["codec"] for item in manifest["items"] for k in ("image", "instances") if item[k]
    }
    assert codecs[("bands", "image")] == "zstd" and codecs[("rgb", "instances")] == "zstd"
    assert codecs[("rgb", "image")] in ("jpegxl", "png")
    back = {im.name: im for im in read_pack(path)}
    for im in images:
        got = back[im.name]
        assert np.array_equal(got.image, im.image) and got.image.dtype == im.image.dtype
        assert np.array_equal(got.classes, im.classes)
        assert (got.instances is None) == (im.instances is None)
        if im.instances is not None:
            assert np.array_equal(got.instances, im.instances)
        assert (got.mpp, got.group, got.class_names) == (im.mpp, im.group, im.class_names)
    assert read_manifest(path)["images"] == 2
    # a damaged member is refused
    damaged = tmp_path / "damaged.vspack"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("images/rgb"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    with pytest.raises(ConfigError, match="sha256"):
        read_pack(damaged)
    not_a_pack = tmp_path / "x.vspack"
    not_a_pack.write_bytes(b"hello")
    with pytest.raises(ConfigError, match="not a vimscope training pack"):
        read_pack(not_a_pack)
