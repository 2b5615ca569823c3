#!/usr/bin/env bash
# Session 3, first H200 call (no vLLM needed): the estimation kernels' GPU tests, the estimation
# sweep (launch shapes, nested vs flat kernel, GEMM-only and cuBLAS ceilings), then the attention-only
# benchmark with the sweep's fastest estimation shapes. Everything lands in $OUT.
set -u
export PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
t0=$(date +%s)
timeout 150 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py -k estimate \
  > "$OUT/est_pytest_h200.log" 2>&1
echo "pytest -k estimate rc=$? in $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/est_pytest_h200.log"
t0=$(date +%s)
timeout 250 python3 bench/xattn_est_sweep.py --out "$OUT/xattn_est_sweep" > "$OUT/xattn_est_sweep.log" 2>&1
echo "est sweep rc=$? in $(( $(date +%s) - t0 )) s"; tail -48 "$OUT/xattn_est_sweep.log"
t0=$(date +%s)
timeout 190 python3 bench/xattn_speed.py --est-tiles-json "$OUT/xattn_est_sweep.json" --out "$OUT/xattn_speed" > "$OUT/xattn_speed.log" 2>&1
echo "xattn_speed rc=$? in $(( $(date +%s) - t0 )) s"; tail -32 "$OUT/xattn_speed.log"
