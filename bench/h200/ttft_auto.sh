#!/usr/bin/env bash
# Time to first token of the Llama-3.1-8B-shaped dummy model (bench/vllm_ttft.py ttft), FLASH_ATTN against
# XAttention with --sparse-kernel auto (fa3 at d 128 on sm_90), in one call: must-have 1 at the default tau
# (dummy weights: density ~0.9, so the backend must fall back to dense) and a low tau (sparse rows run).
#   after the vLLM unpack: bash bench/h200/ttft_auto.sh
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
run() { local name=$1; shift; local t0=$(date +%s) rc
  # the card's used memory every 250 ms (vLLM's engine core is another process; its estimate buffers come on top of
  # the KV cache it reserves): the peak is printed with the result
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "/tmp/mem_$name.txt" & local sampler=$!
  timeout 200 python3 bench/vllm_ttft.py ttft "$@" ${LENS:+--lens $LENS} --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  rc=$?; kill $sampler 2>/dev/null
  echo "[$name] rc=$rc $(( $(date +%s) - t0 )) s, peak $(sort -n "/tmp/mem_$name.txt" | tail -1) MiB used:" \
    "$(grep -h '^\[ttft\]' "$OUT/$name.log" | tr '\n' ' ')"; }
RUNS=${RUNS:-"fa auto lowtau"}  # which engines (e.g. RUNS="fa lowtau": the sparse kernel's gain alone); LENS: prompt lengths
for r in $RUNS; do case $r in
  fa) run ttft_fa --backend FLASH_ATTN ;;
  auto) run ttft_auto --backend xattn --tau 0.9 --stride 8 --sparse-kernel auto ;;
  lowtau) run ttft_auto_lowtau --backend xattn --tau 0.5 --stride 16 --sparse-kernel auto ;;
  fp8) run ttft_auto_lowtau_fp8 --backend xattn --tau 0.5 --stride 16 --sparse-kernel auto --estimate-fp8 ;;
  *) echo "unknown run $r"; exit 2 ;;
esac; done
for f in "$OUT"/ttft_*.json; do python3 -c "import json; d=json.load(open('$f')); print('$f', d['ttft_s'], d.get('xattn_stats',{}).get('density'))"; done
