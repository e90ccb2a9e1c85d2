#!/usr/bin/env bash
# One device call: where a vim_tiny forward (the default inference path, bf16, 1024² tiles, batch 64) spends its
# time, and what limits its three Triton kernels. The one-layer kernel budget comes from the backbone benchmark
# (torch profiler); Nsight Compute then profiles one launch each of the sequential scan, the conv + SiLU kernel of
# the split conv + x_proj (the fused kernel before it became the default) and the fused residual + RMSNorm
# (SpeedOfLight, Occupancy, WarpStateStats, ComputeWorkloadAnalysis, MemoryWorkloadAnalysis) into CSV.
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 -m benchmarks.models.backbone --models vim_tiny,vim_ssd_tiny,deit_tiny_flash --sizes 1024 \
    --profile-sizes 1024 --compare-autocast-sizes "" --target-s 0.3 --out "$OUT/backbone_profile.json" \
    > "$OUT/backbone_profile.log" 2>&1
tail -n 40 "$OUT/backbone_profile.log"
cat > /tmp/one_forward.py <<'PY'
import torch
from benchmarks.models.backbone import build_vim
m = build_vim(torch.device("cuda"), "bf16").eval()
x = torch.randn(64, 3, 1024, 1024, device="cuda", dtype=torch.bfloat16)
with torch.inference_mode():
    for _ in range(2):
        m(x)
torch.cuda.synchronize()
PY
for k in _seq_scan_kernel _conv_silu_kernel _add_rmsnorm_fwd_kernel; do
    timeout 90 ncu --target-processes all -k "regex:$k" --launch-skip 30 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
        --section MemoryWorkloadAnalysis --csv python3 /tmp/one_forward.py > "$OUT/ncu_$k.csv" 2> "$OUT/ncu_$k.err"
    echo "== $k rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued" "$OUT/ncu_$k.csv" | cut -c1-220 | head -n 14
done
ls -la "$OUT"
