"""Model specs without torch: the packaged configs, overrides, and the spec embedded in a vimscope weights file.

``vimscope info --model`` and the pipeline's planning read specs; only building a model needs torch.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

from vimscope.config import ClassSpec, ModelSpec, from_dict, packaged_names, to_dict
from vimscope.errors import ConfigError, ModelError
from vimscope.models.arch import VimArch, parse_arch, parse_head

__all__ = [
    "list_models",
    "load_spec",
    "finalize_spec",
    "apply_overrides",
    "is_safetensors",
    "safetensors_metadata",
    "SPEC_METADATA_KEY",
    "FORMAT_TAG",
]

SPEC_METADATA_KEY = "vimscope.spec"  # safetensors metadata entry holding the ModelSpec as JSON
FORMAT_TAG = "vimscope-model/1"
PALETTE = [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
]


def list_models() -> list[str]:
    """Names of the packaged model configs (``vimscope/configs/models/*.yaml``)."""
    return packaged_names("models")


def finalize_spec(spec: ModelSpec) -> ModelSpec:
    """Validate ``arch`` and ``head`` of the vim and pointwise families and derive ``size_multiple`` from them."""
    try:
        if spec.family in ("vim", "pointwise"):
            spec.head = dataclasses.asdict(parse_head(spec.head))
        if spec.family == "vim":
            arch = parse_arch(spec.arch)
            spec.arch = dataclasses.asdict(arch)
            spec.size_multiple = arch.stride
        elif spec.family == "pointwise":
            if spec.arch:
                raise ConfigError("the pointwise family takes no arch")
            spec.size_multiple = 1
        # other families (registered with vimscope.models.segmentation.register_family) keep arch and head as given
        spec.validate()
    except ConfigError as e:
        raise ModelError(f"model {spec.name}: {e}") from None
    if spec.tile % spec.size_multiple:
        raise ModelError(
            f"model {spec.name}: tile {spec.tile} is not a multiple of the token stride {spec.size_multiple}"
        )
    return spec


_ARCH_FIELDS = {f.name for f in dataclasses.fields(VimArch)}
_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


def class_dicts(value: Any) -> list[dict]:
    """Class names or ``{name, color}`` mappings; names get colours from a fixed palette (index 0 black)."""
    out = []
    for i, c in enumerate(value):
        if isinstance(c, str):
            out.append({"name": c, "color": PALETTE[i % len(PALETTE)]})
        elif isinstance(c, ClassSpec):
            out.append(dataclasses.asdict(c))
        else:
            out.append(dict(c))
    return out


def apply_overrides(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    """A new spec with ``overrides`` applied: ModelSpec fields replace (``arch`` is merged), VimArch fields go to arch.

    ``head`` replaces the head when its type changes and is merged into it otherwise.
    """
    data = to_dict(spec)
    for key, value in overrides.items():
        if key == "arch":
            data["arch"] = {**data["arch"], **dict(value)}
        elif key == "head":
            value = dict(value)
            same = value.get("type", data["head"].get("type")) == data["head"].get("type")
            data["head"] = {**data["head"], **value} if same else value
        elif key == "classes":
            data["classes"] = class_dicts(value)
        elif key in _SPEC_FIELDS:
            data[key] = value
        elif key in _ARCH_FIELDS:
            data["arch"] = {**data["arch"], key: value}
        else:
            known = sorted(_SPEC_FIELDS | _ARCH_FIELDS)
            raise ModelError(f"unknown model option {key!r} (known: {', '.join(known)})")
    try:
        new = from_dict(ModelSpec, data)
    except ConfigError as e:
        raise ModelError(f"model {spec.name}: {e}") from None
    return finalize_spec(new)


def is_safetensors(path: Path) -> bool:
    """By content: an 8-byte little-endian header length followed by a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + n <= size


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its JSON header (no torch)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError(f"{path}: damaged safetensors header") from None
    return dict(header.get("__metadata__") or {})


def spec_from_metadata(metadata: dict[str, str], source: str) -> ModelSpec:
    if SPEC_METADATA_KEY not in metadata:
        raise ModelError(f"{source}: a safetensors file without a vimscope model config; give the model name too")
    try:
        spec = from_dict(ModelSpec, json.loads(metadata[SPEC_METADATA_KEY]))
    except (json.JSONDecodeError, ConfigError) as e:
        raise ModelError(f"{source}: the embedded model config is invalid ({e})") from None
    return finalize_spec(spec)


def load_spec(name_or_weights: str | Path) -> ModelSpec:
    """The IO contract of a packaged model name, a model YAML, a vimscope safetensors file or an official .pth."""
    text = str(name_or_weights)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            try:
                return finalize_spec(ModelSpec.load(path))
            except ConfigError as e:
                raise ModelError(str(e)) from None
        if is_safetensors(path):
            return spec_from_metadata(safetensors_metadata(path), str(path))
        from vimscope.models.checkpoint import read_checkpoint

        return read_checkpoint(path).spec
    if text in list_models():
        try:
            spec = ModelSpec.load(text)
        except ConfigError as e:
            raise ModelError(f"packaged model {text}: {e}") from None
        if spec.name != text:
            raise ModelError(f"packaged model config {text}.yaml names itself {spec.name!r}")
        return finalize_spec(spec)
    if any(c in text for c in "/\\.") or path.suffix:
        raise ModelError(f"weights file not found: {path}")
    raise ModelError(f"unknown model {text!r} (known: {', '.join(list_models())})")
