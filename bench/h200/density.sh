#!/usr/bin/env bash
# Issue 14 must-have 4: block density on real attention vs length (bench/xattn_density.py), on the GPU.
# Needs converted HF model dirs on the device: $SMOL (default /tmp/smol, SmolLM2-135M-Instruct) and
# $GEMMA (default /tmp/gemma, Gemma-3-270M; its global layers only), torch + transformers on PYTHONPATH
# (/tmp/site), and real text: $TEXT (default .xattn_carry/run/haystack.txt, carried; else ../shared/data).
# Writes to $OUT (6 files): xattn_density.json (merged, with both per-head tables), density.log,
# smollm2.table.json and gemma-3-270m.table.json (shipped as attention_backend/tables/*.json), and the
# PNG where matplotlib is installed (else re-plot here: python bench/xattn_density.py report xattn_density.json).
# CPU check with tiny lengths: OUT=/tmp/o DEVICE=cpu SMOL_LENS=512,1024 GEMMA_LENS=512 bash bench/h200/density.sh
set -u
[ -f .gpucarry/run/device_env.sh ] && source .gpucarry/run/device_env.sh
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
SMOL=${SMOL:-/tmp/smol} GEMMA=${GEMMA:-/tmp/gemma}
SMOL_LENS=${SMOL_LENS:-1024,2048,4096,8192} GEMMA_LENS=${GEMMA_LENS:-2048,4096,8192,16384,32768}
PROMPTS=${PROMPTS:-2} DEVICE=${DEVICE:-auto} TARGET=${TARGET:-0.95}
TEXT=${TEXT:-.xattn_carry/run/haystack.txt}
text_arg=(); [ -f "$TEXT" ] && text_arg=(--text-file "$TEXT")
LOG="$OUT/density.log"; : > "$LOG"
{ echo "[env] $(date -u +%FT%TZ) text=${TEXT} prompts=$PROMPTS device=$DEVICE"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  $PY -c "import torch, transformers; print('[env] torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"; } >> "$LOG" 2>&1
inputs=()
run_measure() { local name=$1 dir=$2 lens=$3 limit=$4; shift 4
  timeout "$limit" $PY bench/xattn_density.py measure --model "$dir" --lengths "$lens" --prompts "$PROMPTS" \
    --device "$DEVICE" --table-target "$TARGET" "${text_arg[@]}" --out "/tmp/density_$name.json" \
    --table-out "$OUT/$name.table.json" "$@" 2>&1 | grep -v "Loading weights\|it/s\]" >> "$LOG"
  return "${PIPESTATUS[0]}"; }
measure() { local name=$1 dir=$2 lens=$3 limit=$4; shift 4; local t0=$(date +%s) rc
  if [ ! -f "$dir/config.json" ]; then echo "[$name] SKIPPED: no HF model dir at $dir" | tee -a "$LOG"; return; fi
  run_measure "$name" "$dir" "$lens" "$limit" "$@"; rc=$?
  if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then  # a Triton failure: say so, then the torch estimate on CPU
    echo "[$name] FAILED rc=$rc (traceback above); RETRY with --estimate torch" | tee -a "$LOG"
    run_measure "$name" "$dir" "$lens" "$limit" "$@" --estimate torch; rc=$?
  fi
  echo "[$name] rc=$rc $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  [ -f "/tmp/density_$name.json" ] && inputs+=("/tmp/density_$name.json"); }
rm -f /tmp/density_smollm2.json /tmp/density_gemma-3-270m.json
measure smollm2 "$SMOL" "$SMOL_LENS" 150
measure gemma-3-270m "$GEMMA" "$GEMMA_LENS" 150 --bos
if [ ${#inputs[@]} -gt 0 ]; then $PY bench/xattn_density.py report "${inputs[@]}" --out "$OUT" >> "$LOG" 2>&1; fi
grep -v "^\[env\]" "$LOG" | tail -60
