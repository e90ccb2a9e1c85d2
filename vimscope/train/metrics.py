"""Segmentation and instance metrics in plain numpy/scipy (no torch), so eval and the pipeline can use them cheaply.

Conventions:
- Class maps are integer arrays; ``ignore_index`` pixels (255 by default) count for nothing.
- Instance maps are integer arrays with 0 = background and 1..N = objects (ids need not be contiguous).
- Dice and IoU of two empty binary masks are 1 (nothing to find, nothing found); a class absent from both maps
  has NaN per-class scores so that means over classes (``np.nanmean``) skip it.
- AJI is Kumar et al.'s (IEEE TMI 2017): every ground-truth object is paired with the prediction of largest IoU,
  the pair's intersection and union are summed, and unpaired predictions add their area to the union.
- Object F1 counts a match where IoU > threshold (0.5 gives a unique matching).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255

__all__ = [
    "IGNORE_INDEX",
    "aji",
    "confusion_matrix",
    "dice",
    "dice_iou_from_confusion",
    "instance_overlaps",
    "iou",
    "match_instances",
    "object_f1",
    "MetricAccumulator",
]


def _binary(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return pred > 0, gt > 0


def dice(pred: np.ndarray, gt: np.ndarray, *, num_classes: int | None = None, ignore_index: int | None = IGNORE_INDEX):
    """Dice = 2|P∩G| / (|P|+|G|).

    Without ``num_classes``: foreground (> 0) against foreground, one float. With it: per-class array of length
    ``num_classes`` from the confusion matrix (``ignore_index`` pixels of ``gt`` skipped).
    """
    if num_classes is not None:
        return dice_iou_from_confusion(confusion_matrix(pred, gt, num_classes, ignore_index))[0]
    p, g = _binary(pred, gt)
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


def iou(pred: np.ndarray, gt: np.ndarray, *, num_classes: int | None = None, ignore_index: int | None = IGNORE_INDEX):
    """IoU (Jaccard) = |P∩G| / |P∪G|; same argument conventions as :func:`dice`."""
    if num_classes is not None:
        return dice_iou_from_confusion(confusion_matrix(pred, gt, num_classes, ignore_index))[1]
    p, g = _binary(pred, gt)
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = IGNORE_INDEX
) -> np.ndarray:
    """(K, K) int64 counts, rows = ground truth, columns = prediction; ignored and out-of-range gt skipped."""
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    if pred.shape != gt.shape:
        raise ValueError("prediction and ground truth differ in size")
    keep = (gt >= 0) & (gt < num_classes)
    if ignore_index is not None:
        keep &= gt != ignore_index
    g = gt[keep].astype(np.int64)
    p = np.clip(pred[keep].astype(np.int64), 0, num_classes - 1)
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def dice_iou_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU from a confusion matrix; NaN where a class is absent from both maps."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        j = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
    return d, j


@dataclass
class Overlaps:
    """Areas and pairwise intersections of two instance maps (sparse: only pairs that touch)."""

    gt_ids: np.ndarray  # (G,) ids present in gt
    pred_ids: np.ndarray  # (P,) ids present in pred
    gt_area: np.ndarray  # (G,)
    pred_area: np.ndarray  # (P,)
    pairs: np.ndarray  # (M, 2) indices into gt_ids / pred_ids of overlapping pairs
    inter: np.ndarray  # (M,) intersection areas

    @property
    def union(self) -> np.ndarray:
        return self.gt_area[self.pairs[:, 0]] + self.pred_area[self.pairs[:, 1]] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / np.maximum(self.union, 1)


def instance_overlaps(pred_inst: np.ndarray, gt_inst: np.ndarray) -> Overlaps:
    pred_inst, gt_inst = np.asarray(pred_inst), np.asarray(gt_inst)
    if pred_inst.shape != gt_inst.shape:
        raise ValueError(f"prediction {pred_inst.shape} and ground truth {gt_inst.shape} differ in shape")
    g, p = gt_inst.ravel().astype(np.int64), pred_inst.ravel().astype(np.int64)
    gt_ids, g_idx = np.unique(g, return_inverse=True)
    pred_ids, p_idx = np.unique(p, return_inverse=True)
    gt_area = np.bincount(g_idx, minlength=len(gt_ids))
    pred_area = np.bincount(p_idx, minlength=len(pred_ids))
    both = (g > 0) & (p > 0)
    codes, inter = np.unique(g_idx[both] * len(pred_ids) + p_idx[both], return_counts=True)
    pairs = np.stack([codes // len(pred_ids), codes % len(pred_ids)], axis=1) if len(codes) else np.zeros((0, 2), int)
    # drop background (id 0) from the id lists, re-indexing the pairs
    g_keep, p_keep = gt_ids > 0, pred_ids > 0
    g_map = np.cumsum(g_keep) - 1
    p_map = np.cumsum(p_keep) - 1
    pairs = np.stack([g_map[pairs[:, 0]], p_map[pairs[:, 1]]], axis=1) if len(pairs) else pairs
    return Overlaps(gt_ids[g_keep], pred_ids[p_keep], gt_area[g_keep], pred_area[p_keep], pairs, inter)


def aji(pred_inst: np.ndarray, gt_inst: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017). 1.0 when both maps are empty; 0.0 when only one is."""
    ov = instance_overlaps(pred_inst, gt_inst)
    n_gt, n_pred = len(ov.gt_ids), len(ov.pred_ids)
    if n_gt == 0 and n_pred == 0:
        return 1.0
    inter_sum = 0
    union_sum = 0
    used = np.zeros(n_pred, bool)
    ious = ov.iou
    # best prediction per gt object (largest IoU; ties to the lower pred index, as a stable order)
    best = np.full(n_gt, -1)
    best_iou = np.full(n_gt, -1.0)
    order = np.lexsort((ov.pairs[:, 1], -ious, ov.pairs[:, 0]))
    seen = np.zeros(n_gt, bool)
    for k in order:
        gi = ov.pairs[k, 0]
        if not seen[gi]:
            seen[gi] = True
            best[gi], best_iou[gi] = k, ious[k]
    union = ov.union
    for gi in range(n_gt):
        k = best[gi]
        if k < 0:
            union_sum += int(ov.gt_area[gi])
        else:
            inter_sum += int(ov.inter[k])
            union_sum += int(union[k])
            used[ov.pairs[k, 1]] = True
    union_sum += int(ov.pred_area[~used].sum())
    return inter_sum / union_sum if union_sum else 0.0


