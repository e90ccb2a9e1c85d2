"""The Vim v2 block: residual add -> RMSNorm -> bidirectional Mamba mixer, residual stream in float32.

Parameter names, shapes, creation order and initialisation follow hustvl/Vim's ``Mamba(bimamba_type="v2")``
and ``Block(fused_add_norm=True, residual_in_fp32=True)``, so official checkpoints load strictly and a model
created after ``torch.manual_seed(s)`` draws the same random numbers as the official code.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from vimscope_kernels import add_rmsnorm, bimamba_inner

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

    The scan, the convs and the dt path compute in float32 with autocast off (Vim gives NaN losses under plain
    fp16); in_proj and out_proj follow autocast, and on CUDA the kernels read in_proj's bf16 output and write a
    bf16 y for out_proj directly (no casts or copies between the three).
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

    def _scan_params(self) -> tuple[torch.Tensor, ...]:
        """The 14 mixer weights in bimamba_inner's order, float32. Without gradients the float32 copies are made
        once and kept until a weight changes (its version counter moves): a bf16 model then launches no casts
        per forward (measured on the H100: 16 small copy launches per layer before)."""
        params = (
            self.conv1d.weight, self.conv1d.bias, self.conv1d_b.weight, self.conv1d_b.bias,
            self.x_proj.weight, self.x_proj_b.weight, self.dt_proj.weight, self.dt_proj_b.weight,
            self.dt_proj.bias, self.dt_proj_b.bias, self.A_log, self.A_b_log, self.D, self.D_b,
        )  # fmt: skip
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return tuple(p.float() for p in params)
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        cached = getattr(self, "_scan_params_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, tuple(p.detach().float() for p in params))
            self._scan_params_cache = cached
        return cached[1]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden)  # [B, L, 2E], bf16 under autocast
        with torch.autocast(device_type=xz.device.type, enabled=False):
            # CUDA: the kernels read xz in its own dtype (computing in fp32 inside) and write y in it: no cast or
            # copy between in_proj, the mixer and out_proj. Elsewhere the reference / CPU path takes fp32.
            y = bimamba_inner(xz if xz.is_cuda else xz.float(), *self._scan_params())  # [B, L, E]
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

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, *, inplace: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inplace: without gradients, the norm writes over ``hidden`` and the new residual over ``residual`` (the
        backbone's own stream, which it hands over): a block then holds no second copy of either."""
        # one fused kernel on CUDA without gradients (residual and hidden read once), else the same in PyTorch
        hidden = hidden if residual is None else self.drop_path(hidden)
        normed, residual = add_rmsnorm(hidden, residual, self.norm.weight, self.norm.eps, inplace=inplace)
        return self.mixer(normed), residual
