"""Augmentation on whole batches, on the training device: flips and 90° rotations (with the label maps),
colour jitter, and H&E stain jitter in HED optical-density space (Tellez et al. 2018).

Random draws come from one CPU ``torch.Generator`` (small tensors moved to the device) so a checkpoint's single
saved RNG state makes a resumed run draw exactly what an uninterrupted one would have.

The HED conversion uses scikit-image's stain matrices (``skimage.color.hed_from_rgb`` / ``rgb_from_hed``) and its
formula, without its clamp of negative stain amounts, so an unperturbed batch round-trips exactly. Running on the
device keeps the CPU out of the training step (no decode or augmentation workers to feed a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["AugmentConfig", "colour_jitter", "flip_rotate", "hed_jitter", "hed_to_rgb", "rgb_to_hed"]

_LOG_ADJUST = float(np.log(1e-6))  # scikit-image's optical-density scale


@dataclass
class AugmentConfig:
    """Strengths of each augmentation (0 turns it off). Colour and stain jitter apply to 3-band images only."""

    flips: bool = True
    rot90: bool = True
    hed: float = 0.05  # stain amounts scaled by U(1 - hed, 1 + hed) and shifted by U(-hed, hed), per channel
    brightness: float = 0.1  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.1  # blend with the image mean
    saturation: float = 0.1  # blend with the grey image
    hue: float = 0.02  # rotate hue by U(-h, h) turns (YIQ chroma rotation)
    scale: float = 0.0  # zoom each batch by a log-uniform factor in [1/(1+s), 1+s] (class-map models only)


def _stain_matrices(device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return (
        torch.as_tensor(hed_from_rgb, device=device, dtype=dtype),
        torch.as_tensor(rgb_from_hed, device=device, dtype=dtype),
    )


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in 0-1 -> HED stain amounts (scikit-image's ``rgb2hed`` without its clamp at 0)."""
    hed_from_rgb, _ = _stain_matrices(rgb.device, rgb.dtype)
    od = torch.log(rgb.clamp_min(1e-6)) / _LOG_ADJUST
    return torch.einsum("bchw,cd->bdhw", od, hed_from_rgb)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed` (scikit-image's ``hed2rgb``), clipped to 0-1."""
    _, rgb_from_hed = _stain_matrices(hed.device, hed.dtype)
    log_rgb = torch.einsum("bchw,cd->bdhw", hed * -_LOG_ADJUST, -rgb_from_hed)
    return torch.exp(log_rgb).clamp(0, 1)


def _uniform(shape, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    """Drawn from a CPU generator (one saved RNG state covers everything), then moved to the device."""
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(device)


def hed_jitter(rgb: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per image and stain: amount * U(1 - s, 1 + s) + U(-s, s) * (the image's mean amount of that stain)."""
    if strength <= 0:
        return rgb
    b, device = rgb.shape[0], rgb.device
    hed = rgb_to_hed(rgb)
    scale = _uniform((b, 3, 1, 1), 1 - strength, 1 + strength, generator, device)
    shift = _uniform((b, 3, 1, 1), -strength, strength, generator, device)
    level = hed.abs().mean(dim=(2, 3), keepdim=True)
    return hed_to_rgb(hed * scale + shift * level)


def colour_jitter(rgb: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, each with its own random strength per image; output in 0-1."""
    b, device = rgb.shape[0], rgb.device
    x = rgb
    if cfg.brightness > 0:
        x = x * _uniform((b, 1, 1, 1), 1 - cfg.brightness, 1 + cfg.brightness, generator, device)
    if cfg.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * _uniform((b, 1, 1, 1), 1 - cfg.contrast, 1 + cfg.contrast, generator, device) + mean
    if x.shape[1] == 3 and (cfg.saturation > 0 or cfg.hue > 0):
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        if cfg.saturation > 0:
            s = _uniform((b, 1, 1, 1), 1 - cfg.saturation, 1 + cfg.saturation, generator, device)
            x = (x - grey) * s + grey
        if cfg.hue > 0:
            x = _rotate_hue(x, _uniform((b,), -cfg.hue, cfg.hue, generator, device) * 2 * np.pi)
    return x.clamp(0, 1)


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    to_yiq = torch.as_tensor(_RGB_TO_YIQ, dtype=x.dtype, device=x.device)
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = from_yiq @ rot @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", m, x)


def flip_rotate(tensors: list[torch.Tensor], cfg: AugmentConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """The same random flip / 90° rotation per sample for every tensor (each (B, ..., H, W), square tiles)."""
    b = tensors[0].shape[0]
    ks = torch.randint(0, 4 if cfg.rot90 else 1, (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < (0.5 if cfg.flips else 0.0)).tolist()
    out = [t.clone() for t in tensors]
    for i, (k, flip) in enumerate(zip(ks, flips)):
        if not k and not flip:
            continue
        for t, src in zip(out, tensors):
            v = src[i]
            if flip:
                v = v.flip(-1)
            if k:
                v = torch.rot90(v, k, dims=(-2, -1))
            t[i] = v
    return out
