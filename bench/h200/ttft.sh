#!/usr/bin/env bash
# On the lent H200 (vLLM 0.26 carried and unpacked, see ../shared/gpu/README.md), from the repo root:
# tau=1 greedy equality vs FLASH_ATTN on a small random model, then time to first token of a
# Llama-3.1-8B-shaped dummy-weight model, FLASH_ATTN (FA3) vs our backend. Everything lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
run() { local name=$1; shift; local t0=$(date +%s)
  timeout 240 python3 bench/vllm_ttft.py "$@" > "$OUT/$name.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s: $(grep -h '^\[ttft\]' "$OUT/$name.log" | tr '\n' ' ')"; }
run eq_fa equal --backend FLASH_ATTN --out "$OUT/eq_fa.json"
run eq_x equal --backend xattn --out "$OUT/eq_x.json"
python3 bench/vllm_ttft.py compare "$OUT/eq_fa.json" "$OUT/eq_x.json" --out "$OUT/eq_cmp.json"; cat "$OUT/eq_cmp.json"
run ttft_fa ttft --backend FLASH_ATTN --out "$OUT/ttft_fa.json"
run ttft_x ttft --backend xattn --tau 0.9 --stride 8 --out "$OUT/ttft_x.json"
run ttft_x_lowtau ttft --backend xattn --tau 0.5 --stride 16 --out "$OUT/ttft_x_lowtau.json"
for f in "$OUT"/ttft_*.json; do python3 -c "import json,sys; d=json.load(open('$f')); print('$f', d['ttft_s'], d.get('xattn_stats',{}).get('density'))"; done
