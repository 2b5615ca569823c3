#!/usr/bin/env bash
# Greedy-output equality (tau = 1) of the CUDA adapter at HEAD vs FLASH_ATTN, with vLLM's default 16-token
# pages and with 128-token pages (the sparse kernel's page-aligned path). Results in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
for spec in "fa FLASH_ATTN 0" "x xattn 0" "x128 xattn 128"; do set -- $spec; t0=$(date +%s)
  timeout 120 python3 bench/vllm_ttft.py equal --backend $2 --block-size $3 --out "$OUT/eq_$1.json" > "$OUT/eq_$1.log" 2>&1
  echo "[eq_$1] rc=$? $(( $(date +%s) - t0 )) s"; done
for x in x x128; do python3 bench/vllm_ttft.py compare "$OUT/eq_fa.json" "$OUT/eq_$x.json" --out "$OUT/cmp_$x.json" | tail -1
  python3 -c "import json; print('$x', json.load(open('$OUT/eq_$x.json'))['xattn_stats'])"; done
