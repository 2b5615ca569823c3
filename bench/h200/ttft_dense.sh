#!/usr/bin/env bash
# Issue 14 must-have 1 (vLLM 0.26 carried and unpacked, ../shared/gpu/README.md), from the repo root:
# tau = 1 greedy equality vs FLASH_ATTN through the adapter (every candidate row sparse, decodes and short
# prompts on FA3 alone: the mixed-batch path), then TTFT at 131,000 tokens, Llama-3.1-8B shape, dummy
# weights, 128-token KV blocks: FLASH_ATTN vs XAttention (S=16, tau 0.9, dense_above = the card's
# break-even) in the same call. Everything lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
run() { local name=$1 limit=$2; shift 2; local t0=$(date +%s)
  timeout "$limit" python3 bench/vllm_ttft.py "$@" --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s: $(grep -h '^\[ttft\]' "$OUT/$name.log" | tr '\n' ' ')"; }
run eq_fa 150 equal --backend FLASH_ATTN --block-size 128
run eq_x 150 equal --backend xattn --block-size 128
python3 bench/vllm_ttft.py compare "$OUT/eq_fa.json" "$OUT/eq_x.json" --out "$OUT/eq_cmp.json" | cut -c1-400
python3 -c "import json; print('eq_x stats', json.load(open('$OUT/eq_x.json'))['xattn_stats'])"
grep -h "xattn:" "$OUT/eq_x.log" | sort | uniq -c | head -5
run ttft_fa 170 ttft --backend FLASH_ATTN --block-size 128 --lens 131000
run ttft_x 200 ttft --backend xattn --block-size 128 --lens 131000 --tau 0.9 --stride 16
python3 -c "import json; print('ttft_x stats', json.load(open('$OUT/ttft_x.json'))['xattn_stats'])"
grep -h "xattn:" "$OUT/ttft_x.log" | sort | uniq -c | head -5
