"""Where a forward's peak memory is and what is alive there: one inference forward per (model, size, batch).

The peak a benchmark reports (``max_memory_allocated``) says how much, not what. This runs the forward under a
``TorchDispatchMode`` that notes, for every tensor an op returns (1 MiB or more), the module and op that made it,
and keeps weak references to them; after every op it reads the peak (CUDA: ``max_memory_allocated``; CPU: the
bytes of the live noted tensors) and, when it rises, takes a census of the noted tensors still alive (one row
per storage, the op that made it). Tensors made before the forward (weights, the input) are the resident part.

    python -m benchmarks.models.memory_peak --models vim_tiny,vim_ssd_tiny,deit_tiny_flash --sizes 1024,4096 \\
        --out peak.json                                                   # on the GPU machine, a few seconds
    python -m benchmarks.models.memory_peak --device cpu --models vim_ssd_tiny --sizes 64 --batch 2  # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import weakref
from pathlib import Path

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.models.backbone import BATCHES, build_deit, build_vim, environment, parse_sizes

MIB = 2**20


class PeakCensus(TorchDispatchMode):
    """Notes the maker of every tensor of ``min_bytes`` or more and the live ones at the highest peak so far."""

    def __init__(self, model: torch.nn.Module, device: torch.device, min_bytes: int = MIB):
        super().__init__()
        self.device, self.min_bytes = device, min_bytes
        self.path: list[str] = []
        # (weakref to the tensor, storage pointer, storage bytes, module, op, shape, dtype)
        self.noted: list[tuple] = []
        self.best, self.where, self.census = -1, None, []
        self.hooks = []
        for name, module in model.named_modules():
            self.hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: self.path.append(n)))
            self.hooks.append(module.register_forward_hook(self._leave))

    def _leave(self, module, args, output) -> None:  # a hook returning a value would replace the output
        self.path.pop()

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        where = self.path[-1] if self.path else "(top)"
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.min_bytes:
                storage = t.untyped_storage()
                ptr, nbytes = storage.data_ptr(), storage.nbytes()
                self.noted.append((weakref.ref(t), ptr, nbytes, where, func.__name__, tuple(t.shape), t.dtype))
        level = self._level()
        if level > self.best:
            self.best, self.where, self.census = level, f"{where}: {func.__name__}", self._live()
        return out

    def _live(self) -> list[dict]:
        self.noted = [n for n in self.noted if n[0]() is not None]
        rows = {}
        for _, ptr, nbytes, where, op, shape, dtype in self.noted:
            rows.setdefault(ptr, {"made_by": f"{where}: {op}", "shape": list(shape), "dtype": str(dtype),
                                  "mib": round(nbytes / MIB, 1)})  # fmt: skip
        return sorted(rows.values(), key=lambda r: -r["mib"])

    def _level(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return int(sum(r["mib"] for r in self._live()) * MIB)


def census(name: str, size: int, batch: int, device: torch.device) -> dict:
    """The peak of one forward of ``name`` at (batch, 3, size, size) in bf16, where it happened and what was live."""
    model = build_deit(size, device, "bf16") if name.startswith("deit") else build_vim(device, "bf16", name)
    x = torch.randn(batch, 3, size, size, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        model(x)  # compiles; caches (position embeddings, float32 scan parameters) are resident from here
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            resident = torch.cuda.memory_allocated(device)
        mode = PeakCensus(model, device)
        try:
            with mode:
                model(x)
        finally:
            mode.close()
    row = {"model": name, "size": size, "batch": batch, "peak_at": mode.where, "live_at_peak": mode.census[:12]}
    row["live_noted_gib"] = sum(r["mib"] for r in mode.census) / 1024
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["resident_gib"] = resident / 2**30
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vim_tiny,vim_ssd_tiny,deit_tiny_flash")
    ap.add_argument("--sizes", type=parse_sizes, default=[1024, 4096])
    ap.add_argument("--batch", type=int, help="one batch for every size (default: the backbone benchmark's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for size in args.sizes:
        for name in args.models.split(","):
            row = census(name, size, args.batch or BATCHES[size], device)
            rows.append(row)
            top = ", ".join(f"{r['made_by']} {r['mib']:.0f}" for r in row["live_at_peak"][:5])
            print(f"{name:16s} {size:5d} peak {row.get('peak_gib', row['live_noted_gib']):.2f} GiB at {row['peak_at']}"
                  f" | {top}", flush=True)  # fmt: skip
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps({"environment": environment(device), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
