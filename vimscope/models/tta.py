"""Test-time augmentation: a dense model's maps averaged over flips and 90° rotations of its input.

Nuclei and building maps do not depend on the slide's orientation, so predicting on the 8 transforms of the
dihedral group (4 on non-square tiles: the flips) and mapping each prediction back gives an average that is
steadier at object edges, at 8x (4x) the model's time. Off by default (``vimscope segment --tta``); what it buys
is measured on the validation images (docs/models.md).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TestTimeAugmented", "dihedral"]


def dihedral(square: bool) -> list[tuple[int, bool]]:
    """(quarter turns, horizontal flip) of each transform: the 8 of the square, or the 4 flips of a rectangle."""
    if square:
        return [(k, f) for f in (False, True) for k in range(4)]
    return [(0, False), (0, True), (2, False), (2, True)]  # a half turn is the two flips together


def _forward(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def _inverse(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    if turns:
        y = torch.rot90(y, -turns, dims=(-2, -1))
    return y.flip(-1) if flip else y


class TestTimeAugmented(nn.Module):
    """``module`` run on every transform of the batch; each dense output (B, C, H, W) mapped back and averaged
    (logits and extra maps alike, before any softmax: the mean of logits is the geometric mean of the class
    probabilities). ``features`` and ``spec`` are the wrapped model's."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.spec = getattr(module, "spec", None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.features(x)

    def forward(self, x: torch.Tensor):
        transforms = dihedral(x.shape[-1] == x.shape[-2])
        total: dict[str, torch.Tensor] | None = None
        plain = True
        for turns, flip in transforms:
            y = self.module(_forward(x, turns, flip))
            plain = not isinstance(y, dict)
            maps = {"logits": y} if plain else y
            back = {k: _inverse(v, turns, flip).float() for k, v in maps.items()}
            total = back if total is None else {k: total[k] + back[k] for k in total}
        mean = {k: (v / len(transforms)).to(maps[k].dtype) for k, v in total.items()}
        return mean["logits"] if plain else mean
