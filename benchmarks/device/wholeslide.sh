#!/usr/bin/env bash
# One device call: issue 20's measure, the whole run of the 80,000 x 60,000 px real-pixel mosaic with the default
# model, call to done, beside the model alone (benchmarks/pipeline/wholeslide.py). Carry .whl (cp312 wheels of
# zarr, numcodecs, donfig, crc32c, imagecodecs (JPEG/WebP/zlib/zstd/deflate modules are enough), shapely, tifffile,
# roifile, typing_extensions) and .carry/cells.zip (python -m benchmarks.pipeline.mosaic_slide --pack --out
# .carry/cells.zip). TESTS='tests/...' runs those GPU tests first; WS_ARGS2='--stripe-width N' a second run after.
#   OUT=$OUT T_RUN=480 bash benchmarks/device/wholeslide.sh
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
if [ -n "${TESTS:-}" ]; then
  timeout "${T_TESTS:-120}" python3 -m pytest $TESTS -m gpu -q -p no:cacheprovider -W ignore 2>&1 | tee "$OUT/tests.log"
fi
timeout "${T_RUN:-480}" python3 -m benchmarks.pipeline.wholeslide --cells .carry/cells.zip --out "$OUT/wholeslide.json" \
    ${WS_ARGS:-} 2>&1 | grep -v -e '^\s*$' | tee "$OUT/wholeslide.log"
if [ -n "${WS_ARGS2:-}" ]; then
  timeout "${T_RUN2:-300}" python3 -m benchmarks.pipeline.wholeslide --cells .carry/cells.zip --out "$OUT/wholeslide2.json" \
      $WS_ARGS2 2>&1 | grep -v -e '^\s*$' | tee "$OUT/wholeslide2.log"
fi
