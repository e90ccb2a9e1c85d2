"""Training checkpoints: the weights as an ordinary vimscope weights file (``vimscope.models.save_weights``, with the
training config and state in its metadata) and beside it the optimizer and RNG state that resume on the same
schedule.

``<name>.safetensors`` loads anywhere a weights file does (``create_model(weights=...)``, ``segment --weights``);
``<name>.optim.safetensors`` holds ``optimizer/<param index>/<key>`` and ``rng/<name>`` tensors for
``vimscope train --resume``, and the optimizer's param groups in its ``vimscope.state`` metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from vimscope.config import ModelSpec, from_dict
from vimscope.errors import ConfigError, ModelError
from vimscope.models.checkpoint import load_strict
from vimscope.models.safetensors_header import STATE_KEY, read_header, read_metadata
from vimscope.models.weights import load_tensors, save_weights, write_tensors
from vimscope.train.config import TrainConfig

__all__ = ["load_checkpoint", "optim_path", "resumed_config", "save_checkpoint"]

RUNTIME_KEYS = ("device", "max_minutes", "log_every", "out")  # may change on resume; everything else may not

OPTIM_PREFIX = "optimizer/"
RNG_PREFIX = "rng/"


def optim_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".optim.safetensors")


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
        write_tensors(tensors, optim_path(path), {STATE_KEY: json.dumps(meta_state)})
    return save_weights(model, path, spec=spec, train_config=train_config, state=state)


def _restore_optimizer(path: Path, step, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    opath = optim_path(path)
    if not opath.is_file():
        raise ModelError(f"{opath} is missing: a weights-only file cannot resume training")
    resume_state = json.loads((read_header(opath).get("__metadata__") or {}).get(STATE_KEY, "{}"))
    if resume_state.get("step") != step:
        raise ModelError(f"{opath} belongs to step {resume_state.get('step')}, not {step}")
    tensors = load_tensors(opath)
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            index, name = key[len(OPTIM_PREFIX) :].split("/", 1)
            per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": resume_state["param_groups"]})
    return {k[len(RNG_PREFIX) :]: v for k, v in tensors.items() if k.startswith(RNG_PREFIX)}


def load_checkpoint(
    path: str | Path, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load weights (strictly) and, when ``optimizer`` is given, the resume state; returns the metadata
    (``spec``, ``train_config``, ``state``) plus ``rng`` (name -> state tensor)."""
    path = Path(path)
    meta = read_metadata(path)
    if model is not None:
        load_strict(model, load_tensors(path), str(path))  # load_state_dict casts float16 exports back
    meta["rng"] = {}
    if optimizer is not None:
        meta["rng"] = _restore_optimizer(path, meta["state"].get("step"), optimizer)
    return meta


def resumed_config(
    config: TrainConfig, last_path: Path, *, resume: bool, overwrite: bool
) -> tuple[TrainConfig, dict | None]:
    """The config to run (on resume: the saved schedule with this run's runtime keys) and the saved metadata."""
    if not resume:
        if last_path.exists() and not overwrite:
            raise ConfigError(f"{last_path.parent} already holds a run; pass --resume to continue it or --overwrite")
        return config, None
    if not last_path.is_file():
        raise ConfigError(f"nothing to resume: {last_path} does not exist")
    meta = read_metadata(last_path)
    runtime = {k: v for k, v in asdict(config).items() if k in RUNTIME_KEYS}
    return from_dict(TrainConfig, {**(meta["train_config"] or {}), **runtime}), meta
