"""``create_model``: a model from a packaged name, a weights file, or both, always loaded strictly.

- ``create_model("vim_tiny")``: the config's architecture and head, random init (``spec.trained`` False),
  unless the config names packaged weights (``spec.weights``), which are then loaded.
- ``create_model(weights="vim_t.pth")``: an official hustvl/Vim checkpoint; architecture from ``args.model``
  or the shapes; returns the official classifier (``model(x)`` -> (B, num_classes) at its native size).
- ``create_model("vim_tiny", weights="vim_t.pth", head=..., classes=...)``: the named dense model with its
  backbone initialised from the official checkpoint (classifier dropped, position embedding kept at the
  checkpoint's grid and resampled per tile); e.g. ``vimscope train --init``.
- ``create_model(weights="model.safetensors")``: a vimscope checkpoint, rebuilt from its embedded spec.

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
from vimscope.models.checkpoint import Checkpoint, checkpoint_filter_fn, load_strict, read_checkpoint
from vimscope.models.layers import resample_abs_pos_embed
from vimscope.models.segmentation import build_model
from vimscope.models.specs import apply_overrides, load_spec
from vimscope.models.vim import VisionMamba

__all__ = ["create_model", "packaged_weights_path"]


def packaged_weights_path(spec: ModelSpec) -> Path:
    path = Path(str(resources.files("vimscope") / "weights" / str(spec.weights)))
    if not path.is_file():
        raise ModelError(f"model {spec.name}: its packaged weights {spec.weights} are missing from the installation")
    return path


def _load(model: nn.Module, ckpt: Checkpoint) -> None:
    """Load ``ckpt`` into ``model`` strictly: the whole model (vimscope file) or the Vim part (official file)."""
    source = str(ckpt.path)
    vim = model if isinstance(model, VisionMamba) else getattr(model, "backbone", None)
    old_grid = tuple(parse_arch(ckpt.spec.arch).grid_size) if ckpt.spec.family == "vim" else None
    if ckpt.kind == "vimscope":
        state = dict(ckpt.state_dict)
        key = "pos_embed" if vim is model else "backbone.pos_embed"
        if vim is not None and key in state:  # follows an img_size override
            state[key] = resample_abs_pos_embed(state[key], vim.arch.grid_size, old_grid)
        load_strict(model, state, source)
        return
    if vim is None:
        raise ModelError(f"{source}: Vim weights cannot initialise model {model.spec.name} (it has no Vim backbone)")
    load_strict(vim, checkpoint_filter_fn(ckpt.state_dict, vim, old_grid), source)


def create_model(name: str | None = None, weights: str | Path | None = None, **overrides: Any) -> nn.Module:
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
        _load(model, ckpt)
    return model.eval()
