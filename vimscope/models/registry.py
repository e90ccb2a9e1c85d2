"""``create_model``: a model from a packaged name, a weights file, or both, always loaded strictly.

- ``create_model("vim_tiny")``: the config's architecture and head, random init (``spec.trained`` False),
  unless the config names packaged weights (``spec.weights``), which are then loaded.
- ``create_model(weights="vim_t.pth")``: an official hustvl/Vim checkpoint; architecture from ``args.model``
  or the shapes; returns the official classifier (``model(x)`` -> (B, num_classes) at its native size).
- ``create_model("vim_tiny", weights="vim_t.pth", head=..., classes=...)``: the named dense model with its
  backbone initialised from the official checkpoint (classifier dropped, position embedding kept at the
  checkpoint's grid and resampled per tile); e.g. ``vimscope train --init``.
- ``create_model(weights="model.safetensors")``: a vimscope checkpoint (any family: Vim, U-Net...), rebuilt
  from its embedded spec.

Which module a spec builds is its family's business (``vimscope.models.families``): a new backbone registers
a family with ``register_family`` and this factory builds it unchanged.

Overrides are ModelSpec fields (``tile``, ``classes``, ``head``, ``output``...) or VimArch fields (``depth``,
``img_size``...). The model is returned in eval mode; call ``.train()`` to fine-tune.
"""

from __future__ import annotations

import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.arch import parse_arch
from vimscope.models.checkpoint import load_into, read_checkpoint
from vimscope.models.families import get_family
from vimscope.models.resolve import load_spec
from vimscope.models.specs import apply_overrides

__all__ = ["build_model", "create_model", "packaged_weights_path"]


def packaged_weights_path(spec: ModelSpec) -> Path:
    path = Path(str(resources.files("vimscope") / "weights" / str(spec.weights)))
    if not path.is_file():
        raise ModelError(f"model {spec.name}: its packaged weights {spec.weights} are missing from the installation")
    return path


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model of ``spec``'s family (global torch RNG), carrying ``.spec``, in train mode."""
    model = get_family(spec.family).builder()(spec)
    if getattr(model, "spec", None) is None:
        model.spec = spec
    return model


def create_model(name: str | Path | None = None, weights: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build a model (see the module docstring). Raises ModelError for unknown names, unusable weights, mismatches."""
    if name is None and weights is None:
        raise ModelError("give a model name or a weights file")
    ckpt = read_checkpoint(weights) if weights is not None else None
    if name is None:
        spec = ckpt.spec
    else:
        spec = load_spec(name)
        if ckpt is not None:
            spec.trained = ckpt.spec.trained
            if ckpt.kind == "official" and "img_size" not in overrides and spec.family == "vim":
                # keep the checkpoint's position-embedding grid; tiles of other sizes resample it on the fly
                overrides = {"img_size": parse_arch(ckpt.spec.arch).img_size, **overrides}
    if overrides:
        spec = apply_overrides(spec, overrides)
    if ckpt is None and spec.weights:
        ckpt = read_checkpoint(packaged_weights_path(spec))
    # A fixed seed per model name: an untrained model is the same in every process, so a slide resumed or
    # retried elsewhere is not stitched from two different random models. The caller's RNG is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(spec.name.encode()))
        model = build_model(spec)
    if ckpt is not None:
        load_into(model, ckpt)
    return model.eval()
