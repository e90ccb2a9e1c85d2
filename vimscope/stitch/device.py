"""Tile outputs turned into stitchable values where they were computed (the GPU when there is one).

Softmax, fixed-point quantisation, class maps and (with ``TorchOps``) window blending run on the model's device;
only uint8 (or float16 features) blocks travel to the host. The formulas are the host stitcher's
(``stitch.assembler``), called with torch ops, so CPU and GPU runs agree.
"""

from __future__ import annotations

import numpy as np
import torch

from vimscope.stitch.assembler import NUMPY, P_ONE, P_STEPS

_DTYPES = {
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "float32": torch.float32,
    "float16": torch.float16,
}


class TorchOps:
    """The assembler's array operations on torch tensors of one device."""

    name = "torch"

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    def zeros(self, shape, dtype: str, fill=0):
        return torch.full(shape, fill, dtype=_DTYPES[dtype], device=self.device)

    def to_numpy(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def argmax(self, a, axis: int):
        return torch.argmax(a, dim=axis)

    def clamp_min(self, a, v):
        return torch.clamp_min(a, v)

    def astype(self, a, dtype: str):
        return a.to(_DTYPES[dtype])

    def asarray(self, a):
        return torch.as_tensor(a, device=self.device)


def ops_for(device: torch.device | str):
    """Blend on the GPU when the model runs there; in numpy on the host otherwise."""
    device = torch.device(device)
    return TorchOps(device) if device.type == "cuda" else NUMPY


def fixed_point_probabilities(logits: torch.Tensor, extras=()) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, K [+ E], H, W) float32 holding whole numbers: p * P_ONE rounded.

    ``extras``: (B, 1 | C, H, W) maps already in [0, 1] (e.g. a boundary probability), appended as channels.
    The softmax runs in float64: vectorised and scalar exp differ in the last bits, which in float32 would
    flip the rounding of some pixels depending on where they sit in a tensor; in float64 that never happens
    in practice, so a pixel gets the same value in every tile and in a whole-image run.
    """
    p = torch.softmax(logits.double(), dim=1).mul_(P_ONE).round_().float()
    if extras:
        p = torch.cat([p, *(torch.round(m.double() * P_ONE).float() for m in extras)], dim=1)
    return p


def fixed_point_int(p: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) whole-number float -> (B, H, W, C) int32, the blending accumulators' input."""
    return p.permute(0, 2, 3, 1).to(torch.int32).contiguous()


def first_argmax(p: torch.Tensor, n: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W) uint8 index of the largest of the first ``n`` channels, ties to the lowest.

    A running comparison: elementwise passes are far faster than torch.argmax over a short, strided axis.
    """
    if n > 32:
        return torch.argmax(p[:, :n], dim=1).to(torch.uint8)
    best = p[:, 0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=p.device)
    for k in range(1, n):
        higher = p[:, k] > best
        index.masked_fill_(higher, k)
        torch.maximum(best, p[:, k], out=best)
    return index


def placed_segmentation(p: torch.Tensor, with_probabilities: bool, n_classes: int | None = None) -> torch.Tensor:
    """(B, C, H, W) fixed-point probabilities -> (B, H, W, 1 [+ C]) uint8: class, then probabilities.

    The class is the argmax over the first ``n_classes`` channels (the rest are extra maps, e.g. boundaries),
    ties to the lowest class. The per-tile case of the blending formulas (weight 1): (p + 8) // 16.
    """
    classes = first_argmax(p, n_classes or p.shape[1])
    if not with_probabilities:
        return classes[..., None]
    q = torch.div(p + P_STEPS // 2, P_STEPS, rounding_mode="floor").to(torch.uint8)
    return torch.cat([classes[:, None], q], dim=1).permute(0, 2, 3, 1).contiguous()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C) contiguous."""
    return x.permute(0, 2, 3, 1).contiguous()


def host(x: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array on the host (no copy for CPU tensors)."""
    return x.detach().cpu().numpy()


def host_async(x: torch.Tensor) -> np.ndarray:
    """``host`` without waiting for the device: a CUDA tensor is copied into pinned host memory behind the work
    queued on its stream, so the caller must wait for an event recorded after it before reading the array; the
    tile loop meanwhile queues the next batch and the GPU never runs dry. CPU tensors as ``host``."""
    if x.device.type != "cuda":
        return host(x)
    out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    out.copy_(x.detach(), non_blocking=True)
    return out.numpy()
