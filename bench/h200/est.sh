#!/usr/bin/env bash
# Session 3 H200 calls (no vLLM needed): the estimation sweep (launch shapes; nested, flat and TMA
# kernels; GEMM-only and cuBLAS ceilings; the paged cache), the attention-only benchmark with the
# sweep's fastest estimation shapes, then the GPU kernel tests. Everything lands in $OUT.
set -u
export PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
t0=$(date +%s)
timeout 200 python3 bench/xattn_est_sweep.py --out "$OUT/xattn_est_sweep" > "$OUT/xattn_est_sweep.log" 2>&1
echo "est sweep rc=$? in $(( $(date +%s) - t0 )) s"; tail -60 "$OUT/xattn_est_sweep.log"
t0=$(date +%s)
timeout 150 python3 bench/xattn_speed.py --est-tiles-json "$OUT/xattn_est_sweep.json" --out "$OUT/xattn_speed" > "$OUT/xattn_speed.log" 2>&1
echo "xattn_speed rc=$? in $(( $(date +%s) - t0 )) s"; tail -31 "$OUT/xattn_speed.log"
t0=$(date +%s)
timeout 230 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py \
  > "$OUT/xattn_kernels_pytest_h200.log" 2>&1
echo "pytest rc=$? in $(( $(date +%s) - t0 )) s"; tail -3 "$OUT/xattn_kernels_pytest_h200.log"
