#!/usr/bin/env bash
# One device call: train the Vim nuclei model and the U-Net baseline on the MoNuSeg pack, side by
# side on one GPU with the same recipe and wall-clock budget, and bring back fp16 weights and metrics.
# Build the pack here first:  vimscope pack monuseg_vim_tiny -o .carry/monuseg-webp.vspack --codec webp
# (WebP because the GPU machine has Pillow but no imagecodecs). The GPU machine has no vimscope install:
# the source tree is imported directly, with a symlink giving kernels/ its import name.
source benchmarks/device/env.sh
PACK=${PACK:-.carry/monuseg-webp.vspack}
BUDGET=${BUDGET:-6.0}; MAX=${MAX:-6.8}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
RUNS=/tmp/vimscope-runs; mkdir -p "$RUNS"
for cfg in ${CONFIGS:-monuseg_vim_tiny monuseg_unet}; do
    python3 -m vimscope train "$cfg" --pack "$PACK" -o "$RUNS/$cfg" --device cuda \
        --budget-minutes "$BUDGET" --max-minutes "$MAX" > "$RUNS/$cfg.log" 2>&1 &
done
wait
for cfg in ${CONFIGS:-monuseg_vim_tiny monuseg_unet}; do
    tail -5 "$RUNS/$cfg.log"
    [ -f "$RUNS/$cfg/model.safetensors" ] && cp "$RUNS/$cfg/model.safetensors" "$OUT/$cfg.safetensors"
    (cd "$RUNS" && tar -czf "$OUT/$cfg.tgz" "$cfg.log" $(cd "$RUNS" && ls "$cfg"/*.json "$cfg"/*.png 2>/dev/null))
done
ls -la "$OUT"
