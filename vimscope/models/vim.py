"""VisionMamba: hustvl/Vim's bidirectional (v2) model with a middle class token, in one readable module.

Official behaviour kept exactly: patch embedding, class token inserted at index M // 2 of the M patch tokens,
learned absolute position embedding, ``depth`` blocks of residual add -> RMSNorm -> bidirectional mixer with
a float32 residual stream, a final add + RMSNorm, and the classifier on the class token. State-dict names are
the official ones, so official checkpoints load strictly.

Additions for dense prediction: the position embedding is resampled to whatever tile comes in (class row
kept at the middle), ``forward_features`` / ``forward_intermediates`` return token grids with the class
token removed, and models with overlapping patches (stride < patch) pad the image by (patch - stride) / 2 in
the dense path so token (i, j) is centred on the stride cell (i, j) and the grid is exactly (H/s, W/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vimscope.models.arch import VimArch, parse_arch
from vimscope.models.layers import DropPath, PatchEmbed, RMSNorm, class_token_index, resample_abs_pos_embed
from vimscope.models.mixer import BiMambaMixer, VimBlock

__all__ = ["VisionMamba"]


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """timm's truncated normal (inverse-CDF sampling, bounds in absolute units).

    Written out because torch >= 2.13 samples ``nn.init.trunc_normal_`` by rejection, which draws other
    random numbers: with this one a seeded model gets the same values as the official code.
    """

    def cdf(v: float) -> float:
        return (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        low, high = cdf(a / std), cdf(b / std)
        tensor.uniform_(2 * low - 1, 2 * high - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        return tensor.clamp_(min=a, max=b)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """timm's lecun_normal_: a standard normal truncated at +-2 std, scaled so the variance is 1 / fan_in."""
    fan_in = weight[0].numel()
    trunc_normal_(weight)
    with torch.no_grad():
        return weight.mul_(math.sqrt(1.0 / fan_in) / 0.87962566103423978)


