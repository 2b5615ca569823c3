#!/usr/bin/env bash
# Issue 14 must-have 3: the fa3 sparse kernel (vLLM's FlashAttention 3 over per-block page tables,
# attention_backend/vllm/fa3_sparse.py) checked against the Triton kernel and the fp64 reference, then the
# kernel speed curve (bench/h200/curve.sh: Triton and FA3-paged sparse, FA3 and cuDNN dense in the same run).
# Needs the carried vLLM in /tmp/site. Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
t0=$(date +%s)
timeout 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/vllm/test_fa3_sparse_gpu.py \
  > "$OUT/fa3_sparse_pytest.log" 2>&1
echo "fa3 sparse pytest rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/fa3_sparse_pytest.log"; tail -4 "$OUT/fa3_sparse_pytest.log"
bash bench/h200/curve.sh
# the same curve at Gemma-3-270M's global-layer shape (4 q heads, 1 KV head, d 256): its break-even per kernel
t0=$(date +%s)
timeout 240 python3 bench/xattn_curve.py --heads 4 --kv-heads 1 --head-dim 256 --no-flex --out "$OUT/xattn_curve_d256" \
  > "$OUT/xattn_curve_d256.log" 2>&1
echo "xattn_curve d256 rc=$? in $(( $(date +%s) - t0 )) s"; grep -v '^{' "$OUT/xattn_curve_d256.log" | tail -30
