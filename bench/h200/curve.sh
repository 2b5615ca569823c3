#!/usr/bin/env bash
# Issue 14 must-have 3: the kernel speed curve at fixed densities (bench/xattn_curve.py), vLLM's FA3 and
# cuDNN SDPA as baselines in the same run. Needs the carried vLLM in /tmp/site (for FA3). Lands in $OUT.
#   SHAPES: which model shapes, in order (default d128):
#     d128  Llama-3.1-8B (32 q / 8 KV heads, d 128, FlexAttention too)
#     d256  Gemma-3-270M's global layers (4 / 1, d 256)
#     d64   SmolLM2-135M (9 / 3, d 64)
#   TESTS=1: first the estimation kernel's GPU tests (TESTS_K: another -k); FA3_TESTS=1: the fa3 sparse kernel's;
#   SWEEP=1: the estimation launch-shape sweep at 128K, S=16 (library-GEMM variants included; SWEEP_ARGS, e.g.
#   --default-only: only the default Triton launch shape; SWEEP_LIMIT: its seconds, default 200); SELECT=1: block selection at 32K-128K
#   (bench/xattn_select_speed.py) against SELECT_BASELINE, an earlier kernels/select.py, where that file exists.
#   ORDER=1: the fa3 per-head calls with a row's query blocks ascending vs descending (bench/xattn_fa3_row_order.py).
#   STREAMS=1: the default fa3 path at 2-16 streams, with the fp8 estimate and selection end to end
#   (bench/xattn_fa3_streams.py; STREAMS_ARGS, e.g. "--profile --densities 0.1 --streams 4": where the time above
#   density x FA3 goes, from one profiled call). SELECT_ARGS: more arguments of the selection bench (e.g. --lens).
#   CURVE_ARGS: more arguments of bench/xattn_curve.py (e.g. --per-head-streams 1,8).
# The device returns at most 8 files a call: each shape's json/log/png is packed into $OUT/curves.tgz.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_curve.txt"
if [ "${TESTS:-0}" = 1 ]; then  # TESTS_K: which of the kernel tests (default the estimation kernels')
  timeout 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py \
    -k "${TESTS_K:-estimate}" > "$OUT/estimate_pytest.log" 2>&1
  echo "estimate kernel tests rc=$?"; tail -1 "$OUT/estimate_pytest.log"
fi
if [ "${FA3_TESTS:-0}" = 1 ]; then  # the fa3 sparse kernel's GPU tests (the copy-free per-head variant included)
  timeout 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/vllm/test_fa3_sparse_gpu.py \
    > "$OUT/fa3_sparse_pytest.log" 2>&1
  echo "fa3 sparse tests rc=$?"; tail -1 "$OUT/fa3_sparse_pytest.log"
fi
mkdir -p /tmp/curves
if [ "${ORDER:-0}" = 1 ]; then
  timeout 200 python3 bench/xattn_fa3_row_order.py --out "$OUT/fa3_row_order" > "$OUT/fa3_row_order.log" 2>&1
  echo "fa3 row order rc=$?"; tail -7 "$OUT/fa3_row_order.log"
fi
if [ "${STREAMS:-0}" = 1 ]; then
  timeout 200 python3 bench/xattn_fa3_streams.py --e2e ${STREAMS_ARGS:-} --out "$OUT/fa3_streams" > "$OUT/fa3_streams.log" 2>&1
  echo "fa3 streams rc=$?"; tail -16 "$OUT/fa3_streams.log"
fi
if [ "${SELECT:-0}" = 1 ]; then
  BASE=""; [ -s "${SELECT_BASELINE:-}" ] && BASE="--baseline $SELECT_BASELINE"
  timeout 300 python3 bench/xattn_select_speed.py $BASE ${SELECT_ARGS:-} --out "$OUT/xattn_select_speed" > "$OUT/xattn_select_speed.log" 2>&1
  echo "select speed rc=$?"; tail -8 "$OUT/xattn_select_speed.log"
fi
if [ "${SWEEP:-0}" = 1 ]; then
  t0=$(date +%s)
  timeout "${SWEEP_LIMIT:-200}" python3 bench/xattn_est_sweep.py --lens 131072 --strides 16 ${SWEEP_ARGS:-} --out /tmp/curves/xattn_est_sweep \
    > /tmp/curves/xattn_est_sweep.log 2>&1
  echo "est sweep rc=$? in $(( $(date +%s) - t0 )) s"; tail -16 /tmp/curves/xattn_est_sweep.log
fi
for S in ${SHAPES:-d128}; do
  case $S in
    d128) ARGS=""  # the sweep (same shape) ran: also time its fastest library-GEMM estimate
          [ -s /tmp/curves/xattn_est_sweep.json ] && ARGS="--gemm-from-sweep /tmp/curves/xattn_est_sweep.json" ;;
    d256) ARGS="--heads 4 --kv-heads 1 --head-dim 256 --no-flex" ;;
    d64)  ARGS="--heads 9 --kv-heads 3 --head-dim 64 --no-flex" ;;
    none) continue ;;
  esac
  NAME=xattn_curve$([ "$S" = d128 ] || echo "_$S")
  t0=$(date +%s)
  timeout "${CURVE_LIMIT:-300}" python3 bench/xattn_curve.py $ARGS ${CURVE_ARGS:-} --out "/tmp/curves/$NAME" > "/tmp/curves/$NAME.log" 2>&1
  echo "$NAME rc=$? in $(( $(date +%s) - t0 )) s"; grep -v '^{' "/tmp/curves/$NAME.log" | grep -i "131,072\|131072\|estimation\|fastest" | head -8
done
tar -czf "$OUT/curves.tgz" -C /tmp/curves .
