"""Model specs without torch: the packaged configs (the IO contract of each model), validation and overrides.

``configs/models/<name>.yaml`` is the one source of a packaged model's contract (mpp, tile, halo, mean/std,
classes, post-processing, architecture); ``finalize_spec`` checks it through its family's contract
(``vimscope.models.families``). Weights files carry a copy of the spec they were trained with
(``vimscope.models.safetensors_header``); ``vimscope.models.resolve.load_spec`` reads any of them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vimscope.config import ClassSpec, ModelSpec, from_dict, packaged_names, to_dict
from vimscope.errors import ConfigError, ModelError
from vimscope.models.families import get_family

__all__ = [
    "list_models",
    "model_aliases",
    "canonical_name",
    "known_names",
    "packaged_spec",
    "spec_from_yaml",
    "finalize_spec",
    "apply_overrides",
    "class_dicts",
]

# Short names users type (``--model buildings``) -> packaged model names. A name says what the model finds; the
# packaged name also says how it is built, and changes when a better model of another family replaces it.
MODEL_ALIASES = {"buildings": "unet_buildings"}

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


def model_aliases() -> dict[str, str]:
    """Short names and the packaged model each stands for (``--model buildings``)."""
    return dict(MODEL_ALIASES)


def canonical_name(name: str) -> str:
    """The packaged model name an alias stands for; any other name unchanged."""
    return MODEL_ALIASES.get(name, name)


def known_names() -> str:
    """Every packaged name and alias, for messages."""
    aliases = ", ".join(f"{a} (= {n})" for a, n in MODEL_ALIASES.items())
    return ", ".join(list_models()) + (f"; aliases: {aliases}" if aliases else "")


def finalize_spec(spec: ModelSpec) -> ModelSpec:
    """Check ``spec`` through its family's contract (which completes ``arch``/``head`` and sets ``size_multiple``)."""
    family = get_family(spec.family)
    try:
        if family.contract is not None:
            family.contract(spec)
        spec.validate()
    except ConfigError as e:
        raise ModelError(f"model {spec.name}: {e}") from None
    if spec.tile % spec.size_multiple:
        raise ModelError(
            f"model {spec.name}: tile {spec.tile} is not a multiple of the token stride {spec.size_multiple}"
        )
    return spec


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
    """A new spec with ``overrides`` applied: ModelSpec fields replace (``arch`` is merged), fields of the family's
    arch dataclass (e.g. VimArch's ``depth``) go to arch.

    ``head`` replaces the head when its type changes and is merged into it otherwise.
    """
    data = to_dict(spec)
    arch_fields = get_family(str(overrides.get("family", spec.family))).arch_fields()
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
        elif key in arch_fields:
            data["arch"] = {**data["arch"], key: value}
        else:
            known = sorted(_SPEC_FIELDS | arch_fields)
            raise ModelError(f"unknown model option {key!r} (known: {', '.join(known)})")
    try:
        new = from_dict(ModelSpec, data)
    except ConfigError as e:
        raise ModelError(f"model {spec.name}: {e}") from None
    return finalize_spec(new)


def spec_from_yaml(path: Path) -> ModelSpec:
    """A model YAML file (a full spec) checked through its family's contract."""
    try:
        return finalize_spec(ModelSpec.load(path))
    except ConfigError as e:
        raise ModelError(str(e)) from None


def packaged_spec(name: str) -> ModelSpec:
    """The IO contract of a packaged model (``configs/models/<name>.yaml``), by name or alias."""
    name = canonical_name(name)
    if name not in list_models():
        raise ModelError(f"unknown model {name!r} (known: {known_names()})")
    try:
        spec = ModelSpec.load(name)
    except ConfigError as e:
        raise ModelError(f"packaged model {name}: {e}") from None
    if spec.name != name:
        raise ModelError(f"packaged model config {name}.yaml names itself {spec.name!r}")
    return finalize_spec(spec)
