"""Device and precision are resolved in one place (``vimscope.models.device``) for segment, train and eval; a run on
an untrained model says so and names the trained default that ships."""

from __future__ import annotations

import pytest
import torch

from vimscope.errors import ConfigError
from vimscope.models import load_spec, resolve_device, resolve_dtype
from vimscope.models.device import cpu_has_native_bf16


def test_auto_device_and_precision():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device("cpu") == torch.device("cpu")
    native = torch.bfloat16 if cpu_has_native_bf16() else torch.float32  # bf16 only where the CPU has it natively
    assert resolve_dtype("auto", torch.device("cpu")) == native
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16


def test_impossible_devices_and_precisions_are_config_errors():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_dtype("int3", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_the_untrained_note_names_the_shipped_default_and_is_said_only_without_weights():
    from vimscope.pipeline.config import DEFAULT_MODEL, PipelineConfig
    from vimscope.pipeline.model import load_model

    default = load_spec(DEFAULT_MODEL)
    assert default.trained and default.weights  # the default ships with trained weights
    untrained = load_model(PipelineConfig.load(model="vim_test_pointwise", device="cpu"))
    assert len(untrained.notes) == 1 and "untrained" in untrained.notes[0]
    assert f"trained default model {DEFAULT_MODEL} ships" in untrained.notes[0]
    assert "no trained" not in untrained.notes[0]
    trained = load_model(PipelineConfig.load(device="cpu"))  # the default model
    assert trained.spec.name == DEFAULT_MODEL and not any("untrained" in n for n in trained.notes)
