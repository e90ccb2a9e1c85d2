"""vimscope's weights format (safetensors): writing a model with its spec, and reading the tensors back safely.

One format for every vimscope file: shipped weights, ``vimscope train``'s ``last`` / ``best`` / ``model``
checkpoints (with the training config and state in the metadata) and its ``.optim.safetensors`` resume files.
Metadata values are strings, JSON where structured (keys in ``vimscope.models.safetensors_header``).
Writes are atomic: a ``.partial`` name renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vimscope.config import ModelSpec, to_dict
from vimscope.errors import ModelError
from vimscope.models.safetensors_header import FORMAT_TAG, SPEC_KEY, STATE_KEY, TRAIN_KEY, read_header

__all__ = ["save_weights", "write_tensors", "load_tensors", "model_tensors"]


def write_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> Path:
    """Atomically write ``tensors`` (copied to contiguous CPU memory) and string ``metadata`` as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    os.replace(tmp, path)
    return path


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file on the CPU; its header is checked first (``ModelError`` if damaged)."""
    from safetensors.torch import load_file

    read_header(path)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{path}: damaged safetensors file ({str(e).splitlines()[0]})") from None


def model_tensors(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Copies of the state dict (safetensors refuses tensors sharing memory), floats cast to ``dtype`` if given."""
    out = {}
    for name, value in model.state_dict().items():
        value = value.detach()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[name] = value.clone()
    return out


def save_weights(
    model: nn.Module,
    path: str | Path,
    *,
    spec: ModelSpec | None = None,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
    train_config: dict | None = None,
    state: dict | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors with its spec (the full IO contract) in the metadata; atomic.

    ``dtype`` (e.g. torch.float16 for shipping) converts floating-point tensors; ``metadata`` adds string entries;
    ``train_config`` and ``state`` (JSON) are what ``vimscope train`` records. ``create_model(weights=path)``
    rebuilds the model from the file alone and loads it strictly.
    """
    spec = spec if spec is not None else getattr(model, "spec", None)
    if spec is None:
        raise ModelError("save_weights needs a model with .spec or an explicit spec")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({"format": FORMAT_TAG, SPEC_KEY: json.dumps(to_dict(spec))})
    if train_config is not None:
        meta[TRAIN_KEY] = json.dumps(train_config)
    if state is not None:
        meta[STATE_KEY] = json.dumps(state)
    return write_tensors(model_tensors(model, dtype), path, meta)
