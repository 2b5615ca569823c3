#!/usr/bin/env bash
# Issue 14: one attention layer's pieces (FA3, FA3 with no keys, estimate + select, the two sparse kernels), GPU
# and host ms per call, in the packaged models' shapes and Llama-3.1-8B's (bench/xattn_layer_cost.py).
# After the vLLM unpack (../shared/gpu/README.md); results in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
timeout ${TIMEOUT:-300} python3 bench/xattn_layer_cost.py --chunk 16384 --ctx ${CTX:-32768,131072} --tau ${TAU:-0.4} \
  --out "$OUT/layer_cost.json" 2>&1 | grep -v Warning | tee "$OUT/layer_cost.log"
