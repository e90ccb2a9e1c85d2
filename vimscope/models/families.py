"""Model families: the one table ``create_model`` builds from, and ``register_family`` to add a backbone to it.

A family is what ``ModelSpec.family`` names: how to build a module from a spec, and the spec's contract (which
``arch`` keys it takes, how they are validated, the input size multiple they imply). The contract is checked
without torch, so ``load_spec`` and ``vimscope info`` stay light; the builder is imported only to build.

Adding a backbone family (e.g. the SSD-mixer Vim) touches neither ``create_model`` nor this table::

    # vimscope/models/vim_ssd.py
    from vimscope.models.families import register_family

    def build_vim_ssd(spec: ModelSpec) -> nn.Module: ...   # a module with .spec and the dense forward contract

    register_family("vim_ssd", build_vim_ssd, contract=check_vim_ssd_spec, arch=VimSSDArch)

A family named ``X`` that is not registered yet is looked up by importing ``vimscope.models.X`` (whose import
registers it), so a config saying ``family: vim_ssd`` finds ``vimscope/models/vim_ssd.py`` by itself. Code
outside the package calls ``register_family`` before ``create_model``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vimscope.config import ModelSpec
from vimscope.errors import ConfigError, ModelError
from vimscope.models.arch import HeadSpec, UNetArch, VimArch, parse_arch, parse_head, parse_unet_arch

__all__ = ["Family", "register_family", "get_family", "list_families"]


@dataclass(frozen=True)
class Family:
    """One entry of the table. ``build`` may be a ``"module:function"`` string, imported on first use."""

    name: str
    build: Callable[[ModelSpec], Any] | str
    contract: Callable[[ModelSpec], None] | None = None
    arch: type | None = None

    def builder(self) -> Callable[[ModelSpec], Any]:
        if callable(self.build):
            return self.build
        module, _, function = self.build.partition(":")
        return getattr(importlib.import_module(module), function)

    def arch_fields(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self.arch)} if self.arch is not None else set()


_FAMILIES: dict[str, Family] = {}


def register_family(
    name: str,
    build: Callable[[ModelSpec], Any] | str,
    *,
    contract: Callable[[ModelSpec], None] | None = None,
    arch: type | None = None,
) -> Family:
    """Make ``create_model`` / ``build_model`` build models whose spec says ``family: name``.

    - ``build(spec) -> nn.Module``: a freshly initialised model (global torch RNG; ``create_model`` seeds it) that
      carries ``.spec`` and whose ``forward(x)`` returns the dense dict of maps (``"logits"`` (B, K, H, W), one
      map per ``head.extra_maps`` entry, or ``"features"``); a backbone keeps timm's ``forward_features`` /
      ``forward_intermediates`` / ``forward_head``. A ``"module:function"`` string defers the import.
    - ``contract(spec)`` (optional, no torch): validate and normalise ``spec.arch`` / ``spec.head`` in place and
      set ``spec.size_multiple`` (the token stride); raise ``ConfigError`` naming the bad key. Without it the
      spec is used as its config gives it.
    - ``arch`` (optional): the dataclass of ``spec.arch``, so overrides such as ``create_model(name, depth=2)``
      go into ``arch``.

    Registering a name again replaces the entry (tests register throw-away families). Returns the entry.
    """
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"a family name is an identifier, got {name!r}")
    family = Family(name, build, contract, arch)
    _FAMILIES[name] = family
    return family


def get_family(name: str) -> Family:
    """The registered family ``name``, importing ``vimscope.models.<name>`` first when it is not registered yet."""
    if name not in _FAMILIES and name.isidentifier():
        module = f"vimscope.models.{name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)  # registers itself
    if name not in _FAMILIES:
        raise ModelError(f"unknown model family {name!r} (known: {', '.join(list_families())})")
    return _FAMILIES[name]


def list_families() -> list[str]:
    return sorted(_FAMILIES)


# ---- the built-in families' contracts (no torch) ---------------------------------------------------------------


def vim_contract(spec: ModelSpec) -> None:
    """VisionMamba + a dense head: arch and head validated and completed; size multiple = the patch stride."""
    head = parse_head(spec.head)
    if head.type == "pointwise":
        raise ConfigError("head.type pointwise needs family pointwise")
    arch = parse_arch(spec.arch)
    spec.head = dataclasses.asdict(head)
    spec.arch = dataclasses.asdict(arch)
    spec.size_multiple = arch.stride


def pointwise_contract(spec: ModelSpec) -> None:
    """The per-pixel test model: no backbone, any input size."""
    head = parse_head(spec.head)
    if head.type != "pointwise":
        raise ConfigError("the pointwise family needs head.type pointwise")
    if spec.arch:
        raise ConfigError("the pointwise family takes no arch")
    spec.head = dataclasses.asdict(head)
    spec.size_multiple = 1


def unet_contract(spec: ModelSpec) -> None:
    """The U-Net baseline: ``arch: {base, depth}``, ``head: {extra_maps}``; size multiple 2**depth."""
    arch = parse_unet_arch(spec.arch)
    unknown = sorted(set(spec.head) - {"type", "extra_maps"})
    if unknown:
        raise ConfigError(f"unknown config key head.{unknown[0]} (the U-Net head takes extra_maps)")
    extra_maps = dict(spec.head.get("extra_maps") or {})
    HeadSpec(type="features", extra_maps=extra_maps).validate()
    if not spec.classes:
        raise ConfigError("a U-Net needs its classes")
    spec.arch = dataclasses.asdict(arch)
    spec.head = {"extra_maps": extra_maps}
    spec.size_multiple = arch.size_multiple


register_family("vim", "vimscope.models.segmentation:build_vim", contract=vim_contract, arch=VimArch)
register_family("pointwise", "vimscope.models.segmentation:build_pointwise", contract=pointwise_contract)
register_family("unet", "vimscope.models.unet:build_unet", contract=unet_contract, arch=UNetArch)
