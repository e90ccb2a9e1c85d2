"""Checkpoints as safetensors: the weights with the full configuration (the model's IO contract and the training
config) in the metadata, and beside them the optimizer and RNG state that resume on the same schedule.

``<name>.safetensors`` is an ordinary vimscope weights file (``vimscope.models.create_model(weights=...)``,
``vimscope segment --weights`` load it); ``<name>.optim.safetensors`` holds ``optimizer/<param index>/<key>`` and
``rng/<name>`` tensors for ``vimscope train --resume``. Metadata values are strings, JSON where structured:
``vimscope.spec`` (ModelSpec), ``vimscope.train_config``, ``vimscope.state`` (epoch, step, best, history).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from vimscope.config import ModelSpec, from_dict
from vimscope.errors import ModelError

__all__ = ["export_weights", "load_checkpoint", "optim_path", "read_metadata", "save_checkpoint"]

SPEC_KEY = "vimscope.spec"  # = vimscope.models.specs.SPEC_METADATA_KEY
FORMAT_TAG = "vimscope-model/1"  # = vimscope.models.specs.FORMAT_TAG
TRAIN_KEY = "vimscope.train_config"
STATE_KEY = "vimscope.state"
OPTIM_PREFIX = "optimizer/"
RNG_PREFIX = "rng/"


def optim_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".optim.safetensors")


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _model_tensors(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Copies (safetensors refuses tensors that share memory, e.g. tied weights)."""
    out = {}
    for name, value in model.state_dict().items():
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[name] = value.detach().clone()
    return out


def _metadata(spec: ModelSpec, train_config: dict | None, state: dict | None) -> dict[str, str]:
    meta = {"format": FORMAT_TAG, SPEC_KEY: json.dumps(asdict(spec))}
    if train_config is not None:
        meta[TRAIN_KEY] = json.dumps(train_config)
    if state is not None:
        meta[STATE_KEY] = json.dumps(state)
    return meta


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    spec: ModelSpec,
    train_config: dict,
    state: dict,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Weights + config at ``path``; with ``optimizer`` / ``rng`` also the resume state at ``optim_path(path)``.

    The optimizer file is written first, so a weights file never announces a step its optimizer file lacks."""
    path = Path(path)
    if optimizer is not None or rng:
        tensors: dict[str, torch.Tensor] = {}
        meta_state = dict(state)
        if optimizer is not None:
            sd = optimizer.state_dict()
            for index, param_state in sd["state"].items():
                for key, value in param_state.items():
                    tensors[f"{OPTIM_PREFIX}{index}/{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
            meta_state["param_groups"] = sd["param_groups"]
        for name, value in (rng or {}).items():
            tensors[f"{RNG_PREFIX}{name}"] = value
        _atomic_save(tensors, optim_path(path), {STATE_KEY: json.dumps(meta_state)})
    _atomic_save(_model_tensors(model), path, _metadata(spec, train_config, state))
    return path


def export_weights(
    path: str | Path,
    model: torch.nn.Module,
    *,
    spec: ModelSpec,
    train_config: dict | None = None,
    state: dict | None = None,
    dtype=torch.float16,
) -> Path:
    """Inference weights only (floating tensors cast to ``dtype``) with the IO contract, for shipping."""
    _atomic_save(_model_tensors(model, dtype), Path(path), _metadata(spec, train_config, state))
    return Path(path)


def _raw_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a safetensors checkpoint ({e})") from None


def read_metadata(path: str | Path) -> dict:
    """``spec`` (ModelSpec), ``train_config`` (dict or None) and ``state`` (dict) of a checkpoint."""
    raw = _raw_metadata(Path(path))
    if SPEC_KEY not in raw:
        raise ModelError(f"{path}: a safetensors file without a vimscope model config")
    try:
        spec = from_dict(ModelSpec, json.loads(raw[SPEC_KEY]))
        train_config = json.loads(raw[TRAIN_KEY]) if TRAIN_KEY in raw else None
        state = json.loads(raw[STATE_KEY]) if STATE_KEY in raw else {}
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: damaged checkpoint metadata ({e})") from None
    return {"spec": spec, "train_config": train_config, "state": state}


def load_checkpoint(
    path: str | Path, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load weights (strictly) and, when ``optimizer`` is given, the resume state; returns the metadata plus
    ``rng`` (name -> state tensor)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if model is not None:
        weights = load_file(str(path))
        reference = model.state_dict()
        weights = {k: v.to(reference[k].dtype) if k in reference else v for k, v in weights.items()}
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ModelError(f"{path} does not fit this model: {str(e).splitlines()[0]}") from None
    meta["rng"] = {}
    if optimizer is not None:
        opath = optim_path(path)
        if not opath.is_file():
            raise ModelError(f"{opath} is missing: a weights-only file cannot resume training")
        resume_state = json.loads(_raw_metadata(opath).get(STATE_KEY, "{}"))
        if resume_state.get("step") != meta["state"].get("step"):
            raise ModelError(f"{opath} belongs to step {resume_state.get('step')}, not {meta['state'].get('step')}")
        tensors = load_file(str(opath))
        per_param: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith(OPTIM_PREFIX):
                index, name = key[len(OPTIM_PREFIX) :].split("/", 1)
                per_param.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": resume_state["param_groups"]})
        meta["rng"] = {k[len(RNG_PREFIX) :]: v for k, v in tensors.items() if k.startswith(RNG_PREFIX)}
    return meta
