"""The dense model every stage downstream sees: ``forward(x) -> dict`` of maps at input resolution, plus ``.spec``.

Output keys (all raw, before any activation):
- ``"logits"`` (B, K, H, W), K = len(spec.classes), for ``output: classes | nuclei``;
- one map per ``head.extra_maps`` entry, e.g. ``"boundary"`` (B, 1, H, W) logit and ``"distance"`` (B, 1, H, W)
  regression for instance models (their meaning is fixed by the model's ``postprocess`` config);
- ``"features"`` (B, D, H/s, W/s) for ``output: features``.
"""

from __future__ import annotations

import torch
from torch import nn

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.arch import parse_arch, parse_head
from vimscope.models.heads import FeatureHead, LinearHead, PointwiseHead, UNETRHead
from vimscope.models.vim import VisionMamba

__all__ = ["SegmentationModel", "build_pointwise", "build_vim", "dense_model", "output_maps"]


def output_maps(spec: ModelSpec) -> dict[str, int]:
    """Name -> channels of what a dense model built from ``spec`` returns, in channel order."""
    head = parse_head(spec.head)
    if head.type == "features":
        return {"features": int(spec.arch.get("embed_dim", parse_arch({}).embed_dim))}  # any Vim-like family
    if not spec.classes:
        raise ModelError(f"model {spec.name}: a {head.type} head needs classes in its config")
    return {"logits": len(spec.classes), **head.extra_maps}


class SegmentationModel(nn.Module):
    """Backbone (or none, for the pointwise test model) + a dense head; splits the head's channels into maps."""

    def __init__(self, spec: ModelSpec, backbone: VisionMamba | None, head: nn.Module):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.head = head
        self.maps = output_maps(spec)

    def _check(self, x: torch.Tensor) -> None:
        m = self.spec.size_multiple
        if x.dim() != 4 or x.shape[1] != self.spec.in_chans or x.shape[-2] % m or x.shape[-1] % m:
            raise ModelError(
                f"model {self.spec.name} takes (B, {self.spec.in_chans}, H, W) with H and W multiples of {m}, "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W) normalised image -> dict of maps (see the module docstring)."""
        self._check(x)
        out = self.head(x, self.backbone)
        if "features" in self.maps:
            return {"features": out}
        maps, start = {}, 0
        for name, channels in self.maps.items():
            maps[name] = out[:, start : start + channels]
            start += channels
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H/s, W/s) token grid of the backbone (per-pixel hidden activations for the pointwise model)."""
        self._check(x)
        if self.backbone is None:
            return self.head.features(x)
        return self.backbone.forward_features(x)


def build_pointwise(spec: ModelSpec) -> nn.Module:
    """The ``pointwise`` family: no backbone, a per-pixel MLP head (exact-stitching tests)."""
    head = parse_head(spec.head)
    if head.type != "pointwise":
        raise ModelError(f"model {spec.name}: the pointwise family needs head.type pointwise")
    channels = sum(output_maps(spec).values())
    return SegmentationModel(spec, None, PointwiseHead(spec.in_chans, channels, head.hidden, head.seed))


def build_vim(spec: ModelSpec) -> nn.Module:
    """The ``vim`` family: VisionMamba + a dense head (or the official classifier, for ``head.type: classifier``)."""
    head = parse_head(spec.head)
    arch = parse_arch(spec.arch)
    if arch.in_chans != spec.in_chans:
        raise ModelError(f"model {spec.name}: arch.in_chans {arch.in_chans} != in_chans {spec.in_chans}")
    if head.type == "classifier":
        if arch.num_classes <= 0:
            raise ModelError(f"model {spec.name}: a classifier head needs arch.num_classes > 0")
        model = VisionMamba.from_arch(arch)
        model.spec = spec
        return model
    if head.type == "pointwise":
        raise ModelError(f"model {spec.name}: head.type pointwise needs family pointwise")
    return dense_model(spec, VisionMamba.from_arch(arch))


def dense_model(spec: ModelSpec, backbone: nn.Module) -> SegmentationModel:
    """``backbone`` (a Vim-like family's, with ``embed_dim`` and ``num_classes``) under the dense head that
    ``spec.head`` names: one place for the heads of every Vim-like family."""
    head = parse_head(spec.head)
    if backbone.num_classes:
        raise ModelError(f"model {spec.name}: arch.num_classes is for head.type classifier, not {head.type}")
    channels = sum(output_maps(spec).values())
    if head.type == "features":
        dense = FeatureHead()
    elif head.type == "linear":
        dense = LinearHead(backbone.embed_dim, channels)
    else:
        try:
            dense = UNETRHead(backbone, spec.in_chans, channels, head)
        except ValueError as e:
            raise ModelError(f"model {spec.name}: {e}") from None
    return SegmentationModel(spec, backbone, dense)
