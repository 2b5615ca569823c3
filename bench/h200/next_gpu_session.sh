#!/usr/bin/env bash
# Issue 14: what the 2026-12-06 10:05 session found and could not finish on the GPU. After the vLLM unpack and
# the SmolLM2 weights (bench/h200/real_models.sh with MODEL=smol RUNS=dense has converted /tmp/smol16 and
# written /tmp/suite_smol.json). About 7 minutes on an H100 (9 with Gemma). Lands in $OUT.
# 1. SmolLM2 at 32K was 0.83x in the retrieval bench (suite prompts, max_model_len 128,064) but 1.16x in the
#    profile bench (haystack prompt, max_model_len 32,064): the same suite prompt at both max_model_len, dense
#    and XAttention, splits the prompt from the engine set-up (bench/results/xattn_real/notes.md).
# 2. Gemma-3's FLASH_ATTN engine was ~11 ms slower than XAttention's at 8K in the retrieval bench (max_model_len
#    128,064), where both run FA3 only; the profile bench at max_model_len 8,064 had them equal. If the Gemma weights
#    are there (MODEL=gemma RUNS=dense bash bench/h200/real_models.sh), FLASH_ATTN at 8K at both max_model_len.
# 3. The d 64 break-even (attention_backend/break_even.py, 0.52) was measured with the eight-warp kernel; the
#    four-warp one is ~1.3x faster: the curve at SmolLM2's shape gives the new one.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
for mml in 32064 128064; do
  for b in FLASH_ATTN xattn; do
    timeout 150 python3 bench/xattn_profile.py --model /tmp/smol16 --suite /tmp/suite_smol.json --len 32000 \
      --max-model-len $mml --backend $b --out "$OUT/p32_suite_${b}_$mml.txt" > "$OUT/p32_suite_${b}_$mml.log" 2>&1
    echo "[$b max_model_len $mml] rc=$?"; grep -h "^backend=\|host syncs" "$OUT/p32_suite_${b}_$mml.log" | tail -2
  done
done
if [ -d /tmp/gemma4 ] && [ -f /tmp/suite_gemma.json ]; then
  for mml in 8064 128064; do
    timeout 150 python3 bench/xattn_profile.py --model /tmp/gemma4 --suite /tmp/suite_gemma.json --len 8000 \
      --max-model-len $mml --backend FLASH_ATTN --out "$OUT/p8_gemma_suite_$mml.txt" > "$OUT/p8_gemma_suite_$mml.log" 2>&1
    echo "[gemma FLASH_ATTN 8K max_model_len $mml] rc=$?"; grep -h "^backend=" "$OUT/p8_gemma_suite_$mml.log" | tail -1
  done
fi
timeout 120 python3 bench/xattn_curve.py --heads 9 --kv-heads 3 --head-dim 64 --no-flex --out "$OUT/xattn_curve_d64" \
  > "$OUT/xattn_curve_d64.log" 2>&1
echo "curve d64 rc=$?"; grep -i "break-even\|costs what" "$OUT/xattn_curve_d64.log" | tail -6
