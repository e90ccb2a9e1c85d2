"""Weights in and out: official hustvl/Vim ``.pth`` files and vimscope's own safetensors.

Official files are unpickled with ``torch.load(weights_only=True)`` and only ``argparse.Namespace`` allowed
beyond tensors and plain containers: a checkpoint that would need anything else (code, custom classes) is
refused with a message rather than executed. Loading is always strict; a mismatch names the keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vimscope.config import ModelSpec, to_dict
from vimscope.errors import ModelError
from vimscope.models.arch import VimArch, parse_arch
from vimscope.models.layers import resample_abs_pos_embed
from vimscope.models.specs import (
    FORMAT_TAG,
    SPEC_METADATA_KEY,
    finalize_spec,
    is_safetensors,
    load_spec,
    safetensors_metadata,
    spec_from_metadata,
)

__all__ = [
    "Checkpoint",
    "OFFICIAL_NAMES",
    "read_checkpoint",
    "official_arch",
    "checkpoint_filter_fn",
    "load_strict",
    "save_weights",
]

# hustvl/Vim's registered model names -> vimscope variants (architecture and IO contract)
OFFICIAL_NAMES = {
    "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_tiny",
    "vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_tiny_s8",
    "vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_small",
    "vim_small_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_small_s8",
    "vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2": "vim_base",
}
OFFICIAL_LICENSE = "unknown: official-format Vim checkpoint, check the terms of its source"


@dataclass
class Checkpoint:
    """A weights file read into memory: its state dict and the model config it implies."""

    path: Path
    kind: str  # "official" (hustvl/Vim .pth) or "vimscope" (safetensors with an embedded spec)
    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec
    args: dict = field(default_factory=dict)  # official: vars(args)


# ---- reading ------------------------------------------------------------------------------------------------


def _torch_load(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:
            raise ModelError(f"{path}: not a readable PyTorch checkpoint (damaged or another format)") from None
        raise ModelError(
            f"{path}: refused to load: the checkpoint contains {found.group(1)}, which weights-only loading "
            "does not allow (only tensors, plain containers and argparse.Namespace are accepted)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]})") from None


def _state_dict_of(obj, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    args = dict(args) if isinstance(args, Mapping) else {}
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ModelError(f"{path}: no tensors found (expected {{'model': state_dict, 'args': ...}})")
    return state, args


def _refuse_unsupported(state: Mapping[str, torch.Tensor], name: str, path: Path) -> None:
    """Official variants this implementation does not compute: say so instead of loading them wrongly."""
    problems = []
    if any(k.startswith("rope.") for k in state) or "rope" in name:
        problems.append("rotary position embedding")
    if "cls_token_head" in state:
        problems.append("double class tokens")
    elif "cls_token" not in state:
        problems.append("no class token")
    if ("cls_token" in name or "clstok" in name) and "mid" not in name:
        problems.append("class token at the start of the sequence (only the middle class token is supported)")
    if "pos_embed" not in state:
        problems.append("no absolute position embedding")
    if "patch_embed.proj.weight" not in state or "layers.0.mixer.A_log" not in state:
        problems.append("not a Vision Mamba state dict")
    elif "layers.0.mixer.conv1d_b.weight" not in state:
        problems.append("not a bidirectional v2 (bimambav2) model")
    if "bimambav2" in name and "div2" not in name:
        problems.append("v2 blocks without the /2 average")
    if problems:
        raise ModelError(f"{path}: unsupported Vim variant ({'; '.join(problems)})")


def official_arch(state: Mapping[str, torch.Tensor], args: Mapping) -> VimArch:
    """The architecture of an official-format state dict, from its shapes and ``args`` (input_size, model)."""
    w = state["patch_embed.proj.weight"]
    embed_dim, in_chans, patch = w.shape[0], w.shape[1], w.shape[2]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    d_inner, d_state = state["layers.0.mixer.A_log"].shape
    if d_inner % embed_dim:
        raise ModelError(f"inner width {d_inner} is not a multiple of the embedding width {embed_dim}")
    dt_rank = state["layers.0.mixer.dt_proj.weight"].shape[1]
    d_conv = state["layers.0.mixer.conv1d.weight"].shape[-1]
    num_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    num_patches = state["pos_embed"].shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ModelError(f"pos_embed has {num_patches} patch rows, not a square grid")
    named = re.search(r"stride(\d+)", str(args.get("model", "")))
    stride = int(named.group(1)) if named else None
    img = args.get("input_size")
    if isinstance(img, int) and stride is None:
        if side > 1 and (img - patch) % (side - 1) == 0:
            stride = (img - patch) // (side - 1)
        elif side == 1:
            stride = patch
    if stride is None:
        stride = patch
    img = (side - 1) * stride + patch
    return parse_arch(
        {
            "img_size": [img, img],
            "patch_size": patch,
            "stride": stride,
            "embed_dim": embed_dim,
            "depth": depth,
            "d_state": d_state,
            "d_conv": d_conv,
            "expand": d_inner // embed_dim,
            "dt_rank": None if dt_rank == math.ceil(embed_dim / 16) else dt_rank,
            "in_chans": in_chans,
            "num_classes": num_classes,
        }
    )


def _official_spec(state, args, path: Path) -> ModelSpec:
    name = str(args.get("model", ""))
    _refuse_unsupported(state, name, path)
    arch = official_arch(state, args)
    variant = OFFICIAL_NAMES.get(name)
    if variant is not None:  # a registered official name: its variant must agree with the shapes
        expected = parse_arch(load_spec(variant).arch)
        for key in ("patch_size", "stride", "embed_dim", "depth", "d_state"):
            if getattr(expected, key) != getattr(arch, key):
                raise ModelError(
                    f"{path}: args.model says {name} ({variant}) but the weights have {key} {getattr(arch, key)}"
                )
    spec = ModelSpec(
        name=variant or path.stem,
        arch=dataclasses.asdict(arch),
        head={"type": "classifier" if arch.num_classes else "features"},
        tile=arch.img_size[0],
        halo=0,
        in_chans=arch.in_chans,
        mean=[0.485, 0.456, 0.406] if arch.in_chans == 3 else [0.5] * arch.in_chans,
        std=[0.229, 0.224, 0.225] if arch.in_chans == 3 else [0.5] * arch.in_chans,
        output="classifier" if arch.num_classes else "features",
        license=OFFICIAL_LICENSE,
        trained=True,
        description=f"official-format Vim checkpoint {path.name}" + (f" ({name})" if name else ""),
    )
    return finalize_spec(spec)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read an official ``.pth`` or a vimscope safetensors file (by content, not by extension)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if is_safetensors(path):
        from safetensors.torch import load_file

        spec = spec_from_metadata(safetensors_metadata(path), str(path))
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise ModelError(f"{path}: damaged safetensors file ({e})") from None
        return Checkpoint(path, "vimscope", state, spec)
    state, args = _state_dict_of(_torch_load(path), path)
    return Checkpoint(path, "official", state, _official_spec(state, args, path), args)


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


# ---- writing ------------------------------------------------------------------------------------------------


def save_weights(
    model: nn.Module,
    path: str | Path,
    *,
    spec: ModelSpec | None = None,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors with its spec (the full config) in the metadata; atomic.

    ``dtype`` (e.g. torch.float16 for shipping) converts floating-point tensors; ``metadata`` adds string
    entries (training epoch, data hash...). ``create_model(weights=path)`` rebuilds and loads it strictly.
    """
    from safetensors.torch import save_file

    spec = spec if spec is not None else getattr(model, "spec", None)
    if spec is None:
        raise ModelError("save_weights needs a model with .spec or an explicit spec")
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({"format": FORMAT_TAG, SPEC_METADATA_KEY: json.dumps(to_dict(spec))})
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path
