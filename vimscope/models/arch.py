"""The Vision Mamba architecture as data: one validated dataclass instead of hustvl/Vim's ``if_*`` flags.

Everything that fixes the shapes of a ``VisionMamba`` lives here, so a model config (YAML), a vimscope
checkpoint's metadata and an official checkpoint's inferred architecture are the same kind of object.
No torch here: specs are read by faces that must not import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vimscope.config import from_dict
from vimscope.errors import ConfigError

__all__ = ["VimArch", "HeadSpec", "UNetArch", "parse_arch", "parse_head", "parse_unet_arch", "HEAD_TYPES"]

HEAD_TYPES = ("classifier", "features", "linear", "unetr", "pointwise")


@dataclass
class VimArch:
    """Arguments of ``VisionMamba`` (bidirectional v2 blocks, middle class token, absolute position embedding)."""

    # training (height, width): the grid the stored position embedding describes
    img_size: int | list[int] = field(default_factory=lambda: [224, 224])
    patch_size: int = 16
    stride: int = 16  # patch stride; < patch_size gives overlapping patches (hustvl's "stride8" models)
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(embed_dim / 16), as mamba's "auto"
    in_chans: int = 3
    num_classes: int = 0  # classifier on the class token (1000 for ImageNet); 0: no classifier
    norm_eps: float = 1e-5
    drop_rate: float = 0.0  # dropout after the position embedding
    drop_path_rate: float = 0.0  # stochastic depth, linearly increasing over blocks as in hustvl/Vim

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int):
            self.img_size = [self.img_size, self.img_size]
        self.img_size = list(self.img_size)

    def validate(self) -> None:
        positive = ("patch_size", "stride", "embed_dim", "depth", "d_state", "d_conv", "expand", "in_chans")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"arch.{name} must be positive, got {getattr(self, name)}")
        if len(self.img_size) != 2 or min(self.img_size) < self.patch_size:
            raise ConfigError(f"arch.img_size must be [height, width] >= patch_size, got {self.img_size}")
        if self.stride > self.patch_size:
            raise ConfigError(f"arch.stride ({self.stride}) must not exceed patch_size ({self.patch_size})")
        if self.num_classes < 0 or (self.dt_rank is not None and self.dt_rank <= 0):
            raise ConfigError("arch.num_classes must be >= 0 and arch.dt_rank positive")
        grid = self.grid_size
        if grid[0] < 1 or grid[1] < 1:
            raise ConfigError(f"arch.img_size {self.img_size} gives an empty patch grid")

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.embed_dim / 16)

    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid of the training size: the grid the stored position embedding describes."""
        h, w = self.img_size
        return (h - self.patch_size) // self.stride + 1, (w - self.patch_size) // self.stride + 1


def parse_arch(data: dict | VimArch | None) -> VimArch:
    """Validate an ``arch`` mapping (unknown keys and wrong types are a ConfigError naming the key)."""
    if isinstance(data, VimArch):
        return data
    return from_dict(VimArch, data or {}, prefix="arch.")


@dataclass
class HeadSpec:
    """What sits on top of the backbone (``ModelSpec.head``). Fields not used by a type keep their defaults.

    - ``classifier``: the official ImageNet-style linear layer on the class token (``arch.num_classes``).
    - ``features``: the token grid itself, (B, D, H/s, W/s).
    - ``linear``: Segmenter's linear decoder (1x1 conv on the final tokens, bilinear upsampling).
    - ``unetr``: UNETR-style decoder over the blocks in ``indices`` plus a conv stem at strides 1, 2, 4.
    - ``pointwise``: no backbone at all, a per-pixel MLP of 1x1 layers (exact-stitching tests).

    Dense heads output ``len(classes)`` logits plus one map per ``extra_maps`` entry (e.g. boundary: 1).
    """

    type: str = "features"
    extra_maps: dict = field(default_factory=dict)  # name -> channels, e.g. {boundary: 1, distance: 1}
    indices: list[int] | None = None  # unetr: blocks whose residual stream feeds the decoder (shallow -> deep)
    decoder_channels: list[int] | None = None  # unetr: channels per decoder level, coarse (stride s) -> fine (1)
    stem_channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # unetr: stem at strides 1, 2, 4
    norm: str = "batch"  # unetr: "batch" (per-pixel affine at inference, so tiles stitch) or "none"
    feature_norm: bool = True  # unetr: apply the final RMSNorm to intermediate token grids
    hidden: int = 8  # pointwise: hidden channels
    seed: int = 0  # pointwise: fixed seed of its random init, so tests are reproducible

    def validate(self) -> None:
        if self.type not in HEAD_TYPES:
            raise ConfigError(f"head.type must be one of {', '.join(HEAD_TYPES)}, got {self.type!r}")
        for name, channels in self.extra_maps.items():
            if name in ("logits", "features") or not isinstance(channels, int) or channels <= 0:
                raise ConfigError(f"head.extra_maps: {name!r} needs a positive channel count and another name")
        if self.norm not in ("batch", "none"):
            raise ConfigError(f"head.norm must be 'batch' or 'none', got {self.norm!r}")
        if len(self.stem_channels) != 3 or min(self.stem_channels) <= 0:
            raise ConfigError("head.stem_channels needs three positive channel counts (strides 1, 2, 4)")
        if self.hidden <= 0:
            raise ConfigError("head.hidden must be positive")


def parse_head(data: dict | HeadSpec | None) -> HeadSpec:
    if isinstance(data, HeadSpec):
        return data
    return from_dict(HeadSpec, data or {}, prefix="head.")


@dataclass
class UNetArch:
    """Arguments of the U-Net baseline: ``depth`` 2x downsamplings from ``base`` channels (doubling each level)."""

    base: int = 32
    depth: int = 4

    def validate(self) -> None:
        if self.base <= 0 or not 1 <= self.depth <= 8:
            raise ConfigError(f"arch: the U-Net needs base > 0 and depth 1-8, got base {self.base}, depth {self.depth}")

    @property
    def size_multiple(self) -> int:
        return 2**self.depth


def parse_unet_arch(data: dict | UNetArch | None) -> UNetArch:
    if isinstance(data, UNetArch):
        return data
    return from_dict(UNetArch, data or {}, prefix="arch.")
