"""A plain U-Net (Ronneberger et al. 2015, with batch norm and bilinear upsampling): the baseline the Vim models
are compared with, trained by the same loop on the same data, and with the same output contract
(``forward(x) -> {"logits": (B, K, H, W), "boundary"/"distance": (B, 1, H, W)}``, attribute ``spec``).

Its ``ModelSpec`` has ``family: unet`` and ``arch: {base: 32, depth: 4}`` (``UNetArch``); ``head.extra_maps``
(e.g. ``{boundary: 1}``) lists the extra maps, as for the Vim heads. Like the timm models it splits
``forward`` into ``forward_features`` (the decoder's full-resolution map) and ``forward_head``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models.arch import parse_unet_arch

__all__ = ["UNet", "build_unet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of ``depth`` 2x downsamplings from ``base`` channels (doubling), mirrored decoder with skips."""

    def __init__(self, in_chans: int, num_classes: int, *, base: int = 32, depth: int = 4, maps: list[str] = ()):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_chans, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.heads = nn.ModuleDict({"logits": nn.Conv2d(widths[0], num_classes, 1)})
        for name in maps:
            self.heads[name] = nn.Conv2d(widths[0], 1, 1)
        self.size_multiple = 2**depth

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, base, H, W): the last decoder level, before the 1x1 output convolutions."""
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ModelError(f"U-Net input height and width must be multiples of {self.size_multiple}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x

    def forward_head(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(x) for name, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def build_unet(spec: ModelSpec) -> UNet:
    """The ``unet`` family (its contract, ``families.unet_contract``, has checked ``spec``)."""
    arch = parse_unet_arch(spec.arch)
    if not spec.classes:
        raise ModelError(f"model {spec.name}: a U-Net needs its classes")
    maps = list((spec.head.get("extra_maps") or {}).keys())
    model = UNet(spec.in_chans, len(spec.classes), base=arch.base, depth=arch.depth, maps=maps)
    model.spec = spec
    return model
