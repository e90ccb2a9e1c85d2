#!/usr/bin/env bash
# One device call: the GPU decode path's tests, then the pipeline benchmark (decode-alone, model-alone,
# host-alone and end-to-end Mpx/s, GPU busy, peak RSS) on a synthetic JPEG slide and the demo SVS.
# The GPU machine lacks zarr/numcodecs/dask/imagecodecs/openslide/shapely: carry their cp312 wheels in .whl/ and
# the demo slide as .carry/CMU-1-Small-Region.svs; the source tree is imported directly, a symlink giving
# kernels/ its import name. numba is not carried: JPEG checks run interpreted there (fine for these slides).
#   OUT=$OUT BENCH_ARGS='--budget-s 240' bash benchmarks/device/pipeline.sh
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -c "import torch, triton, torchvision, zarr, imagecodecs; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'torchvision', torchvision.__version__, 'zarr', zarr.__version__, 'imagecodecs', imagecodecs.__version__)" | tee -a "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${TEST_TIMEOUT:-150}" python3 -m pytest tests/pipeline/test_jpegloader.py tests/io/test_jpegtiles.py -q \
      -p no:cacheprovider -W ignore --durations=5 2>&1 | tee "$OUT/pipeline_tests.log"
fi
timeout "${BENCH_TIMEOUT:-330}" python3 -m benchmarks.pipeline.throughput --demo "$DEMO" --out "$OUT/pipeline.json" \
    ${BENCH_ARGS:-} 2>&1 | grep -v -e '^\s*$' | tee "$OUT/pipeline.log"
tar -czf "$OUT/triton_cache.tgz" -C ~/.triton cache 2>/dev/null; ls -la "$OUT"
