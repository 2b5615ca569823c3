#!/usr/bin/env bash
# Issue 14 must-have 3: the kernel speed curve at fixed densities (bench/xattn_curve.py), vLLM's FA3 and
# cuDNN SDPA as baselines in the same run. Needs the carried vLLM in /tmp/site (for FA3). Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_curve.txt"
t0=$(date +%s)
timeout "${CURVE_LIMIT:-500}" python3 bench/xattn_curve.py --out "$OUT/xattn_curve" > "$OUT/xattn_curve.log" 2>&1
echo "xattn_curve rc=$? in $(( $(date +%s) - t0 )) s"; grep -v '^{' "$OUT/xattn_curve.log" | tail -45
