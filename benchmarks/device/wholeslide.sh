#!/usr/bin/env bash
# One device call: the whole run of the 80,000 x 60,000 px real-pixel mosaic with the default
# model, call to done, beside the model alone (benchmarks/pipeline/wholeslide.py). Carry .whl (cp312 wheels of
# zarr, numcodecs, donfig, crc32c, imagecodecs (JPEG/WebP/zlib/zstd/deflate modules are enough), shapely, tifffile,
# roifile, typing_extensions) and .carry/cells.zip (python -m benchmarks.pipeline.mosaic_slide --pack --out
# .carry/cells.zip). TESTS='tests/...' runs those GPU tests first. With .carry/old.tgz (another version's vimscope/
# and kernels/ under old/, weights left out: git archive --prefix=old/ REV vimscope kernels) the same benchmark
# then runs that version's package on the same slide, in the same call: the baseline side by side.
#   OUT=$OUT T_RUN=300 T_OLD=250 bash benchmarks/device/wholeslide.sh
source benchmarks/device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
if [ -n "${TESTS:-}" ]; then
  timeout "${T_TESTS:-120}" python3 -m pytest $TESTS -m gpu -q -p no:cacheprovider -W ignore 2>&1 | tee "$OUT/tests.log"
fi
OUT=$(realpath "$OUT"); CELLS=$PWD/.carry/cells.zip
bench() {  # out-name time-limit [args]
  local name=$1 limit=$2; shift 2
  timeout "$limit" python3 -m benchmarks.pipeline.wholeslide --cells "$CELLS" --out "$OUT/$name.json" "$@" \
      2>&1 | grep -v -e '^\s*$' | tee "$OUT/$name.log"
}
bench wholeslide "${T_RUN:-300}" ${WS_ARGS:-}
if [ -f .carry/old.tgz ]; then  # run from the old tree's folder: the current folder comes first on sys.path
  OLD=$(mktemp -d); tar -xzf .carry/old.tgz -C "$OLD"; cp vimscope/weights/*.safetensors "$OLD/old/vimscope/weights/"
  mkdir "$OLD/pkg"; ln -s "$OLD/old/vimscope" "$OLD/pkg/vimscope"; ln -s "$OLD/old/kernels" "$OLD/pkg/vimscope_kernels"
  (cd "$OLD" && PYTHONPATH="$OLD/pkg:$PYTHONPATH" bench wholeslide_old "${T_OLD:-250}" ${WS_ARGS:-})
fi
