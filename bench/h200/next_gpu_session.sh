#!/usr/bin/env bash
# Issue 14, what is left after the 2026-12-06 18:10 UTC runs (bench/results/xattn_real/notes.md). Before it: the
# vLLM unpack (../shared/gpu/README.md) and the weight pieces on the device (bench/h200/make_xattn_carry.sh builds
# them; bench/h200/real_models.sh says where they go). One part per call:
#   PART=gemma (~7 min on an H100): the PathClock GPU tests (the idle-start test is new), then Gemma-3 with
#              the default that now leaves fa3 untimed, dense and XAttention with the suite (the bench now also
#              warms each length up for 2 s and logs the SM clock before each timed prompt);
#              PART=gemma_b (~8 min; needs no PART=gemma before it): dense and xattn again in new processes, TTFT only, and
#              where the 0.6-0.8 ms XAttention costs at 8K-16K goes: the plugin with every row under min_sparse_len
#              (xattn_off: no planning, no precompile) and with every row under the minimum of work (xattn_small:
#              planned and precompiled, then FA3); PART=gemma_c (~5 min, the same machine, after gemma_b): a 1.1x dense
#              margin (xattn_margin: no estimate where the last one came out dense) and a 3 ms minimum of work
#              (xattn_minwork: Gemma's 32K, 0.94x), compared with gemma_b's dense_b.
#   PART=est_fp8 (~2 min, after the vLLM unpack: the package import needs its site's httpx): the estimation sweep at 128K, S=16, bf16 and fp8 operands (fp8 with
#              128-wide head-dim slices = 128-byte rows: the 05:25 UTC fp8 sweep used 64-byte rows), and each bf16
#              TMA shape without its softmax epilogue (what the epilogue costs against cuBLAS's 6.6 ms)
# Not scripted yet, for why the fa3 path's layer spans overstate its cost: a timed engine
# (XATTN_ARGS=--time-paths) and its `path_idle_starts` (spans begun on an idle stream, per layer / length / path),
# bench/xattn_profile.py at 64K with time_paths on and off.
#   PART=smol  (~7 min): SmolLM2 the same way, dense and xattn with the suite; PART=smol_b (~4 min, next call on
#              the same machine): both again in new processes, TTFT only (compared with PART=smol's dense)
# The backend ships break-even entries for the H100 only (attention_backend/break_even.py); on another card the
# XAttention runs pass the H100's values (labelled so in the notes).
set -u
H100=$(nvidia-smi --query-gpu=name --format=csv,noheader | grep -c H100)
[ "$H100" = 0 ] && export XATTN_ARGS="--min-sparse-ms 0.6 --dense-above $(case ${PART:-gemma} in gemma*) echo 0.58 --sparse-kernel fa3 ;; *) echo 0.68 ;; esac)"
case ${PART:-gemma} in
  gemma) source .gpucarry/run/device_env.sh; PYTHONPATH=$PYTHONPATH:$PWD timeout 60 python3 -m pytest --noconftest -q \
           -p no:cacheprovider tests/attention_backend/test_path_clock_gpu.py > "$OUT/pytest_path_clock.log" 2>&1
         echo "PathClock GPU tests rc=$?"; tail -1 "$OUT/pytest_path_clock.log"
         MODEL=gemma RUNS="dense xattn" RUN_TIMEOUT=240 bash bench/h200/real_models.sh ;;
  gemma_b) MODEL=gemma RUNS="${RUNS:-dense_b xattn_b xattn_off xattn_small}" RUN_TIMEOUT=140 bash bench/h200/real_models.sh ;;
  gemma_c) MODEL=gemma RUNS="${RUNS:-xattn_margin xattn_minwork}" RUN_TIMEOUT=140 bash bench/h200/real_models.sh ;;  # after gemma_b
  est_fp8) source .gpucarry/run/device_env.sh; PYTHONPATH=$PYTHONPATH:$PWD timeout 240 python3 bench/xattn_est_sweep.py --lens 131072 --strides 16 --fp8 \
             --out "$OUT/xattn_est_sweep_fp8" > "$OUT/xattn_est_sweep_fp8.log" 2>&1; echo "rc=$?"; tail -30 "$OUT/xattn_est_sweep_fp8.log" ;;
  smol) MODEL=smol RUNS="dense xattn" RUN_TIMEOUT=240 bash bench/h200/real_models.sh ;;
  smol_b) MODEL=smol RUNS="dense_b xattn_b" RUN_TIMEOUT=200 bash bench/h200/real_models.sh ;;  # after PART=smol
esac
