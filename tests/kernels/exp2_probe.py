"""A one-line Triton kernel around ``exp2_poly`` (a module of its own: a jit kernel resolves helpers as globals)."""

from __future__ import annotations

import triton
import triton.language as tl
from vimscope_kernels.common.triton_helpers import exp2_poly


@triton.jit
def exp2_poly_kernel(p_x, p_y, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(p_y + o, exp2_poly(tl.load(p_x + o, mask=o < n, other=0.0)), mask=o < n)
