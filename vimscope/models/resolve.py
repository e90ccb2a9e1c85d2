"""``load_spec``: the IO contract of whatever names a model (packaged name, YAML, weights file), without torch
except for an official ``.pth`` (only unpickling it tells its shapes)."""

from __future__ import annotations

from pathlib import Path

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.safetensors_header import looks_like_safetensors, read_metadata
from vimscope.models.specs import canonical_name, known_names, list_models, packaged_spec, spec_from_yaml

__all__ = ["load_spec"]


def load_spec(name_or_weights: str | Path) -> ModelSpec:
    """The IO contract of a packaged model name or alias (``buildings``), a model YAML, a vimscope safetensors file
    or an official .pth."""
    text = str(name_or_weights)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return spec_from_yaml(path)
        if path.suffix == ".safetensors" or looks_like_safetensors(path):
            return read_metadata(path)["spec"]
        from vimscope.models.checkpoint import read_checkpoint

        return read_checkpoint(path).spec
    if canonical_name(text) in list_models():
        return packaged_spec(text)
    if any(c in text for c in "/\\.") or path.suffix:
        raise ModelError(f"weights file not found: {path}")
    raise ModelError(f"unknown model {text!r} (known: {known_names()})")
