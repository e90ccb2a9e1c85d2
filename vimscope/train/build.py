"""Models for training and evaluation: the Vim models of ``vimscope.models`` and the U-Net baseline, built from a
``ModelSpec`` or rebuilt from a weights file, with ``--init`` from an official Vim checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vimscope.config import ModelSpec
from vimscope.errors import ModelError

__all__ = ["build", "init_backbone", "load_trained", "param_groups"]


def build(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model (global torch RNG) carrying ``.spec``."""
    if spec.family == "unet":
        from vimscope.train.unet import build_unet

        return build_unet(spec)
    from vimscope.models.segmentation import build_model

    model = build_model(spec)
    if not hasattr(model, "spec"):
        model.spec = spec
    return model


def init_backbone(model: nn.Module, path: str | Path) -> None:
    """Load an official hustvl/Vim checkpoint into the model's backbone (strict; classifier dropped, position
    embedding resampled to the training grid); the head keeps its fresh initialisation."""
    from vimscope.models.arch import parse_arch
    from vimscope.models.checkpoint import checkpoint_filter_fn, load_strict, read_checkpoint

    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ModelError(f"--init needs a Vim model; {model.spec.name} ({model.spec.family}) has no Vim backbone")
    ckpt = read_checkpoint(path)
    if ckpt.kind == "official":
        old_grid = tuple(parse_arch(ckpt.spec.arch).grid_size)
        load_strict(backbone, checkpoint_filter_fn(ckpt.state_dict, backbone, old_grid), str(path))
        return
    # a vimscope file: take its backbone.* tensors (e.g. from a model trained on other labels)
    state = {k.removeprefix("backbone."): v for k, v in ckpt.state_dict.items() if k.startswith("backbone.")}
    if not state:
        raise ModelError(f"{path}: holds no backbone weights")
    old_grid = tuple(parse_arch(ckpt.spec.arch).grid_size)
    load_strict(backbone, checkpoint_filter_fn(state, backbone, old_grid), str(path))


def load_trained(path: str | Path, device="cpu") -> nn.Module:
    """Any vimscope weights file, the U-Net's included, as a model in eval mode with ``.spec``."""
    from vimscope.train.checkpoint import load_checkpoint, read_metadata

    spec = read_metadata(path)["spec"]
    if spec.family == "unet":
        model = build(spec)
        load_checkpoint(path, model)
    else:
        from vimscope.models import create_model

        model = create_model(weights=str(path))
    return model.to(device).eval()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay for biases, norms, position embedding, class token, A_log and D."""
    skip_names = set()
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "no_weight_decay"):
        skip_names = {f"backbone.{n}" for n in backbone.no_weight_decay()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in skip_names or getattr(p, "_no_weight_decay", False):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def as_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from vimscope.errors import ConfigError

        raise ConfigError(f"device {name} asked for, but no CUDA device is available (use --device cpu)")
    return device
