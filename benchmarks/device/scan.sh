#!/usr/bin/env bash
# One device call: GPU kernel tests, then the scan benchmark and/or the launch-configuration sweep; logs and JSON
# under $OUT (default ./gpu_out). SKIP_TESTS=1 skips the tests, SKIP_BENCH=1 the benchmark; TUNE=1 runs
# benchmarks.kernels.tune_scan (TUNE_ARGS, TUNE_TIMEOUT) after the benchmark.
# The GPU machine has no vimscope install: a symlink shim makes `import vimscope_kernels` load ./kernels.
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${TEST_TIMEOUT:-240}" python3 -m pytest tests/kernels -m gpu -q -p no:cacheprovider --durations=10 -W ignore 2>&1 | tee "$OUT/gpu_tests.log"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout "${BENCH_TIMEOUT:-330}" python3 -m benchmarks.kernels.scan --out "$OUT/scan.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
fi
if [ "${TUNE:-0}" = 1 ]; then
  timeout "${TUNE_TIMEOUT:-230}" python3 -m benchmarks.kernels.tune_scan --out "$OUT/tune.json" ${TUNE_ARGS:-} 2>&1 | tee "$OUT/tune.log"
fi
tar -czf "$OUT/triton_cache.tgz" -C ~/.triton cache 2>/dev/null; ls -la "$OUT"
