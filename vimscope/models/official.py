"""Official hustvl/Vim checkpoints (``.pth``): read safely, refused when they are a variant we do not compute.

Files are unpickled with ``torch.load(weights_only=True)`` and only ``argparse.Namespace`` allowed beyond tensors
and plain containers: a checkpoint that would need anything else (code, custom classes) is refused with a message
rather than executed. The architecture comes from the tensor shapes and ``args`` (input_size, model).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.arch import VimArch, parse_arch
from vimscope.models.specs import finalize_spec, packaged_spec

__all__ = ["OFFICIAL_NAMES", "official_arch", "official_spec", "read_official"]

# hustvl/Vim's registered model names -> vimscope variants (architecture and IO contract)
OFFICIAL_NAMES = {
    "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_tiny",
    "vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_tiny_s8",
    "vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_small",
    "vim_small_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2": "vim_small_s8",
    "vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2": "vim_base",
}
OFFICIAL_LICENSE = "unknown: official-format Vim checkpoint, check the terms of its source"


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


def official_spec(state, args, path: Path) -> ModelSpec:
    """The spec of an official state dict: its shapes, checked against its registered name when it has one."""
    name = str(args.get("model", ""))
    _refuse_unsupported(state, name, path)
    arch = official_arch(state, args)
    variant = OFFICIAL_NAMES.get(name)
    # the packaged config of the variant (or ModelSpec's defaults) says what input the weights expect
    contract = packaged_spec(variant) if variant is not None else ModelSpec(name=path.stem)
    if variant is not None:  # a registered official name: its variant must agree with the shapes
        expected = parse_arch(contract.arch)
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
        mean=contract.mean if arch.in_chans == contract.in_chans else [0.5] * arch.in_chans,
        std=contract.std if arch.in_chans == contract.in_chans else [0.5] * arch.in_chans,
        output="classifier" if arch.num_classes else "features",
        license=OFFICIAL_LICENSE,
        trained=True,
        description=f"official-format Vim checkpoint {path.name}" + (f" ({name})" if name else ""),
    )
    return finalize_spec(spec)


def read_official(path: Path) -> tuple[dict[str, torch.Tensor], dict, ModelSpec]:
    """State dict, ``vars(args)`` and spec of an official-format ``.pth`` file."""
    state, args = _state_dict_of(_torch_load(path), path)
    return state, args, official_spec(state, args, path)
