"""The SSD-mixer Vim (family ``vim_ssd``): Vim's backbone with a bidirectional Mamba-2 (SSD) mixer.

Everything around the mixer is Vim's (``VisionMamba``): patch embedding, class token in the middle of the
sequence, absolute position embedding resampled per tile, blocks of residual add -> RMSNorm -> mixer with a
float32 residual stream, the final norm, ``forward_features`` / ``forward_intermediates`` and the dense heads.
Only the mixer differs; it is ours to choose because these models are trained from scratch (official Vim
checkpoints keep the ``vim`` family). The mixer, per block:

    in_proj: D -> [z (E), x (E), B (G N), C (G N), dt (2 H)]       one bf16 GEMM (width padded to 16)
    y = (ssd_fwd(x) + ssd_bwd(x) + D x) * silu(z)                 ``vimscope_kernels`` bi_ssd, one op
    out_proj: E -> D

with E = expand * D split into H heads of ``headdim`` channels, a scalar decay per head and direction, and B, C
of ``d_state`` shared by the heads of a group and by both directions (the directions have their own dt and A).
The two causal SSDs are summed, as Vim's two scans are. No depthwise conv: a 1-D conv over the raster order
only mixes a token with its left and right neighbours, costs a pass over the activations in each direction,
and the bidirectional SSD already mixes the whole sequence (see docs/kernels.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from vimscope_kernels import bi_ssd

from vimscope.config import ModelSpec, from_dict
from vimscope.errors import ConfigError, ModelError
from vimscope.models.arch import parse_head
from vimscope.models.families import register_family
from vimscope.models.segmentation import dense_model
from vimscope.models.vim import VisionMamba

__all__ = ["VimSSDArch", "SSDMixer", "VimSSD", "build_vim_ssd", "vim_ssd_contract"]


@dataclass
class VimSSDArch:
    """Arguments of ``VimSSD``: Vim's geometry fields plus the SSD mixer's (heads, state, groups)."""

    img_size: int | list[int] = field(default_factory=lambda: [224, 224])
    patch_size: int = 16
    stride: int = 16
    embed_dim: int = 192
    depth: int = 24
    expand: int = 2  # inner width E = expand * embed_dim
    headdim: int = 64  # channels per head: E / headdim heads
    d_state: int = 64  # N: state size of every head
    ngroups: int = 1  # B and C are shared by the heads of a group
    in_chans: int = 3
    num_classes: int = 0
    norm_eps: float = 1e-5
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int):
            self.img_size = [self.img_size, self.img_size]
        self.img_size = list(self.img_size)

    def validate(self) -> None:
        for name in ("patch_size", "stride", "embed_dim", "depth", "expand", "headdim", "d_state", "ngroups"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"arch.{name} must be positive, got {getattr(self, name)}")
        if self.d_inner % self.headdim:
            raise ConfigError(f"arch.headdim {self.headdim} must divide the inner width {self.d_inner}")
        if self.nheads % self.ngroups:
            raise ConfigError(f"arch.ngroups {self.ngroups} must divide the {self.nheads} heads")
        if len(self.img_size) != 2 or min(self.img_size) < self.patch_size or self.stride > self.patch_size:
            raise ConfigError(f"arch.img_size must be [height, width] >= patch_size >= stride, got {self.img_size}")
        if self.num_classes < 0:
            raise ConfigError("arch.num_classes must be >= 0")

    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def grid_size(self) -> tuple[int, int]:
        h, w = self.img_size
        return (h - self.patch_size) // self.stride + 1, (w - self.patch_size) // self.stride + 1


def parse_ssd_arch(data: dict | VimSSDArch | None) -> VimSSDArch:
    if isinstance(data, VimSSDArch):
        return data
    return from_dict(VimSSDArch, data or {}, prefix="arch.")


class SSDMixer(nn.Module):
    """in_proj -> bidirectional SSD with D skip and silu(z) gate -> out_proj (see the module docstring).

    Initialisation follows Mamba-2: A = -exp(A_log) with A uniform in [1, 16], softplus(dt_bias) log-uniform in
    [1e-3, 1e-1], D = 1; per direction for A and dt_bias.
    """

    def __init__(self, d_model: int, d_inner: int, headdim: int, d_state: int, ngroups: int):
        super().__init__()
        self.d_inner, self.headdim, self.d_state, self.ngroups = d_inner, headdim, d_state, ngroups
        self.nheads = d_inner // headdim
        # [z, x, B, C, dt] padded to a multiple of 16 columns: rows 16-byte aligned in bf16, so the GEMM and the
        # kernels' row loads vectorise (908 columns for vim_ssd_tiny ran an align2 GEMM on an H100); the padding
        # columns are never read
        width = 2 * d_inner + 2 * ngroups * d_state + 2 * self.nheads
        self.in_proj = nn.Linear(d_model, -(-width // 16) * 16, bias=False)
        dt = torch.exp(torch.rand(2, self.nheads) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
        dt = dt.clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(2, self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # None: Triton on CUDA; on CPU the compiled scan, or the chunked form when gradients are needed
        self.backend: str | None = None
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        E, H, P, GN = self.d_inner, self.nheads, self.headdim, self.ngroups * self.d_state
        zxbcdt = self.in_proj(hidden)  # [Bt, L, 2E + 2GN + 2H]
        z = zxbcdt[..., :E].unflatten(-1, (H, P))
        x = zxbcdt[..., E : 2 * E].unflatten(-1, (H, P))
        B = zxbcdt[..., 2 * E : 2 * E + GN].unflatten(-1, (self.ngroups, self.d_state))
        C = zxbcdt[..., 2 * E + GN : 2 * E + 2 * GN].unflatten(-1, (self.ngroups, self.d_state))
        dt = zxbcdt[..., 2 * E + 2 * GN : 2 * E + 2 * GN + 2 * H].unflatten(-1, (2, H))
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            y = bi_ssd(
                x,
                dt,
                -torch.exp(self.A_log.float()),
                B,
                C,
                self.D.float(),
                z=z,
                dt_bias=self.dt_bias.float(),
                backend=self.backend,
            )
        del zxbcdt, z, x, B, C, dt  # spent: without gradients the projection is freed before out_proj's output
        return self.out_proj(y.flatten(2))  # [Bt, L, D]


class VimSSD(VisionMamba):
    """``VisionMamba`` with ``SSDMixer`` blocks; keyword arguments are the fields of ``VimSSDArch``."""

    def __init__(self, **arch_fields):
        nn.Module.__init__(self)
        arch = parse_ssd_arch(arch_fields)
        arch.validate()
        self._build(arch, lambda a: SSDMixer(a.embed_dim, a.d_inner, a.headdim, a.d_state, a.ngroups))

    @classmethod
    def from_arch(cls, arch: VimSSDArch | dict) -> VimSSD:
        arch = parse_ssd_arch(arch)
        return cls(**{f: getattr(arch, f) for f in arch.__dataclass_fields__})


def vim_ssd_contract(spec: ModelSpec) -> None:
    """arch and head validated and completed (no torch); size multiple = the patch stride."""
    import dataclasses

    head = parse_head(spec.head)
    if head.type == "pointwise":
        raise ConfigError("head.type pointwise needs family pointwise")
    arch = parse_ssd_arch(spec.arch)
    arch.validate()
    spec.head = dataclasses.asdict(head)
    spec.arch = dataclasses.asdict(arch)
    spec.size_multiple = arch.stride


def build_vim_ssd(spec: ModelSpec) -> nn.Module:
    """The ``vim_ssd`` family: ``VimSSD`` + a dense head (or the classifier for ``head.type: classifier``)."""
    arch = parse_ssd_arch(spec.arch)
    if arch.in_chans != spec.in_chans:
        raise ModelError(f"model {spec.name}: arch.in_chans {arch.in_chans} != in_chans {spec.in_chans}")
    if parse_head(spec.head).type == "classifier":
        model = VimSSD.from_arch(arch)
        model.spec = spec
        return model
    return dense_model(spec, VimSSD.from_arch(arch))  # the same heads as the vim family


register_family("vim_ssd", build_vim_ssd, contract=vim_ssd_contract, arch=VimSSDArch)
