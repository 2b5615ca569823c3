#!/usr/bin/env bash
# Issue 14: the GPU tests + layer cost of what the 2026-12-06 08:23 session wrote after its device time ran out (run 2026-12-06 10:07: 43 passed).
# After the vLLM unpack (../shared/gpu/README.md); results in $OUT. About 3 minutes on an H100.
# 1. the GPU tests of the fused page tables, the fa3 sparse kernel (device-decided rows included) and the
#    compile count after precompile (the table builder is one of the kernels counted);
# 2. the per-layer GPU / host cost (bench/xattn_layer_cost.py), to compare with
#    bench/results/xattn_real/layer_cost/ (sparse_fa3 host ms was 0.6-1.1 with the torch tables).
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
t0=$(date +%s)
timeout 300 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_page_tables.py \
  tests/attention_backend/vllm/test_fa3_sparse_gpu.py tests/attention_backend/test_kernels_gpu.py -k \
  "page_tables or fa3 or precompile or decided" > "$OUT/pytest_unmeasured.log" 2>&1
echo "pytest rc=$? in $(( $(date +%s) - t0 )) s"; tail -3 "$OUT/pytest_unmeasured.log"
TIMEOUT=240 bash bench/h200/layer_cost.sh | tail -30
