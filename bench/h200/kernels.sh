#!/usr/bin/env bash
# On the lent H200, from the repo root, after the carried vLLM is unpacked (../shared/gpu/README.md):
# GPU kernel tests, then the attention-only speed benchmark. Everything lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
t0=$(date +%s)
timeout 230 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py \
  > "$OUT/xattn_kernels_pytest_h200.log" 2>&1
echo "pytest rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/xattn_kernels_pytest_h200.log"
tail -3 "$OUT/xattn_kernels_pytest_h200.log"
t0=$(date +%s)
timeout 320 python3 bench/xattn_speed.py --out "$OUT/xattn_speed" > "$OUT/xattn_speed.log" 2>&1
echo "xattn_speed rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/xattn_speed.log"
tail -40 "$OUT/xattn_speed.log"
