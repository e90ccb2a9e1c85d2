"""Weights into models: read a weights file (official ``.pth`` or vimscope safetensors), map it, load it strictly.

The formats themselves live beside this module: ``official`` (hustvl/Vim's pickles, read weights-only) and
``safetensors_header`` / ``weights`` (vimscope's own). Loading is always strict; a mismatch names the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.arch import parse_arch
from vimscope.models.layers import resample_abs_pos_embed
from vimscope.models.official import read_official
from vimscope.models.safetensors_header import looks_like_safetensors, read_header, spec_from_metadata
from vimscope.models.weights import load_tensors

__all__ = [
    "Checkpoint",
    "read_checkpoint",
    "checkpoint_filter_fn",
    "load_strict",
    "load_into",
    "init_backbone",
]


@dataclass
class Checkpoint:
    """A weights file read into memory: its state dict and the model config it implies."""

    path: Path
    kind: str  # "official" (hustvl/Vim .pth) or "vimscope" (safetensors with an embedded spec)
    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec
    args: dict = field(default_factory=dict)  # official: vars(args)

    @property
    def grid(self) -> tuple[int, int] | None:
        """The patch grid its position embedding was stored at (Vim family; None: square, from the row count)."""
        return tuple(parse_arch(self.spec.arch).grid_size) if self.spec.family == "vim" else None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read an official ``.pth`` or a vimscope safetensors file (by content; a ``.safetensors`` name is checked as
    one whatever its content, so a damaged file gets the safetensors message)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        spec = spec_from_metadata(dict(read_header(path).get("__metadata__") or {}), str(path))
        return Checkpoint(path, "vimscope", load_tensors(path), spec)
    state, args, spec = read_official(path)
    return Checkpoint(path, "official", state, spec, args)


# ---- mapping and strict loading -----------------------------------------------------------------------------


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, old_grid: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Map an official-format state dict onto ``model`` (a VisionMamba); pure, the input is not modified.

    Unwraps ``{'model': ...}``, strips DDP's ``module.`` prefix, drops the classifier when the model has none
    and resamples ``pos_embed`` from ``old_grid`` (default: square) to the model's training grid with the
    class row kept at the middle. Nothing else is renamed or dropped: strict loading reports the rest.
    """
    if isinstance(state_dict.get("model"), Mapping):
        state_dict = state_dict["model"]
    has_classifier = isinstance(getattr(model, "head", None), nn.Linear)
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("head.") and not has_classifier:
            continue
        if key == "pos_embed":
            value = resample_abs_pos_embed(value, model.arch.grid_size, old_grid)
        out[key] = value
    return out


def _listing(keys: list[str], limit: int = 6) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one clear message naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches (file vs model): {_listing(shapes, 3)}")
    if problems:
        raise ModelError(f"{source}: weights do not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _vim_of(model: nn.Module) -> nn.Module | None:
    from vimscope.models.vim import VisionMamba

    return model if isinstance(model, VisionMamba) else getattr(model, "backbone", None)


def load_into(model: nn.Module, ckpt: Checkpoint) -> None:
    """Load ``ckpt`` into ``model`` strictly: the whole model (vimscope file) or its Vim part (official file)."""
    source = str(ckpt.path)
    vim = _vim_of(model)
    if ckpt.kind == "vimscope":
        state = dict(ckpt.state_dict)
        key = "pos_embed" if vim is model else "backbone.pos_embed"
        if vim is not None and key in state:  # follows an img_size override
            state[key] = resample_abs_pos_embed(state[key], vim.arch.grid_size, ckpt.grid)
        load_strict(model, state, source)
        return
    if vim is None:
        raise ModelError(f"{source}: Vim weights cannot initialise model {model.spec.name} (it has no Vim backbone)")
    load_strict(vim, checkpoint_filter_fn(ckpt.state_dict, vim, ckpt.grid), source)


def init_backbone(model: nn.Module, path: str | Path) -> None:
    """Load a Vim checkpoint into the model's backbone only, the head keeping its fresh initialisation
    (``vimscope train --init``): an official file (classifier dropped, position embedding resampled to the
    training grid) or the ``backbone.*`` tensors of a vimscope file (e.g. a model trained on other labels)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ModelError(f"--init needs a Vim model; {model.spec.name} ({model.spec.family}) has no Vim backbone")
    ckpt = read_checkpoint(path)
    state = ckpt.state_dict
    if ckpt.kind == "vimscope":
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        if not state:
            raise ModelError(f"{path}: holds no backbone weights")
    load_strict(backbone, checkpoint_filter_fn(state, backbone, ckpt.grid), str(path))