@dataclass
class Matching:
    tp: int
    fp: int
    fn: int
    mean_iou: float  # mean IoU of matched pairs (NaN without matches)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float(self.fp == 0)

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    @property
    def panoptic_quality(self) -> float:
        return 0.0 if not self.tp else self.f1 * self.mean_iou


def match_instances(pred_inst: np.ndarray, gt_inst: np.ndarray, iou: float = 0.5) -> Matching:
    """One-to-one matching of objects with IoU > ``iou`` (greedy by IoU, unique for iou >= 0.5)."""
    ov = instance_overlaps(pred_inst, gt_inst)
    ious = ov.iou
    order = np.argsort(-ious, kind="stable")
    g_used = np.zeros(len(ov.gt_ids), bool)
    p_used = np.zeros(len(ov.pred_ids), bool)
    matched = []
    for k in order:
        if ious[k] <= iou:
            break
        gi, pi = ov.pairs[k]
        if not g_used[gi] and not p_used[pi]:
            g_used[gi] = p_used[pi] = True
            matched.append(ious[k])
    tp = len(matched)
    return Matching(tp, len(ov.pred_ids) - tp, len(ov.gt_ids) - tp, float(np.mean(matched)) if matched else np.nan)


def object_f1(pred_inst: np.ndarray, gt_inst: np.ndarray, iou: float = 0.5) -> float:
    """Detection F1 = 2TP / (2TP + FP + FN) with a match where IoU > ``iou``."""
    return match_instances(pred_inst, gt_inst, iou).f1


@dataclass
class MetricAccumulator:
    """Collects per-image results into dataset metrics: per-class Dice/IoU from the summed confusion matrix,
    per-image mean AJI / object F1 / binary Dice for instance predictions."""

    num_classes: int
    class_names: list[str] = field(default_factory=list)
    ignore_index: int = IGNORE_INDEX
    cm: np.ndarray = None  # type: ignore[assignment]
    per_image: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cm is None:
            self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)

    def add(
        self,
        name: str,
        pred_classes: np.ndarray | None = None,
        gt_classes: np.ndarray | None = None,
        pred_inst: np.ndarray | None = None,
        gt_inst: np.ndarray | None = None,
    ) -> dict:
        row: dict = {"image": name}
        if pred_classes is not None and gt_classes is not None:
            cm = confusion_matrix(pred_classes, gt_classes, self.num_classes, self.ignore_index)
            self.cm += cm
            d, _ = dice_iou_from_confusion(cm)
            row["dice"] = _nan_to_none(d.tolist())
        if pred_inst is not None and gt_inst is not None:
            m = match_instances(pred_inst, gt_inst)
            row.update(
                aji=aji(pred_inst, gt_inst),
                object_f1=m.f1,
                precision=m.precision,
                recall=m.recall,
                pq=m.panoptic_quality,
                foreground_dice=dice(pred_inst, gt_inst),
                objects_gt=m.tp + m.fn,
                objects_pred=m.tp + m.fp,
                objects_matched=m.tp,
            )
        self.per_image.append(row)
        return row

    def summary(self) -> dict:
        d, j = dice_iou_from_confusion(self.cm)
        names = self.class_names or [str(k) for k in range(self.num_classes)]
        out: dict = {
            "dice": dict(zip(names, _nan_to_none(d.tolist()))),
            "iou": dict(zip(names, _nan_to_none(j.tolist()))),
            "mean_dice": _mean_fg(d),
            "mean_iou": _mean_fg(j),
            "images": len(self.per_image),
        }
        inst = [r for r in self.per_image if "aji" in r]
        if inst:
            for key in ("aji", "object_f1", "precision", "recall", "pq", "foreground_dice"):
                out[key] = float(np.mean([r[key] for r in inst]))
            out["objects_pooled"] = pooled_detection(inst)
        out["per_image"] = self.per_image
        return out


def pooled_detection(rows: list[dict]) -> dict:
    """Object counts summed over the images, then precision / recall / F1 (SpaceNet's building F1): unlike the
    per-image means, an image with three objects weighs three objects, not a sixth of the score."""
    tp = sum(r["objects_matched"] for r in rows)
    gt, pred = sum(r["objects_gt"] for r in rows), sum(r["objects_pred"] for r in rows)
    return {
        "objects_gt": gt,
        "objects_pred": pred,
        "matched": tp,
        "precision": tp / pred if pred else 0.0,
        "recall": tp / gt if gt else 0.0,
        "f1": 2 * tp / (gt + pred) if gt + pred else 1.0,
    }


def _mean_fg(values: np.ndarray) -> float | None:
    """Mean over foreground classes (index 0 is background) where defined; over all if only one class."""
    v = values[1:] if len(values) > 1 else values
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if (isinstance(v, float) and np.isnan(v)) else float(v) for v in values]
