"""Configuration as data: validated dataclasses loaded from YAML (layer 0: stdlib, numpy, yaml).

``ModelSpec`` is a model's IO contract (what its weights expect and what its outputs mean); writers and
faces read it without importing torch. ``PipelineConfig`` is one run's settings. Unknown keys and wrong
types are a ``ConfigError`` naming the key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vimscope.errors import ConfigError

CONFIG_PACKAGE = "vimscope.configs"


def _check_type(name: str, value: Any, tp: Any) -> Any:
    """Coerce ints to floats where a float is wanted; reject what does not fit ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_check_type(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=f"{name}.")
    return value


def from_dict(cls, data: dict | None, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``, checking every key and type."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]!s} (known: {', '.join(sorted(names))})")
    kwargs = {k: _check_type(prefix + k, v, hints[k]) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def packaged_config(kind: str, name: str) -> Path:
    """Path of a YAML file shipped in ``vimscope/configs/<kind>/<name>.yaml``."""
    path = Path(str(resources.files(CONFIG_PACKAGE.replace(".configs", "")) / "configs" / kind / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"no packaged {kind[:-1]} config named {name!r}")
    return path


def packaged_names(kind: str) -> list[str]:
    folder = Path(str(resources.files("vimscope") / "configs" / kind))
    return sorted(p.stem for p in folder.glob("*.yaml"))


@dataclass
class ClassSpec:
    """One output class: its name (QuPath classification) and display colour."""

    name: str
    color: list[int] = field(default_factory=lambda: [255, 0, 0])

    def validate(self) -> None:
        if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
            raise ConfigError(f"class {self.name}: color must be three integers 0-255")


@dataclass
class ModelSpec:
    """A model's IO contract: architecture, head, the resolution and tiles its weights expect, what outputs mean."""

    name: str
    family: str = "vim"  # model builder in vimscope.models: "vim" (VisionMamba + head) or "pointwise"
    arch: dict = field(default_factory=dict)  # VisionMamba arguments (validated by vimscope.models)
    head: dict = field(default_factory=dict)  # head type and arguments
    mpp: float | None = None  # µm/px the weights were trained at (None: any resolution)
    tile: int = 1024  # inference tile size in pixels at ``mpp`` (halo included)
    halo: int = 64  # pixels cropped from each tile side when stitching
    in_chans: int = 3
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    pad_fill: str = "reflect"  # how tiles are padded at the image border: "reflect" or "constant"
    classes: list[ClassSpec] = field(default_factory=list)  # index 0 is background
    output: str = "classes"  # "classes", "nuclei" (classes + instances) or "features"
    postprocess: dict = field(default_factory=dict)
    weights: str | None = None  # file in vimscope/weights/ shipped with the package
    license: str = "Apache-2.0"
    trained: bool = False  # False: random weights, every run says so
    description: str = ""
    size_multiple: int = 1  # input height and width must be multiples of this (the token stride; set by models)

    def validate(self) -> None:
        if self.tile <= 0 or self.halo < 0 or 2 * self.halo >= self.tile:
            raise ConfigError(f"model {self.name}: need tile > 2 * halo >= 0 (tile {self.tile}, halo {self.halo})")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ConfigError(f"model {self.name}: mean and std need {self.in_chans} values")

    @classmethod
    def load(cls, name_or_path: str | Path) -> ModelSpec:
        p = Path(name_or_path)
        path = p if p.suffix in (".yaml", ".yml") else packaged_config("models", str(name_or_path))
        return from_dict(cls, load_yaml(path))
