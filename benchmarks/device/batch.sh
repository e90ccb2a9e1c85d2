#!/usr/bin/env bash
# One device call: `vimscope batch` over generated JPEG-tiled slides, one and several GPUs.
# The GPU machine lacks zarr/dask/distributed/openslide/imagecodecs: carry their cp312 wheels in .whl/ (see the
# device tool's README); the source tree is imported directly, a symlink giving kernels/ its import name.
#   OUT=$OUT BATCH_ARGS='--configs dask:1,dask:2 --kill --slides 8 --size 20480' bash benchmarks/device/batch.sh
source benchmarks/device/env.sh
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -c "import torch, triton, dask, distributed, zarr; print(torch.__version__, triton.__version__, dask.__version__, zarr.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${BATCH_TIMEOUT:-540}" python3 -m benchmarks.batch.throughput ${BATCH_ARGS:-} --json "$OUT/batch.json" 2>&1 \
    | grep -v -e '^\s*$' -e 'distributed\.' | tee "$OUT/batch.log"
tail -20 /tmp/vimscope-bench-batch/dask-*.log > "$OUT/dask_tail.log" 2>/dev/null
ls -la "$OUT"
