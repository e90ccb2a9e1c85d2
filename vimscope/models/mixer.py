"""The Vim v2 block: residual add -> RMSNorm -> bidirectional Mamba mixer, residual stream in float32.

Parameter names, shapes, creation order and initialisation follow hustvl/Vim's ``Mamba(bimamba_type="v2")``
and ``Block(fused_add_norm=True, residual_in_fp32=True)``, so official checkpoints load strictly and a model
created after ``torch.manual_seed(s)`` draws the same random numbers as the official code.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from vimscope_kernels import bimamba_inner

from vimscope.models.layers import DropPath, RMSNorm

__all__ = ["BiMambaMixer", "VimBlock"]


def _dt_bias(d_inner: int, dt_min: float = 1e-3, dt_max: float = 1e-1, floor: float = 1e-4) -> torch.Tensor:
    """Inverse softplus of a log-uniform sample in [dt_min, dt_max], so softplus(bias) starts in that range."""
    dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def _a_log(d_inner: int, d_state: int) -> torch.Tensor:
    """S4D-real initialisation: A = -(1, 2, ..., N) for every channel, stored as log."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)).contiguous()


class BiMambaMixer(nn.Module):
    """Bidirectional (v2) Mamba mixer: in_proj -> (forward scan + backward scan) / 2 -> out_proj.

    The scan, the convs and the dt path run in float32 with autocast off (Vim gives NaN losses under plain
    fp16); in_proj and out_proj follow autocast, so bf16 autocast speeds up the matmuls only.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        d_inner = self.d_inner

        # creation order = hustvl/Vim's Mamba.__init__ (the random draws depend on it)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        dt_std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(_dt_bias(d_inner))
        self.dt_proj.bias._no_reinit = True
        self.A_log = nn.Parameter(_a_log(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_b_log = nn.Parameter(_a_log(d_inner, d_state))
        self.conv1d_b = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj_b = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        # hustvl/Vim leaves dt_proj_b at the default init and its bias is then zeroed with the other biases
        self.dt_proj_b = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.D_b = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        for p in (self.A_log, self.A_b_log, self.D, self.D_b):
            p._no_weight_decay = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden)  # [B, L, 2E]
        with torch.autocast(device_type=xz.device.type, enabled=False):
            y = bimamba_inner(
                xz.float(),
                self.conv1d.weight.float(),
                self.conv1d.bias.float(),
                self.conv1d_b.weight.float(),
                self.conv1d_b.bias.float(),
                self.x_proj.weight.float(),
                self.x_proj_b.weight.float(),
                self.dt_proj.weight.float(),
                self.dt_proj_b.weight.float(),
                self.dt_proj.bias.float(),
                self.dt_proj_b.bias.float(),
                self.A_log.float(),
                self.A_b_log.float(),
                self.D.float(),
                self.D_b.float(),
            )  # [B, L, E]
        if not torch.is_autocast_enabled(y.device.type):
            y = y.to(self.out_proj.weight.dtype)
        return self.out_proj(y)


class VimBlock(nn.Module):
    """hidden, residual -> (mixer(norm(residual + drop_path(hidden))), residual + drop_path(hidden)).

    This is mamba's fused add + RMSNorm with ``prenorm=True, residual_in_fp32=True``: the first block gets
    ``residual=None`` and uses the embeddings themselves as the residual; the residual is always float32.
    """

    def __init__(self, dim: int, mixer: BiMambaMixer, eps: float = 1e-5, drop_path: float = 0.0):
        super().__init__()
        self.mixer = mixer
        self.norm = RMSNorm(dim, eps=eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden.float() if residual is None else residual + self.drop_path(hidden).float()
        return self.mixer(self.norm(residual)), residual
