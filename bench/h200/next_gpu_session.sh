#!/usr/bin/env bash
# Issue 14, the 2026-12-06 16:00 UTC session: the real-model runs the code as it stands was never measured with
# (the timed paths with median-of-three costs, the d 64 break-even 0.68, the bench's warm-up): every length and the
# 200-prompt suite. Before it: the vLLM unpack (../shared/gpu/README.md) and the weight pieces on the device
# (bench/h200/make_xattn_carry.sh builds them; bench/h200/real_models.sh says where they go). One part per call:
#   PART=smol_dense  (~4 min on an H100): SmolLM2 FLASH_ATTN, TTFT at 8K-128K (4 untimed prompts per length
#                    first) and the suite
#   PART=smol_xattn  (~4 min): SmolLM2 XAttention with the defaults, the same; compared with smol_dense's run
#   PART=gemma       (~7 min): Gemma-3 FLASH_ATTN and XAttention (TTFT + suite), then the floor (tau 0.001:
#                    the global layers' attention all but free, TTFT only): how far block sparsity can take it
# The backend ships break-even entries for the H100 only (attention_backend/break_even.py); on another card the
# XAttention runs pass the H100's values (labelled so in the notes).
set -u
H100=$(nvidia-smi --query-gpu=name --format=csv,noheader | grep -c H100)
[ "$H100" = 0 ] && export XATTN_ARGS="--min-sparse-ms 0.6 --dense-above $([ "${PART:-}" = gemma ] && echo 0.58 --sparse-kernel fa3 || echo 0.68)"
case ${PART:-smol_dense} in
  smol_dense) MODEL=smol RUNS=dense RUN_TIMEOUT=330 bash bench/h200/real_models.sh ;;
  smol_xattn) MODEL=smol RUNS=xattn RUN_TIMEOUT=330 bash bench/h200/real_models.sh ;;
  gemma) MODEL=gemma RUNS="dense xattn xattn_floor" RUN_TIMEOUT=190 bash bench/h200/real_models.sh ;;
esac
