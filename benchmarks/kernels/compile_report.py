"""Compile every kernel of bimamba_inner (forward + backward) for a GPU target without a GPU, and report registers,
spills, local memory and a static SASS instruction mix per kernel: the compiler's resource report costs no device
time.

Runs the real orchestration on small CPU tensors with kernel launches replaced by ``triton.compile`` for the target
(sm_90 by default), specialised exactly as a GPU launch would be (Triton's own argument binder: pointer alignment
and integer divisibility), then ``cuobjdump`` on the cubin. Any launch key of ``config.DEFAULTS`` can be set:

    python -m benchmarks.kernels.compile_report --dtype bf16 --block-e 32 --block-t 16 --num-warps 4
    python -m benchmarks.kernels.compile_report --elast 1 --block-t 4 --bwd-elast 1 --bwd-block-t 2 --json out.json

The instruction mix is static (each instruction counted once, loops not unrolled by trip count): it compares
variants of one kernel (MUFU.EX2 vs FFMA after ``--exp-poly``, SHFL and BAR after ``--elast``), not run time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import torch

# opcode classes of the static mix (SASS mnemonic prefix -> column)
MIX_CLASSES = {
    "MUFU.EX2": "mufu_ex2",
    "MUFU": "mufu_other",
    "SHFL": "shfl",
    "BAR": "bar",
    "LDS": "lds",
    "STS": "sts",
    "LDG": "ldg",
    "STG": "stg",
    "LDL": "ldl",
    "STL": "stl",
    "FFMA": "ffma",
    "FMUL": "fmul",
    "FADD": "fadd",
    "FSEL": "fsel",
    "FMNMX": "fmnmx",
}


def cuobjdump_path() -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def cubin_report(cubin: bytes, *, mix: bool = True) -> dict:
    """Registers, stack, shared and local memory of a cubin, and (mix) its static SASS instruction counts."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        usage = subprocess.run(
            [str(cuobjdump_path()), "--dump-resource-usage", f.name], capture_output=True, text=True
        ).stdout
        out = {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
        if mix:
            sass = subprocess.run([str(cuobjdump_path()), "-sass", f.name], capture_output=True, text=True).stdout
            out["mix"] = sass_mix(sass)
    finally:
        os.unlink(f.name)
    return out


def sass_mix(sass: str) -> dict:
    """Static counts of the instruction classes in MIX_CLASSES, plus the total."""
    counts: Counter = Counter()
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if not m:
            continue
        op = m.group(1)
        counts["total"] += 1
        for prefix, name in MIX_CLASSES.items():
            if op == prefix or op.startswith(prefix + "."):
                counts[name] += 1
                break
    return dict(counts)


def compile_only(arch: int, report: dict, *, mix: bool = True):
    """Patch JITFunction.run: bind and specialise the arguments as a launch would, compile for the target, record
    resources, launch nothing."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binders: dict = {}

    def run(self, *args, grid, warmup, **kwargs):
        kwargs["debug"] = kwargs.get("debug", self.debug) or knobs.runtime.debug
        kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
        if self not in binders:
            binders[self] = create_function_from_signature(self.signature, self.params, backend)
        bound_args, specialization, options = binders[self](*args, **kwargs)
        options, signature, constexprs, attrs = self._pack_args(backend, kwargs, bound_args, specialization, options)
        key = (self.fn.__name__, str(specialization), str(options))
        if key in report:
            return None
        compiled = triton.compile(
            ASTSource(self, signature, constexprs, attrs), target=target, options=options.__dict__
        )
        consts = {k[0] if isinstance(k, tuple) else k: v for k, v in constexprs.items()}
        names = [p.name for p in self.params]
        report[key] = {
            "kernel": self.fn.__name__,
            "num_warps": compiled.metadata.num_warps,
            "num_stages": compiled.metadata.num_stages,
            "constexprs": {names[i]: v for i, v in consts.items() if isinstance(i, int)},
            **cubin_report(compiled.asm["cubin"], mix=mix),
        }
        return None

    JITFunction.run = run


def report_for(launch: dict, *, dtype: str = "bf16", channels: int = 384, rank: int = 12, length: int = 1000,
               batch: int = 2, arch: int = 90, mix: bool = True) -> list[dict]:  # fmt: skip
    """Compile the kernels one forward + backward of ``bimamba_inner`` launches with these launch keys."""
    os.environ.pop("TRITON_INTERPRET", None)
    report: dict = {}
    compile_only(arch, report, mix=mix)
    from vimscope_kernels.bimamba import bwd, fwd, naive, params
    from vimscope_kernels.common import config

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    n_state = 16
    cfg = config.scan_config(batch, length, channels, torch.device("cpu"), **launch)
    xz = torch.zeros(batch, length, 2 * channels, dtype=torch_dtype)
    shapes = [(channels, 1, 4), (channels,), (channels, 1, 4), (channels,), (rank + 2 * n_state, channels),
              (rank + 2 * n_state, channels), (channels, rank), (channels, rank), (channels,), (channels,),
              (channels, n_state), (channels, n_state), (channels,), (channels,)]  # fmt: skip
    weights = dict(zip(naive.PARAM_NAMES, (torch.zeros(s, dtype=torch_dtype) for s in shapes)))
    p = params.stack_params(weights, channels)
    y, x_dbl, h_in = fwd.bimamba_forward(xz, p, cfg)
    bwd.bimamba_backward(xz, x_dbl, h_in, torch.zeros_like(y), p, cfg)
    return list(report.values())


def main(argv=None) -> int:
    from vimscope_kernels.common import config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--channels", type=int, default=384)
    ap.add_argument("--rank", type=int, default=12)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    for key in config.DEFAULTS:
        ap.add_argument("--" + key.replace("_", "-"), type=int, help=f"launch key {key} (booleans: 0/1)")
    args = ap.parse_args(argv)
    launch = {k: getattr(args, k) for k in config.DEFAULTS if getattr(args, k) is not None}
    launch.setdefault("chunk_len", 256)
    rows = report_for(launch, dtype=args.dtype, channels=args.channels, rank=args.rank, length=args.length,
                      arch=args.arch)  # fmt: skip
    print(f"{args.dtype} E={args.channels} launch={launch}")
    for row in rows:
        mix = row.get("mix", {})
        shown = " ".join(
            f"{k}={mix[k]}" for k in ("mufu_ex2", "ffma", "shfl", "bar", "lds", "sts", "total") if k in mix
        )
        print(
            f"  {row['kernel']:26s} warps={row['num_warps']} stages={row['num_stages']} regs={row.get('reg')} "
            f"stack={row.get('stack')} shared={row.get('shared')} | {shown}"
        )
    if args.json:
        args.json.write_text(json.dumps({"launch": launch, "dtype": args.dtype, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
