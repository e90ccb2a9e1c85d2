"""Dense heads on a VisionMamba backbone: every head maps (image, backbone) -> (B, C, H, W) at input resolution.

- ``FeatureHead``: the token grid itself (feature export).
- ``LinearHead``: Segmenter's linear decoder, a 1x1 conv on the final tokens upsampled bilinearly.
- ``UNETRHead``: UNETR-style decoder. Residual streams of several blocks are brought to strides s, s/2, ...
  by transposed convs (deeper blocks to coarser levels) and fused coarse to fine, together with a light conv
  stem on the image at strides 1, 2 and 4: nuclei at 0.25 um/px are 2-3 tokens wide, so boundaries between
  touching nuclei need full-resolution features the tokens do not have.

Norms are BatchNorm (a per-pixel affine map at inference), never instance or group norm, whose statistics
would depend on the tile and break seamless stitching.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vimscope.models.arch import HeadSpec
from vimscope.models.vim import VisionMamba

__all__ = ["FeatureHead", "LinearHead", "UNETRHead", "PointwiseHead", "default_unetr_indices"]


class FeatureHead(nn.Module):
    """(B, D, H/s, W/s) token grid after the final norm, class token removed."""

    def forward(self, x: torch.Tensor, backbone: VisionMamba) -> torch.Tensor:
        return backbone.forward_features(x)


class LinearHead(nn.Module):
    def __init__(self, embed_dim: int, out_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(embed_dim, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, backbone: VisionMamba) -> torch.Tensor:
        logits = self.proj(backbone.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _conv_bn_act(c_in: int, c_out: int, stride: int = 1, norm: str = "batch", kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=norm == "none"),
        nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity(),
        nn.ReLU(inplace=True),
    )


def _up_bn_act(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2, bias=norm == "none"),
        nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity(),
        nn.ReLU(inplace=True),
    )


def default_unetr_indices(depth: int, count: int) -> list[int]:
    """``count`` blocks evenly spaced, ending with the last (UNETR's 3, 6, 9, 12 of 12 -> 5, 11, 17, 23 of 24)."""
    count = max(1, min(count, depth))
    return [depth * (i + 1) // count - 1 for i in range(count)]


class UNETRHead(nn.Module):
    """Decoder over levels at strides s, s/2, ..., 1 (s = token stride, a power of two >= 4).

    Block ``indices[-1]`` (deepest) enters at stride s, ``indices[-2]`` at s/2 (one transposed conv), and so on
    down to stride 2. Each level: upsample the coarser level, concatenate the Vim skip and the stem output
    of that stride (if any), two 3x3 conv blocks. A 1x1 conv gives the ``out_channels`` maps at stride 1.
    """

    STEM_STRIDES = (1, 2, 4)

    def __init__(self, backbone: VisionMamba, in_chans: int, out_channels: int, spec: HeadSpec):
        super().__init__()
        stride = backbone.output_stride
        if stride < 4 or stride & (stride - 1):
            raise ValueError(f"the UNETR head needs a token stride that is a power of two >= 4, got {stride}")
        self.strides = [stride >> i for i in range(int(math.log2(stride)) + 1)]  # s, s/2, ..., 1
        n_skip_levels = len(self.strides) - 1  # Vim skips at strides s .. 2
        indices = spec.indices if spec.indices is not None else default_unetr_indices(backbone.depth, n_skip_levels)
        self.indices = backbone.resolve_indices(indices)
        if not 1 <= len(self.indices) <= n_skip_levels:
            raise ValueError(f"the UNETR head takes 1..{n_skip_levels} blocks for stride {stride}, got {indices}")
        channels = spec.decoder_channels or [min(128, 16 * s) for s in self.strides]
        if len(channels) != len(self.strides):
            raise ValueError(f"decoder_channels needs {len(self.strides)} entries (strides {self.strides})")
        self.feature_norm = spec.feature_norm
        norm = spec.norm
        dim = backbone.embed_dim

        # Vim skips: deepest block at level 0 (stride s), the j-th from the deep end at level j
        self.skips = nn.ModuleList()
        for j in range(len(self.indices)):
            c = channels[j]
            chain = [_conv_bn_act(dim, c, norm=norm, kernel=1)] + [_up_bn_act(c, c, norm) for _ in range(j)]
            self.skips.append(nn.Sequential(*chain))
        # stem on the image at strides 1, 2, 4
        c1, c2, c4 = spec.stem_channels
        self.stem = nn.ModuleList(
            [_conv_bn_act(in_chans, c1, 1, norm), _conv_bn_act(c1, c2, 2, norm), _conv_bn_act(c2, c4, 2, norm)]
        )
        stem_out = dict(zip(self.STEM_STRIDES, spec.stem_channels))
        # decoder levels
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for level, s in enumerate(self.strides):
            c_in = channels[level] if level < len(self.indices) else 0
            c_in += stem_out.get(s, 0)
            if level > 0:
                self.ups.append(_up_bn_act(channels[level - 1], channels[level], norm))
                c_in += channels[level]
            self.blocks.append(
                nn.Sequential(
                    _conv_bn_act(c_in, channels[level], norm=norm),
                    _conv_bn_act(channels[level], channels[level], norm=norm),
                )
            )
        self.out = nn.Conv2d(channels[-1], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, backbone: VisionMamba) -> torch.Tensor:
        grids = backbone.forward_intermediates(x, self.indices, norm=self.feature_norm)
        skips = [self.skips[j](grids[-1 - j].to(x.dtype)) for j in range(len(grids))]  # level j <- j-th deepest
        stem, h = {}, x
        for s, conv in zip(self.STEM_STRIDES, self.stem):
            h = conv(h)
            stem[s] = h
        d = None
        for level, s in enumerate(self.strides):
            parts = [] if d is None else [self.ups[level - 1](d)]
            if level < len(skips):
                parts.append(skips[level])
            if s in stem:
                parts.append(stem[s])
            d = self.blocks[level](torch.cat(parts, dim=1))
        return self.out(d)


class PointwiseHead(nn.Module):
    """A per-pixel MLP (no spatial context): channels -> hidden (ReLU) -> outputs, with fixed-seed random weights.

    Written as explicit per-channel multiply-adds rather than a 1x1 conv so every pixel is computed with the
    same float operations in the same order whatever the image size: tiled output equals whole-image output
    bit for bit.
    """

    def __init__(self, in_chans: int, out_channels: int, hidden: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(hidden, in_chans, generator=g) / math.sqrt(in_chans))
        self.b1 = nn.Parameter(torch.randn(hidden, generator=g) * 0.1)
        self.w2 = nn.Parameter(torch.randn(out_channels, hidden, generator=g) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.randn(out_channels, generator=g) * 0.1)

    @staticmethod
    def _pointwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = bias.to(x.dtype).view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:])
        for c in range(x.shape[1]):
            out = out + weight[:, c].to(x.dtype).view(1, -1, 1, 1) * x[:, c : c + 1]
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self._pointwise_linear(x, self.w1, self.b1))

    def forward(self, x: torch.Tensor, backbone: None = None) -> torch.Tensor:
        return self._pointwise_linear(self.features(x), self.w2, self.b2)
