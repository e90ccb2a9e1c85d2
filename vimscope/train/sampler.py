"""Random training tiles at the model's resolution, cut on the training device from images held there.

Images are resampled once to the model's pixel size, their targets (classes, and boundary / distance maps for
instance models) computed once on the full image, and everything moved to the device as small integer tensors;
a batch is then a handful of slicing ops plus batch-wide augmentation, so no loader workers are needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vimscope.train.augment import AugmentConfig, colour_jitter, flip_rotate, hed_jitter
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage
from vimscope.train.targets import instance_targets

__all__ = ["Prepared", "TileSampler", "downsample_to", "prepare", "rescale_to"]

RESCALE_TOLERANCE = 0.02  # relative pixel-size difference below which images are used as they are


def rescale_to(image: LabelledImage, target_mpp: float | None) -> LabelledImage:
    """The image and its labels resampled to ``target_mpp`` (bilinear for pixels, nearest for labels)."""
    if target_mpp is None or image.mpp is None or abs(image.mpp / target_mpp - 1) < RESCALE_TOLERANCE:
        return image
    from skimage.transform import resize

    factor = image.mpp / target_mpp
    h, w = image.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    pixels = resize(image.image, size + image.image.shape[2:], order=1, preserve_range=True, anti_aliasing=factor < 1)
    pixels = np.round(pixels).astype(image.image.dtype)

    def nearest(a):
        return None if a is None else resize(a, size, order=0, preserve_range=True, anti_aliasing=False).astype(a.dtype)

    return LabelledImage(
        image.name,
        pixels,
        classes=nearest(image.classes),
        instances=nearest(image.instances),
        mpp=target_mpp,
        group=image.group,
        class_names=image.class_names,
        source=image.source,
    )


def downsample_to(image: LabelledImage, target_mpp: float | None) -> LabelledImage:
    """``rescale_to`` for images finer than ``target_mpp`` only: what a pack stores (coarser ones stay as they
    are, so the pack never grows)."""
    if target_mpp is None or image.mpp is None or image.mpp >= target_mpp:
        return image
    return rescale_to(image, target_mpp)


def value_scale(dtype) -> float:
    """The divisor that puts pixels in the units of ``ModelSpec.mean/std``: 255 for every integer type, as the
    pipeline's loader normalises (``(x - 255 mean) / (255 std)``), so 16-bit multi-band rasters keep their raw
    values (with ``normalize: dataset`` giving matching statistics); floats are used as they are."""
    return 255.0 if np.dtype(dtype).kind in "ui" else 1.0


@dataclass
class Prepared:
    """One image ready for tiling: (C, H, W) pixels and (H, W) target maps, padded to at least one tile."""

    name: str
    pixels: torch.Tensor
    targets: dict[str, torch.Tensor]
    weight: float  # labelled pixels: how often tiles come from this image
    labelled_sat: np.ndarray | None = None  # (H+1, W+1) summed-area table of labelled pixels (None: all labelled)

    def labelled_in(self, y: int, x: int, t: int) -> bool:
        """Whether the tile at (y, x) holds a labelled pixel, checked on the host (no device sync)."""
        if self.labelled_sat is None:
            return True
        s = self.labelled_sat
        return bool(s[y + t, x + t] - s[y, x + t] - s[y + t, x] + s[y, x] > 0)


def prepare(image: LabelledImage, *, tile: int, instance_maps: list[str], boundary_width: int, device) -> Prepared:
    pixels = np.moveaxis(image.image, -1, 0)
    targets: dict[str, np.ndarray] = {"classes": image.classes}
    if instance_maps:
        if image.instances is None:
            raise ValueError(f"{image.name}: an instance model needs instance labels")
        for name, m in instance_targets(image.instances, instance_maps, boundary_width).items():
            targets[name] = np.round(m * 255).astype(np.uint8) if m.dtype.kind == "f" else m
    h, w = image.shape
    ph, pw = max(tile - h, 0), max(tile - w, 0)
    if ph or pw:  # pad small images: pixels reflect, labels become "unlabelled"
        mode = "reflect" if min(h, w) > 1 and ph < h and pw < w else "edge"
        pixels = np.pad(pixels, ((0, 0), (0, ph), (0, pw)), mode=mode)
        targets = {
            k: np.pad(v, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX if k == "classes" else 0)
            for k, v in targets.items()
        }
    to = {"device": device}
    labelled = targets["classes"] != IGNORE_INDEX
    sat = None
    if not labelled.all():
        sat = np.zeros((labelled.shape[0] + 1, labelled.shape[1] + 1), np.int64)
        sat[1:, 1:] = labelled.cumsum(0).cumsum(1)
    return Prepared(
        image.name,
        torch.from_numpy(np.ascontiguousarray(pixels.astype(np.int32) if pixels.dtype == np.uint16 else pixels)).to(
            **to
        ),
        {k: torch.from_numpy(np.ascontiguousarray(v)).to(**to) for k, v in targets.items()},
        float((image.classes != IGNORE_INDEX).sum()),
        sat,
    )


class TileSampler:
    """Draws augmented, normalised batches of random tiles.

    ``sample`` returns ``x`` (B, C, tile, tile) float32 normalised with ``mean``/``std`` and a dict of targets:
    ``classes`` (B, tile, tile) int64 with IGNORE_INDEX, ``boundary`` float 0/1, ``distance`` float 0-1.
    """

    def __init__(
        self,
        images: list[LabelledImage],
        *,
        tile: int,
        mean: list[float],
        std: list[float],
        augment: AugmentConfig | None = None,
        instance_maps: list[str] | None = None,
        boundary_width: int = 2,
        device="cpu",
    ) -> None:
        if not images:
            raise ValueError("no training images")
        self.tile = tile
        self.device = torch.device(device)
        self.augment = augment or AugmentConfig()
        self.scale = value_scale(images[0].image.dtype)
        self.eight_bit = images[0].image.dtype == np.uint8
        self.items = [
            prepare(im, tile=tile, instance_maps=instance_maps or [], boundary_width=boundary_width, device=device)
            for im in images
        ]
        weights = np.array([it.weight for it in self.items], dtype=np.float64)
        if weights.sum() <= 0:
            raise ValueError("the training images have no labelled pixels")
        self.weights = torch.as_tensor(weights / weights.sum())
        if self.augment.scale and instance_maps:
            raise ValueError("scale jitter would distort the boundary and distance targets of an instance model")
        self.max_side = min(min(it.pixels.shape[1:]) for it in self.items)
        channels = self.items[0].pixels.shape[0]
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)

    def _side(self, generator: torch.Generator) -> int:
        """The side of this batch's crops: the tile, or with scale jitter a zoomed one (at most the smallest image)."""
        a = self.augment.scale
        if not a:
            return self.tile
        log_zoom = (torch.rand((), generator=generator).item() * 2 - 1) * np.log1p(a)
        return int(min(self.max_side, max(8, round(self.tile * np.exp(log_zoom)))))

    def _crop(self, generator: torch.Generator, t: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        for _attempt in range(8):  # avoid tiles with no labelled pixel (sparse labels)
            i = int(torch.multinomial(self.weights, 1, generator=generator))
            item = self.items[i]
            _, h, w = item.pixels.shape
            y = int(torch.randint(0, h - t + 1, (1,), generator=generator))
            x = int(torch.randint(0, w - t + 1, (1,), generator=generator))
            if item.labelled_in(y, x, t):
                break
        targets = {k: v[y : y + t, x : x + t] for k, v in item.targets.items()}
        return item.pixels[:, y : y + t, x : x + t], targets

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        side = self._side(generator)
        crops = [self._crop(generator, side) for _ in range(batch_size)]
        x = torch.stack([c[0] for c in crops]).float() / self.scale
        names = list(crops[0][1])
        maps = [torch.stack([c[1][k] for c in crops]) for k in names]
        if side != self.tile:  # back to the tile: pixels bilinear (antialiased when shrinking), labels nearest
            size = (self.tile, self.tile)
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=side > self.tile)
            maps = [torch.nn.functional.interpolate(m[:, None].float(), size=size)[:, 0].to(m.dtype) for m in maps]
        x, *maps = flip_rotate([x, *maps], self.augment, generator)
        if self.eight_bit:  # colour and stain jitter work on 0-1 intensities (RGB for the stains)
            if x.shape[1] == 3:
                x = hed_jitter(x, self.augment.hed, generator)
            x = colour_jitter(x, self.augment, generator)
        targets = {}
        for k, m in zip(names, maps):
            if k == "classes":
                targets[k] = m.long()
            elif k == "distance":
                targets[k] = m.float() / 255.0
            else:
                targets[k] = m.float()
        return (x - self.mean) / self.std, targets

    def dataset_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the (0-1 scaled) training pixels, for ``normalize: dataset``."""
        sums, sq, n = 0.0, 0.0, 0
        for it in self.items:
            p = it.pixels.double() / self.scale
            sums = sums + p.sum(dim=(1, 2))
            sq = sq + (p * p).sum(dim=(1, 2))
            n += p.shape[1] * p.shape[2]
        mean = sums / n
        std = (sq / n - mean * mean).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()
