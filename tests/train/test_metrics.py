"""Dice, IoU, AJI and object F1 against values computed by hand on small crafted masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vimscope.train.metrics import (
    IGNORE_INDEX,
    MetricAccumulator,
    aji,
    confusion_matrix,
    dice,
    iou,
    match_instances,
    object_f1,
)


def test_binary_dice_and_iou_by_hand():
    gt = np.zeros((4, 4), int)
    gt[0:2, 0:2] = 1  # 4 px
    pred = np.zeros((4, 4), int)
    pred[0:2, 1:3] = 1  # 4 px, 2 shared
    assert dice(pred, gt) == pytest.approx(2 * 2 / (4 + 4))
    assert iou(pred, gt) == pytest.approx(2 / 6)
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert iou(pred, np.zeros_like(gt)) == 0.0


def test_per_class_scores_skip_ignored_pixels_and_absent_classes():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE_INDEX, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 1, 1, 0]])
    cm = confusion_matrix(pred, gt, 3)
    # valid pixels: (0,0) 0->0, (0,1) 0->1, (1,0) 0->0, four of class 1 predicted 1,1,1,0
    assert cm.tolist() == [[2, 1, 0], [1, 3, 0], [0, 0, 0]]
    d = dice(pred, gt, num_classes=3)
    assert d[0] == pytest.approx(2 * 2 / (3 + 3))
    assert d[1] == pytest.approx(2 * 3 / (4 + 4))
    assert math.isnan(d[2])
    j = iou(pred, gt, num_classes=3)
    assert j[1] == pytest.approx(3 / 5)


def _two_objects():
    gt = np.zeros((6, 8), int)
    gt[1:3, 1:3] = 1  # A: 4 px
    gt[1:5, 5:7] = 2  # B: 8 px
    pred = np.zeros_like(gt)
    pred[1:3, 1:4] = 7  # covers A (4) + 2 extra px: IoU 4/6
    pred[1:3, 5:7] = 3  # upper half of B: 4 px, IoU 4/8
    pred[5, 0] = 9  # a false positive of 1 px
    return pred, gt


def test_aji_by_hand():
    pred, gt = _two_objects()
    # A pairs with 7: I 4, U 6; B pairs with 3: I 4, U 8; unpaired prediction 9 adds 1 to the union
    assert aji(pred, gt) == pytest.approx((4 + 4) / (6 + 8 + 1))


def test_aji_counts_missed_objects_and_shared_predictions():
    gt = np.zeros((4, 6), int)
    gt[0:2, 0:2] = 1
    gt[0:2, 3:5] = 2
    gt[3, 5] = 3  # missed entirely
    pred = np.zeros_like(gt)
    pred[0:2, 0:5] = 1  # one prediction merging both objects (10 px)
    # gt 1: I 4, U 10; gt 2: I 4, U 10 (the same prediction pairs twice); gt 3: I 0, U 1
    assert aji(pred, gt) == pytest.approx(8 / 21)
    assert aji(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert aji(np.zeros((3, 3)), np.ones((3, 3))) == 0.0


def test_object_f1_by_hand():
    pred, gt = _two_objects()
    m = match_instances(pred, gt)
    # A matches (IoU 0.67 > 0.5); B's IoU is exactly 0.5, not above: no match
    assert (m.tp, m.fp, m.fn) == (1, 2, 1)
    assert object_f1(pred, gt) == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert m.mean_iou == pytest.approx(4 / 6)
    assert object_f1(pred, gt, iou=0.4) == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))


def test_accumulator_sums_confusion_and_averages_per_image():
    pred, gt = _two_objects()
    acc = MetricAccumulator(2, ["background", "nucleus"])
    acc.add("a", (pred > 0).astype(int), (gt > 0).astype(int), pred, gt)
    acc.add("b", (gt > 0).astype(int), (gt > 0).astype(int), gt, gt)
    s = acc.summary()
    assert s["images"] == 2
    assert s["aji"] == pytest.approx(((8 / 15) + 1.0) / 2)
    tp = 8 + 12  # nucleus pixels predicted right in both images
    fp, fn = 3, 4
    assert s["dice"]["nucleus"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["mean_dice"] == s["dice"]["nucleus"]


def test_pooled_detection_counts_objects_not_images():
    one = np.zeros((20, 20), np.int32)
    one[2:8, 2:8] = 1
    three = np.zeros((20, 20), np.int32)
    three[2:6, 2:6], three[10:14, 2:6], three[2:6, 10:14] = 1, 2, 3
    acc = MetricAccumulator(2, ["background", "building"])
    acc.add("found", (one > 0).astype(int), (one > 0).astype(int), one, one)
    acc.add("missed", np.zeros_like(three), (three > 0).astype(int), np.zeros_like(three), three)
    s = acc.summary()
    assert s["object_f1"] == pytest.approx(0.5)  # (1 + 0) / 2 images
    pooled = s["objects_pooled"]
    assert (pooled["objects_gt"], pooled["objects_pred"], pooled["matched"]) == (4, 1, 1)
    assert pooled["f1"] == pytest.approx(2 * 1 / (4 + 1)) and pooled["recall"] == pytest.approx(0.25)
    assert pooled["precision"] == 1.0


def test_metrics_datasets_and_packs_import_no_torch():
    """Eval, the pipeline and `vimscope pack` use these without paying for torch."""
    import subprocess
    import sys

    modules = "vimscope.train.metrics, vimscope.train.datasets.base, vimscope.train.pack, vimscope.train.rasterize"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