class VisionMamba(nn.Module):
    """Vision Mamba backbone (and ImageNet-style classifier when ``num_classes`` > 0).

    Keyword arguments are the fields of ``VimArch`` (``VisionMamba(**asdict(arch))`` or ``from_arch``).
    """

    def __init__(self, **arch_fields):
        super().__init__()
        self._build(
            parse_arch(arch_fields), lambda a: BiMambaMixer(a.embed_dim, a.d_state, a.d_conv, a.expand, a.dt_rank)
        )

    def _build(self, arch, make_mixer) -> None:
        """The modules, each block's mixer ``make_mixer(arch)``, then the init: shared by the Vim-like families
        (``VimSSD`` passes its own mixer)."""
        self.arch = arch
        self.embed_dim = self.num_features = arch.embed_dim
        self.num_classes = arch.num_classes
        self.depth = arch.depth
        gh, gw = arch.grid_size

        # creation order = hustvl/Vim's VisionMamba.__init__ (the random draws depend on it)
        self.patch_embed = PatchEmbed(arch.patch_size, arch.stride, arch.in_chans, arch.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, gh * gw + 1, arch.embed_dim))
        self.pos_drop = nn.Dropout(arch.drop_rate)
        self.head = nn.Linear(arch.embed_dim, arch.num_classes) if arch.num_classes > 0 else nn.Identity()
        rates = [0.0] + torch.linspace(0, arch.drop_path_rate, arch.depth, device="cpu").tolist()
        self.layers = nn.ModuleList(
            VimBlock(arch.embed_dim, make_mixer(arch), eps=arch.norm_eps, drop_path=rates[i]) for i in range(arch.depth)
        )
        self.norm_f = RMSNorm(arch.embed_dim, eps=arch.norm_eps)
        self.drop_path = DropPath(arch.drop_path_rate)
        self._init_weights()

    @classmethod
    def from_arch(cls, arch: VimArch | dict) -> VisionMamba:
        arch = parse_arch(arch)
        return cls(**{f: getattr(arch, f) for f in arch.__dataclass_fields__})

    def _init_weights(self) -> None:
        """The paper code's init in its order: ViT-style embeddings, then Mamba's (zero biases, out_proj / sqrt(L))."""
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
        for layer in self.layers:  # GPT-2 scheme: residual-path outputs scaled by 1 / sqrt(number of residual layers)
            weight = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            with torch.no_grad():
                weight /= math.sqrt(self.depth)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    # ---- geometry -------------------------------------------------------------------------------------------

    @property
    def dense_padding(self) -> tuple[int, int]:
        """(before, after) pixels of zero padding in the dense path: 0 unless patches overlap."""
        extra = self.arch.patch_size - self.arch.stride
        return extra // 2, extra - extra // 2

    @property
    def output_stride(self) -> int:
        return self.arch.stride

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, gh * gw + 1, D): the stored embedding resampled to ``grid``, class row at the middle."""
        return resample_abs_pos_embed(self.pos_embed, grid, self.arch.grid_size)

    # ---- token path -----------------------------------------------------------------------------------------

    def _embed(self, x: torch.Tensor, dense: bool) -> tuple[torch.Tensor, tuple[int, int], int]:
        if dense and self.arch.patch_size != self.arch.stride:
            before, after = self.dense_padding
            x = F.pad(x, (before, after, before, after))
        tokens, grid = self.patch_embed(x)  # [B, M, D]
        batch, num_patches, _ = tokens.shape
        at = class_token_index(num_patches)
        cls = self.cls_token.expand(batch, -1, -1)  # torch.cat promotes, as the official code does under autocast
        tokens = torch.cat([tokens[:, :at], cls, tokens[:, at:]], dim=1)
        tokens = self.pos_drop(tokens + self.position_embedding(grid))
        return tokens, grid, at

    def _run_blocks(self, x: torch.Tensor, dense: bool, keep: set[int] | None = None, stop: int | None = None):
        """Embed and run the blocks; returns (hidden, residual, {i: residual stream after block i for i in keep},
        grid, at). Without gradients the stream is updated in place (the embedding is this frame's alone, so no
        caller holds a reference to it): peak memory is the stream plus one mixer's buffers."""
        hidden, grid, at = self._embed(x, dense)
        residual = None
        inplace = not torch.is_grad_enabled()
        kept = {}
        for i, layer in enumerate(self.layers[: stop if stop is not None else len(self.layers)]):
            hidden, residual = layer(hidden, residual, inplace=inplace)
            if keep and i in keep:
                kept[i] = residual + hidden.float()
        return hidden, residual, kept, grid, at

    def _final_norm(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.norm_f(residual + self.drop_path(hidden).float())

    def forward_tokens(self, x: torch.Tensor, *, dense: bool = False) -> tuple[torch.Tensor, tuple[int, int], int]:
        """All final-normed tokens (B, M + 1, D) with the class token at index ``at``; returns (tokens, grid, at)."""
        hidden, residual, _, grid, at = self._run_blocks(x, dense)
        return self._final_norm(hidden, residual), grid, at

    @staticmethod
    def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int], at: int) -> torch.Tensor:
        """(B, M + 1, D) with the class token at ``at`` -> (B, D, gh, gw)."""
        patches = torch.cat([tokens[:, :at], tokens[:, at + 1 :]], dim=1)
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)

    # ---- public API -----------------------------------------------------------------------------------------

    def _check_dense_input(self, x: torch.Tensor) -> None:
        s = self.arch.stride
        if x.dim() != 4 or x.shape[-2] % s or x.shape[-1] % s:
            raise ValueError(f"dense input must be (B, C, H, W) with H and W multiples of {s}, got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D, H/s, W/s): every token after the final norm, class token removed."""
        self._check_dense_input(x)
        tokens, grid, at = self.forward_tokens(x, dense=True)
        return self.tokens_to_grid(tokens, grid, at)

    features = forward_features

    def resolve_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        """None: all blocks; an int n: the last n blocks; a list: those blocks (negative counts from the end)."""
        if indices is None:
            return list(range(self.depth))
        if isinstance(indices, int):
            if not 0 < indices <= self.depth:
                raise ValueError(f"need 1..{self.depth} blocks, got {indices}")
            return list(range(self.depth - indices, self.depth))
        out = []
        for i in indices:
            j = i + self.depth if i < 0 else i
            if not 0 <= j < self.depth:
                raise ValueError(f"block index {i} out of range for depth {self.depth}")
            out.append(j)
        return out

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, *, norm: bool = False
    ) -> list[torch.Tensor]:
        """Token grids (B, D, H/s, W/s) of the residual stream after the given blocks, in the order asked.

        The residual stream after block i is what block i + 1 normalises (residual + mixer output, float32).
        ``norm=True`` applies the final RMSNorm to each, so the last block's equals ``forward_features``.
        """
        self._check_dense_input(x)
        wanted = self.resolve_indices(indices)
        _, _, kept, grid, at = self._run_blocks(x, True, keep=set(wanted), stop=max(wanted) + 1)
        outs = []
        for i in wanted:
            stream = self.norm_f(kept[i]) if norm else kept[i]
            outs.append(self.tokens_to_grid(stream, grid, at))
        return outs

    def forward_head(self, cls_features: torch.Tensor) -> torch.Tensor:
        return self.head(cls_features)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """The official model: logits (B, num_classes) from the normed class token (or that token itself)."""
        tokens, _, at = self.forward_tokens(x, dense=False)
        cls = tokens[:, at]
        return cls if return_features else self.forward_head(cls)
