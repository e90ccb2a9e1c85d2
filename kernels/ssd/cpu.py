"""The chunked form of the bidirectional SSD in plain PyTorch: the op's CPU path (inference and autograd).

Same function as ``naive.bi_ssd_ref`` at O(L * Q) instead of O(L^2): the sequence is cut into chunks of Q tokens;
inside a chunk the outputs are a masked (Q x Q) matrix product, across chunks a (N x P) state per head is passed
once per chunk. The backward direction is the same computation with the in-chunk cumulative sums taken from the
right (a reverse cumsum) and the states passed from the last chunk to the first, so nothing is flipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bi_ssd_chunked", "ssd_direction_chunked"]


def _chunks(t: torch.Tensor, q: int) -> torch.Tensor:
    """(Bt, L, ...) -> (Bt, L / Q, Q, ...), zero padded at the end (a padded token has delta = 0: no effect)."""
    pad = -t.shape[1] % q
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    return t.reshape(t.shape[0], -1, q, *t.shape[2:])


def ssd_direction_chunked(
    x: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor, reverse: bool, q: int
) -> torch.Tensor:
    """One direction. x: (Bt, L, H, P); delta, a: (Bt, L, H); B, C: (Bt, L, G, N); returns (Bt, L, H, P).

    Heads are viewed as (G, R) with R = H / G heads per group, so C B^T is formed once per group, not per head.
    """
    Bt, L, H, P = x.shape
    G = B.shape[2]
    R = H // G
    xc = _chunks(x * delta[..., None], q).unflatten(3, (G, R))  # [Bt, c, Q, G, R, P]
    ac = _chunks(a, q).unflatten(3, (G, R))  # [Bt, c, Q, G, R]
    Bc, Cc = _chunks(B, q), _chunks(C, q)  # [Bt, c, Q, G, N]
    if not reverse:
        cum = torch.cumsum(ac, dim=2)  # exponent from the chunk start through token t
        edge = cum[:, :, -1:]  # decay across the whole chunk
        keep = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    else:
        cum = torch.flip(torch.cumsum(torch.flip(ac, [2]), dim=2), [2])  # a[t..chunk end]
        edge = cum[:, :, :1]
        keep = torch.ones(q, q, dtype=torch.bool, device=x.device).triu()
    cum_h = cum.permute(0, 1, 3, 4, 2)  # [Bt, c, G, R, Q]
    seg = cum_h[..., :, None] - cum_h[..., None, :]  # [..., Q(t), Q(s)]: a[s+1..t] (reverse: a[t..s-1])
    decay = torch.where(keep, seg, torch.full_like(seg, float("-inf"))).exp()
    scores = torch.einsum("bctgn,bcsgn->bcgts", Cc, Bc)[:, :, :, None] * decay  # [Bt, c, G, R, Q, Q]
    y = torch.einsum("bcgrts,bcsgrp->bctgrp", scores, xc)
    # each chunk's own contribution to the state it hands on (to the next chunk, or the previous one in reverse)
    xw = xc * (edge - cum).exp()[..., None]
    local = torch.einsum("bcsgn,bcsgrp->bcgrnp", Bc, xw)  # [Bt, c, G, R, N, P]
    carry = edge[:, :, 0].exp()[..., None, None]  # [Bt, c, G, R, 1, 1]
    states = torch.empty_like(local)  # state entering each chunk
    h = torch.zeros_like(local[:, 0])
    order = range(local.shape[1] - 1, -1, -1) if reverse else range(local.shape[1])
    for c in order:
        states[:, c] = h
        h = carry[:, c] * h + local[:, c]
    y = y + torch.einsum("bctgn,bcgrnp->bctgrp", Cc, states) * cum.exp()[..., None]
    return y.reshape(Bt, -1, H, P)[:, :L]


def bi_ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:
    """The bidirectional SSD core (shapes in ``naive``); float32 math for half inputs, the result in x's dtype."""
    dtype = x.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    x, B, C = x.to(compute), B.to(compute), C.to(compute)
    dt = dt.to(compute) + (0 if dt_bias is None else dt_bias.to(compute))
    delta = F.softplus(dt)
    y = x * D.to(compute)[:, None]
    for direction in (0, 1):
        d = delta[:, :, direction]
        a = d * A[direction].to(compute)
        y = y + ssd_direction_chunked(x, d, a, B, C, reverse=direction == 1, q=chunk_size)
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(dtype)
