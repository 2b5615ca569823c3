#!/usr/bin/env bash
# Second H200 call of session 2: the sparse kernel's page-aligned path (one block-table entry per key
# block when the page size is a multiple of B), then TTFT with 128-token vLLM KV blocks for both backends.
set -u
bash bench/h200/kernels.sh
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
for b in FLASH_ATTN xattn; do t0=$(date +%s)
  timeout 150 python3 bench/vllm_ttft.py ttft --backend $b --block-size 128 --out "$OUT/ttft_${b}_p128.json" > "$OUT/ttft_${b}_p128.log" 2>&1
  echo "[ttft $b p128] rc=$? $(( $(date +%s) - t0 )) s: $(grep -h '^\[ttft\]' "$OUT/ttft_${b}_p128.log" | tr '\n' ' ')"
  python3 -c "import json; d=json.load(open('$OUT/ttft_${b}_p128.json')); print(d['ttft_s'], d.get('xattn_stats',{}).get('density'))"
done
