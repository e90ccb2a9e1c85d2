"""The model side of a run: which model, on which device, in which precision, and what it says about itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from vimscope.config import ModelSpec
from vimscope.errors import ConfigError
from vimscope.models.device import resolve_device, resolve_dtype
from vimscope.pipeline.config import DEFAULT_MODEL, PipelineConfig


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
        """Mixed precision unless the dtype is float32 (the CPU reference path); on a CPU, bf16 autocast runs the
        GEMMs and convolutions in oneDNN's bf16 kernels (the mixer's scan stays float32). ``cache=False`` while a
        CUDA graph is captured: cached weight casts made outside the capture would be freed under it."""
        if self.dtype == torch.float32 or self.device.type not in ("cuda", "cpu"):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=cache)


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
            f"the trained default model {DEFAULT_MODEL} ships with vimscope (used when no --model is given)"
        )
    if device.type == "cuda":
        # cuDNN's default picks may use atomics (transposed convolutions of the decoder): a retried or resumed slide
        # on another process would then differ in the last bits, and so in its quantised maps and outputs
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    module = module.to(device).eval()
    if device.type == "cpu":  # oneDNN's convolutions are faster on channels-last (NHWC): see ``step.forward``
        module = module.to(memory_format=torch.channels_last)
    if config.tta:
        module = models.TestTimeAugmented(module)
    return LoadedModel(module, spec, device, dtype, spec.name, notes)
