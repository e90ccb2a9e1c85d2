#!/usr/bin/env bash
# One device call for the Vim mixer's inference forward: the sequential-kernel GPU tests, the stage benchmark with
# its bound, Nsight Compute limiters of the main kernels, then vim_tiny vs DeiT-Tiny flash (same run). Logs and
# JSON under $OUT (default ./gpu_out); copy backbone.json / mixer_fwd.json into benchmarks/results/.
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -q -m gpu tests/kernels/test_seq.py -p no:cacheprovider -W ignore \
    2>&1 | tail -3 | tee "$OUT/gpu_tests.log"
timeout "${BENCH_TIMEOUT:-150}" python3 -m benchmarks.kernels.mixer_fwd --out "$OUT/mixer_fwd.json" 2>&1 \
    | tee "$OUT/mixer.log" | tail -5
M=sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active
M=$M,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,dram__throughput.avg.pct_of_peak_sustained_elapsed
timeout "${NCU_TIMEOUT:-80}" ncu --clock-control none --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --metrics "$M" -k regex:"_seq_scan_kernel|_conv_silu_kernel|_add_rmsnorm" \
    --launch-count 3 python3 -m benchmarks.kernels.mixer_fwd --launch-once 64,4097 > "$OUT/ncu.txt" 2>&1
grep -E "^  _|Duration|Warp Cycles Per Issued|Achieved Active|cycles being|sm__|smsp__|dram__" "$OUT/ncu.txt" | head -30
timeout "${BACKBONE_TIMEOUT:-200}" python3 -m benchmarks.models.backbone --out "$OUT/backbone.json" \
    --models vim_tiny,deit_tiny_flash --sizes 1024,1248,2048,4096 --compare-autocast-sizes 1248 \
    --profile-sizes 1024 --target-s 0.5 > "$OUT/backbone.log" 2>&1
grep -A24 "^| size" "$OUT/backbone.log" | head -36
