#!/usr/bin/env bash
# One device call: vim_tiny (Triton scan) vs DeiT-Tiny (timm: flash SDPA and eager attention) at 224-4096 px,
# images/s, peak memory and a one-layer kernel budget; JSON, markdown, PNG and log under $OUT (default ./gpu_out).
# The GPU machine has no vimscope install: a symlink shim makes `import vimscope_kernels` load ./kernels.
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-240}" python3 -m benchmarks.models.backbone --out "$OUT/backbone.json" --plot "$OUT/backbone.png" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/backbone.log"
tar -czf "$OUT/triton_cache.tgz" -C ~/.triton cache 2>/dev/null; ls -la "$OUT"
