#!/usr/bin/env bash
# Issue 14: what the 2026-12-06 13:04 session wrote and could not run on the GPU (its device time went to machine
# starts that failed). Results in $OUT. Before it: the vLLM unpack (../shared/gpu/README.md) and the SmolLM2 weight
# pieces in /tmp/gparts (bench/h200/real_models.sh says which carries); PART=gemma also needs the Gemma pieces in
# /tmp/gmparts. One part per call (each under the 600 s limit).
#   PART=smol  (~6.5 min on an H100): bench/h200/timed_paths.sh STAGE=3: the PathClock GPU test after its warm-up
#              fix, then dense and XAttention TTFT on SmolLM2 with what changed after the 13:58 run: a path's cost
#              is the median of its latest three timings (each path twice per bucket first), the shipped d 64
#              break-even 0.68, and the bench's warm-up (4 untimed prompts per length; the 8K offset).
#   PART=gemma (~6 min): Gemma-3 dense and XAttention with the timed paths (TTFT + the suite), same warm-up.
# Superseded: the max_model_len split of SmolLM2's 32K loss (the layers' own timings explained it: at 16K-32K the
# estimate costs more than it saves in nearly every layer, bench/results/xattn_real/notes.md) and the d 64 curve
# (measured 13:58: break-even 0.68).
set -u
case ${PART:-smol} in
  smol) STAGE=3 bash bench/h200/timed_paths.sh ;;
  gemma) MODEL=gemma RUNS="dense xattn" RUN_TIMEOUT=280 bash bench/h200/real_models.sh ;;
esac
