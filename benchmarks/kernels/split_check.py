"""GPU check of the conv + x_proj's two forms on 16-bit input (vim_tiny's shapes): the split form (conv kernel +
cuBLAS GEMM) against the fused Triton kernel and against float64 (with u rounded to bf16, as both form it).

    python -m benchmarks.kernels.split_check          # on the GPU machine; prints both errors and whether equal
"""

from __future__ import annotations

import argparse


def reference(x, w, b, xp):
    """x_dbl [2, B, L, P] in float64: causal conv + SiLU per direction (the reverse one on the flipped sequence),
    u rounded to bf16, then x_proj."""
    import torch
    import torch.nn.functional as F

    k, channels = w.shape[-1], x.shape[-1]
    out = []
    for d in range(2):
        xd = x.double().transpose(1, 2)
        xd = xd.flip(-1) if d else xd
        u = F.silu(F.conv1d(F.pad(xd, (k - 1, 0)), w[d].double()[:, None, :], b[d].double(), groups=channels))
        u = u.flip(-1) if d else u
        out.append(u.transpose(1, 2).bfloat16().double() @ xp[d].double().t())
    return torch.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=4097)
    args = ap.parse_args(argv)
    import torch
    from vimscope_kernels.bimamba.fwd import conv_xproj_forward

    torch.manual_seed(0)
    e, k, p = 384, 4, 44
    x = torch.randn(args.batch, args.length, e, device="cuda").bfloat16()
    w = (torch.randn(2, e, k, device="cuda") * 0.5).bfloat16()
    b = (torch.randn(2, e, device="cuda") * 0.1).bfloat16()
    xp = (torch.randn(2, p, e, device="cuda") * 0.05).bfloat16()
    ref = reference(x, w, b, xp)
    outs = {mode: conv_xproj_forward(x, w, b, xp, mode=mode) for mode in ("fused", "split")}
    for mode, out in outs.items():
        print(mode, "relative error vs float64:", ((out.double() - ref).norm() / ref.norm()).item())
    print("split identical to fused:", torch.equal(outs["fused"], outs["split"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
