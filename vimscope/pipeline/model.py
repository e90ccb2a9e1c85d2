"""The model side of a run: which model, on which device, in which precision, and what it says about itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from vimscope.config import ModelSpec
from vimscope.errors import ConfigError
from vimscope.pipeline.config import DEFAULT_MODEL, PipelineConfig


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} asked for, but no CUDA device is available (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]


@dataclass
class LoadedModel:
    """A model ready to run, with its IO contract and the notes a run reports (e.g. untrained weights)."""

    module: torch.nn.Module
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    name: str
    notes: list[str]

    def autocast(self, cache: bool = True):
        """Mixed precision on CUDA; plain float32 elsewhere (the CPU reference path). ``cache=False`` while a CUDA
        graph is captured: cached weight casts made outside the capture would be freed under it."""
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype, cache_enabled=cache)
        return contextlib.nullcontext()


def load_model(config: PipelineConfig, model: torch.nn.Module | None = None) -> LoadedModel:
    """The configured model (or ``model`` as given, which must carry ``.spec``) on the configured device."""
    from vimscope import models

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    if model is not None:
        module = model
    elif config.weights is not None:
        module = models.create_model(None, weights=config.weights)
    else:
        module = models.create_model(config.model or DEFAULT_MODEL)
    spec = getattr(module, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError("the model has no IO contract (.spec); build it with vimscope.models.create_model")
    notes = []
    if not spec.trained:
        notes.append(
            f"model {spec.name} is untrained (random weights): its outputs show the pipeline working, not tissue; "
            "no trained default model ships yet"
        )
    if device.type == "cuda":
        # cuDNN's default picks may use atomics (transposed convolutions of the decoder): a retried or resumed slide
        # on another process would then differ in the last bits, and so in its quantised maps and outputs
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    module = module.to(device).eval()
    return LoadedModel(module, spec, device, dtype, spec.name, notes)
