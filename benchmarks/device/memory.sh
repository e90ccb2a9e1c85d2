#!/usr/bin/env bash
# One device call for the backbones' memory and speed after a change to their inference path: the kernel GPU
# tests, where each model's peak memory is and what is alive there (benchmarks.models.memory_peak), then the
# backbone benchmark (vim_tiny, vim_ssd_tiny, DeiT-Tiny flash). Needs no wheels. Limits: T_TESTS T_PEAK T_BACKBONE T_OLD.
# With .carry/old.tgz (git archive --prefix=old/ REV kernels vimscope benchmarks pyproject.toml) the older version's
# backbone rows at 1024 and 4096 px too.
source benchmarks/device/env.sh
LOG="$OUT/steps.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
step() { local t=$1; shift; echo "== $* (limit ${t}s)" | tee -a "$LOG"; local s=$(date +%s)
    timeout "$t" "$@" 2>&1 | grep -v -e '^\s*$' | tee -a "$LOG"; echo "== took $(( $(date +%s) - s )) s" | tee -a "$LOG"; }
step "${T_TESTS:-150}" python3 -m pytest ${TESTS:-tests/kernels} -m gpu -q -p no:cacheprovider -W ignore --durations=5
step "${T_PEAK:-90}" python3 -m benchmarks.models.memory_peak --models ${MODELS:-vim_tiny,vim_ssd_tiny,deit_tiny_flash} \
    --sizes 1024,4096 --out "$OUT/memory_peak.json"
step "${T_BACKBONE:-200}" python3 -m benchmarks.models.backbone --models ${MODELS:-vim_tiny,vim_ssd_tiny,deit_tiny_flash} \
    --sizes 1024,1248,2048,4096 --profile-sizes "${PROFILE:-}" --compare-autocast-sizes "" --target-s 0.5 \
    --out "$OUT/backbone.json"
if [ -f .carry/old.tgz ]; then  # the version before, same call: its backbone rows beside the ones above
    ABS_OUT=$(cd "$OUT" && pwd); OLD=$(mktemp -d); tar -xzf .carry/old.tgz -C "$OLD"; ln -s "$OLD/old/kernels" "$OLD/vimscope_kernels"
    step "${T_OLD:-120}" env PYTHONPATH="$OLD:$OLD/old" bash -c "cd $OLD/old && python3 -m benchmarks.models.backbone \
        --models vim_tiny,vim_ssd_tiny,deit_tiny_flash --sizes 1024,4096 --profile-sizes '' --compare-autocast-sizes '' \
        --target-s 0.5 --out $ABS_OUT/backbone_old.json"
fi
ls -la "$OUT"
