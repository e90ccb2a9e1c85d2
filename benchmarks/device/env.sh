# Sourced by the benchmarks/device/*.sh scripts: what every device call sets up first. The GPU machine has no
# vimscope install and lacks zarr, dask, openslide, imagecodecs, shapely and their needs: carried cp312 wheels in
# .whl/ go to /tmp/site, a symlink shim makes `import vimscope_kernels` load ./kernels, the source tree is imported
# directly, a carried demo slide is where tests.io.conftest.demo_path looks for it, and a carried Triton cache
# (.carry/triton_cache.tgz) is unpacked. Sets OUT (default ./gpu_out) and DEMO.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
fi
SHIM=$(mktemp -d); ln -s "$PWD/kernels" "$SHIM/vimscope_kernels"
export PYTHONPATH="$SHIM:$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEMO=.carry/CMU-1-Small-Region.svs
if [ -f "$DEMO" ]; then
    export VIMSCOPE_CACHE=$(mktemp -d); ln -s "$PWD/$DEMO" "$VIMSCOPE_CACHE/CMU-1-Small-Region.svs"
fi
if [ -f .carry/triton_cache.tgz ]; then mkdir -p ~/.triton && tar -xzf .carry/triton_cache.tgz -C ~/.triton; fi
