#!/usr/bin/env bash
# One device call: the bidirectional SSD op (GPU correctness, speed per launch configuration) and vim_ssd_tiny vs
# DeiT-Tiny flash (benchmarks/kernels/ssd.py), then Nsight Compute on one forward launch of the scan kernel.
# JSON, log and ncu report under $OUT (default ./gpu_out). COMMIT names the source commit (no git there).
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-300}" python3 -m benchmarks.kernels.ssd --out "$OUT/ssd.json" --commit "${COMMIT:-}" \
    ${BENCH_ARGS:-} 2>&1 | tee "$OUT/ssd.log"
[ -n "${SKIP_NCU:-}" ] && exit 0
CHUNK=$(python3 -c "import json; print(json.load(open('$OUT/ssd.json')).get('best_config', {}).get('chunk', 64))")
WARPS=$(python3 -c "import json; print(json.load(open('$OUT/ssd.json')).get('best_config', {}).get('fwd_warps', 4))")
timeout "${NCU_TIMEOUT:-90}" ncu --kernel-name regex:_ssd_scan_fwd_kernel --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    python3 -c "from vimscope_kernels.ssd import function; function.LAUNCH['fwd_warps'] = $WARPS
import sys; from benchmarks.kernels.ssd import main; sys.exit(main(['--ncu-fwd', '$CHUNK']))" > "$OUT/ncu_fwd.txt" 2>&1
tail -60 "$OUT/ncu_fwd.txt"
