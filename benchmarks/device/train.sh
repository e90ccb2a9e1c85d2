#!/usr/bin/env bash
# One device call: train several configs side by side on one GPU (same wall-clock budget each), each from the pack
# its name points to (nuclei_* -> .carry/nuclei-train.vspack, buildings_* -> .carry/buildings-train.vspack), and
# bring back fp16 weights and metrics. RESUME=1 continues the runs a previous call on the same (warm) machine left
# under runs/device/ (`vimscope train --resume`: the saved schedule, optimizer and RNG state).
# Build the packs here first (WebP: the GPU machine has Pillow but no imagecodecs; lossy q95 for the images so
# both fit one transfer):
#   vimscope pack nuclei_vim_tiny -o .carry/nuclei-train.vspack --codec webp --quality 95
#   vimscope pack buildings_vim_tiny -o .carry/buildings-train.vspack --codec webp --quality 90
# The GPU machine has no vimscope install: the source tree is imported directly (benchmarks/device/env.sh).
source benchmarks/device/env.sh
CONFIGS=${CONFIGS:-nuclei_vim_tiny nuclei_unet}
MAX=${MAX:-8.5}
# the weights to bring back (a call returns at most 64 MiB: four 15 MiB files and the logs do not fit one call)
FETCH=${FETCH-$CONFIGS}  # empty: none
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
RUNS=runs/device; mkdir -p "$RUNS"
for cfg in $CONFIGS; do
    args=(-o "$RUNS/$cfg" --device cuda --max-minutes "$MAX")
    if [ "${RESUME:-0}" = 1 ]; then args+=(--resume); else args+=(--overwrite); fi
    python3 -m vimscope train "$cfg" --pack ".carry/${cfg%%_*}-train.vspack" "${args[@]}" \
        >> "$RUNS/$cfg.log" 2>&1 &
done
wait
for cfg in $CONFIGS; do tail -n 4 "$RUNS/$cfg.log"; done
for cfg in $FETCH; do
    [ -f "$RUNS/$cfg/model.safetensors" ] && cp "$RUNS/$cfg/model.safetensors" "$OUT/$cfg.safetensors"
done
# logs, metrics and plots of every run in one archive (a call brings back at most 8 files)
(cd "$RUNS" && tar -czf "$OUT/runs.tgz" $(for cfg in $CONFIGS; do ls "$cfg.log" "$cfg"/*.json "$cfg"/*.png; done 2>/dev/null))
ls -la "$OUT"
