#!/usr/bin/env bash
# The first request of each new length used to compile Triton kernels (1-6 s, bench/results/vllm_ttft/notes.md).
# After kernels.precompile: the GPU test that counts compiled kernels across row lengths, then TTFT of the
# Llama-3.1-8B-shaped dummy model, FLASH_ATTN against XAttention (auto, tau 0.5: rows run sparse), first and
# second run of each length, in one call. Results in $OUT.
#   after the vLLM unpack: bash bench/h200/ttft_precompile.sh
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
t0=$(date +%s)
timeout 120 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py \
  -k "precompile or row_block" > "$OUT/pytest_precompile.log" 2>&1
echo "pytest rc=$? in $(( $(date +%s) - t0 )) s"; tail -3 "$OUT/pytest_precompile.log"
run() { local name=$1; shift; local t0=$(date +%s)
  timeout 200 python3 bench/vllm_ttft.py ttft "$@" --out "$OUT/$name.json" > "$OUT/$name.full.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s: $(grep -h '^\[ttft\]' "$OUT/$name.full.log" | tr '\n' ' ')"
  grep -E "^\[ttft\]|xattn: kernels compiled|jit_monitor.py:135|init engine|Error" "$OUT/$name.full.log" > "$OUT/$name.log"
  rm -f "$OUT/$name.full.log"; }
run ttft_fa --backend FLASH_ATTN
run ttft_auto_lowtau --backend xattn --tau 0.5 --stride 16 --sparse-kernel auto
cat "$OUT/ttft_auto_lowtau.log" | cut -c1-300
