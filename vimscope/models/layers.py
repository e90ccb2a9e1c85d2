"""Small building blocks of Vision Mamba: RMSNorm, stochastic depth, patch embedding, position-embedding resampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RMSNorm", "DropPath", "PatchEmbed", "resample_abs_pos_embed", "class_token_index"]


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 whatever the input (as mamba's Triton norm).

    The result has the weight's dtype, so a bf16 model gets bf16 activations and a float32 model under
    autocast gets float32 ones (the linear layers then cast for themselves).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return y.to(self.weight.dtype)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or at rate 0)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class PatchEmbed(nn.Module):
    """Conv patch embedding, (B, C, H, W) -> (B, gh * gw, D) tokens in row-major order, plus the grid (gh, gw)."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return (height - self.patch_size) // self.stride + 1, (width - self.patch_size) // self.stride + 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)  # [B, D, gh, gw]
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


def class_token_index(num_patches: int) -> int:
    """Where hustvl/Vim inserts its class token: the middle of the patch sequence (M // 2)."""
    return num_patches // 2


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    *,
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a middle-class-token position embedding (1, M + 1, D) to another patch grid.

    The class row sits at index M // 2 (not 0, which is what the official repository's resize assumes): it is
    taken out, the (gh, gw) patch grid is resampled bicubically (non-square allowed) and the class row is put
    back at the new middle, (gh' * gw') // 2. The same grid returns the input unchanged. ``old_grid``
    defaults to the square grid M = g * g.
    """
    _, rows, dim = pos_embed.shape
    num_patches = rows - 1
    if old_grid is None:
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(f"pos_embed with {num_patches} patch rows is not square; pass old_grid")
        old_grid = (side, side)
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid[0] * old_grid[1] != num_patches:
        raise ValueError(f"old_grid {old_grid} does not match {num_patches} patch rows")
    if old_grid == new_grid:
        return pos_embed
    cls_at = class_token_index(num_patches)
    cls_row = pos_embed[:, cls_at : cls_at + 1]
    patches = torch.cat([pos_embed[:, :cls_at], pos_embed[:, cls_at + 1 :]], dim=1)
    grid = patches.reshape(1, *old_grid, dim).permute(0, 3, 1, 2).float()  # [1, D, gh, gw]
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=antialias)
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    new_at = class_token_index(new_grid[0] * new_grid[1])
    return torch.cat([patches[:, :new_at], cls_row, patches[:, new_at:]], dim=1)
