"""Losses for dense models: cross-entropy + soft Dice on class logits (unlabelled pixels ignored), and for
instance models binary cross-entropy + soft Dice on the boundary logit, mean squared error on the distance map
(a plain regression of the 0-1 target; the pipeline clamps it, see ``vimscope.instances.maps``).

Everything is computed in float32 whatever the autocast dtype of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vimscope.train.metrics import IGNORE_INDEX

__all__ = ["LossConfig", "segmentation_loss", "soft_dice_loss"]


@dataclass
class LossConfig:
    ce: float = 1.0
    dice: float = 1.0
    boundary: float = 1.0  # weight of the boundary map's BCE + Dice
    distance: float = 1.0  # weight of the distance map's MSE
    boundary_pos_weight: float = 1.0  # weight of boundary pixels in the BCE (they are rare)


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean Dice over channels, summed over the batch's valid pixels. probs, onehot: (B, K, H, W)."""
    valid = valid.unsqueeze(1).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot * valid).sum(dims)
    denom = ((probs + onehot) * valid).sum(dims)
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


def segmentation_loss(outputs: dict, targets: dict, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its parts (detached tensors: reading them syncs the device, so the loop does it rarely).

    A batch without any labelled pixel gives a zero loss (every mean divides by at least one pixel)."""
    logits = outputs["logits"].float()
    classes = targets["classes"]
    valid = classes != IGNORE_INDEX
    n_valid = valid.sum().clamp_min(1)
    parts: dict[str, torch.Tensor] = {}
    ce = F.cross_entropy(logits, classes, ignore_index=IGNORE_INDEX, reduction="sum")
    parts["ce"] = cfg.ce * ce / n_valid
    if cfg.dice > 0:
        k = logits.shape[1]
        onehot = F.one_hot(classes.clamp(0, k - 1), k).permute(0, 3, 1, 2).float()
        parts["dice"] = cfg.dice * soft_dice_loss(logits.softmax(1), onehot, valid)
    if "boundary" in targets:
        if "boundary" not in outputs:
            raise KeyError("the model has no 'boundary' output but the targets ask for one")
        b_logit = outputs["boundary"].float()[:, 0]
        b_true = targets["boundary"]
        pos_weight = torch.tensor(cfg.boundary_pos_weight, device=b_logit.device)
        bce = F.binary_cross_entropy_with_logits(b_logit, b_true, pos_weight=pos_weight, reduction="none")
        bce = (bce * valid).sum() / n_valid
        dice_b = soft_dice_loss(torch.sigmoid(b_logit)[:, None], b_true[:, None], valid)
        parts["boundary"] = cfg.boundary * (bce + dice_b)
    if "distance" in targets:
        if "distance" not in outputs:
            raise KeyError("the model has no 'distance' output but the targets ask for one")
        d_pred = outputs["distance"].float()[:, 0]  # a plain regression, clamped to 0-1 at inference
        mse = ((d_pred - targets["distance"]) ** 2 * valid).sum() / n_valid
        parts["distance"] = cfg.distance * mse
    total = sum(parts.values())
    log = {k: v.detach() for k, v in parts.items()}
    log["loss"] = total.detach()
    return total, log
