#!/usr/bin/env bash
# Every GPU check and benchmark of a session in one device call, each step under its own time limit:
# kernel GPU tests, determinism of a segment run across processes, the scan tuning sweep, the backbone benchmark
# (vim_tiny vs DeiT-Tiny), the pipeline benchmark with its GPU decode tests. Carry .whl (cp312 wheels of zarr,
# numcodecs, dask, distributed, imagecodecs, openslide, shapely and their needs) and
# .carry/CMU-1-Small-Region.svs.  Step limits: T_TESTS T_DET T_TUNE T_BACKBONE T_PIPELINE (seconds); SKIP="tune backbone"
# leaves steps out (names: tests det tune backbone pipeline).
source benchmarks/device/env.sh
LOG="$OUT/steps.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG"
step() { local name=$1 t=$2; shift 2; case " ${SKIP:-} " in *" $name "*) echo "== skip $name" | tee -a "$LOG"; return;; esac; echo "== $* (limit ${t}s)" | tee -a "$LOG"; local s=$(date +%s)
    timeout "$t" "$@" 2>&1 | grep -v -e '^\s*$' | tee -a "$LOG"; echo "== took $(( $(date +%s) - s )) s" | tee -a "$LOG"; }

step tests "${T_TESTS:-80}" python3 -m pytest tests/kernels -m gpu -q -p no:cacheprovider -W ignore --durations=5
step det "${T_DET:-60}" python3 -m benchmarks.pipeline.determinism --out "$OUT/determinism.json"
step tune "${T_TUNE:-110}" python3 -m benchmarks.kernels.tune_scan --out "$OUT/tune.json" ${TUNE_ARGS:-}
step backbone "${T_BACKBONE:-140}" python3 -m benchmarks.models.backbone --out "$OUT/backbone.json" --plot "$OUT/backbone.png" \
    ${BACKBONE_ARGS:-}
step pipeline "${T_PIPELINE:-190}" python3 -m benchmarks.pipeline.throughput --demo "$DEMO" --out "$OUT/pipeline.json" ${PIPELINE_ARGS:-}
ls -la "$OUT"
