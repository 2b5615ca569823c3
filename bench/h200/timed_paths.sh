#!/usr/bin/env bash
# Issue 14, 2026-12-06 14:00 UTC session: the timed paths (attention_backend/layer_gate.py) on real weights, and
# the d 64 break-even of the four-warp sparse kernel. After the vLLM unpack and the SmolLM2 weights in
# /tmp/gparts (bench/h200/real_models.sh says how). Results in $OUT. Two calls on one warm machine:
#   STAGE=1: the GPU tests of what is new (PathClock, the CUDA layer gate), the kernel speed curve at SmolLM2's
#            shape (its break-even, kept in /tmp/be64 for stage 2), then FLASH_ATTN on SmolLM2 (the retrieval
#            bench: TTFT at 8K-128K and the 200-prompt suite). ~6 minutes.
#   STAGE=2: XAttention on SmolLM2 with the timed paths (TTFT + suite) and without them (TTFT only), both with
#            dense_above = the break-even stage 1 measured; the comparison against stage 1's dense run. ~5 minutes.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
if [ "${STAGE:-1}" = 1 ]; then
  t0=$(date +%s)
  timeout 120 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_path_clock_gpu.py \
    tests/attention_backend/vllm/test_cuda_layer_gate.py tests/attention_backend/test_layer_gate.py > "$OUT/pytest_timed_paths.log" 2>&1
  echo "pytest rc=$? in $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/pytest_timed_paths.log"
  timeout 150 python3 bench/xattn_curve.py --heads 9 --kv-heads 3 --head-dim 64 --no-flex --out "$OUT/xattn_curve_d64" \
    > "$OUT/xattn_curve_d64.log" 2>&1
  echo "curve d64 rc=$?"
  python3 - "$OUT/xattn_curve_d64.json" <<'PY' | tee /tmp/be64.txt
import json, math, sys
rows = json.load(open(sys.argv[1]))["rows"]
values = [v for r in rows for v in r["break_even"].values() if v is not None]
print({r["length"] if "length" in r else i: r["break_even"] for i, r in enumerate(rows)}, file=sys.stderr)
print(f"{math.floor(min(values) * 100) / 100:.2f}")
PY
  MODEL=smol RUNS=dense RUN_TIMEOUT=330 bash bench/h200/real_models.sh
elif [ "$STAGE" = 3 ]; then
  # after the first two stages' results: the robust path costs (median of three, each path twice first), the
  # shipped d 64 break-even (0.68, stage 1's), the bench's warm-up; TTFT only, dense then XAttention. ~4 minutes.
  # LENS=32000,128000 (a short call): the suite of those lengths only
  [ -d /tmp/smol16 ] && [ -f /tmp/suite_smol.json ] || MODEL=smol RUNS=none bash bench/h200/real_models.sh > "$OUT/prep.log" 2>&1
  timeout 60 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_path_clock_gpu.py \
    > "$OUT/pytest_path_clock.log" 2>&1; echo "pytest rc=$?"; tail -1 "$OUT/pytest_path_clock.log"
  MIN=""; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100 || MIN="--min-sparse-ms 0.6 --dense-above 0.68"
  for R in dense xattn; do
    B=$([ $R = dense ] && echo FLASH_ATTN || echo xattn)
    timeout 200 python3 bench/xattn_retrieval.py run --model /tmp/smol16 --suite /tmp/suite_smol.json --backend $B \
      --label "$R (warm-up 4)" --ttft-only --out "$OUT/smol_${R}_warm.json" $([ $R = xattn ] && echo $MIN) > "$OUT/smol_${R}_warm.log" 2>&1
    echo "[$R] rc=$?"; grep -h '^\[ttft\]' "$OUT/smol_${R}_warm.log"
  done
  python3 bench/xattn_retrieval.py compare "$OUT/smol_dense_warm.json" "$OUT/smol_xattn_warm.json" --out "$OUT/xattn_real_smol_warm" 2>&1 | head -8
else
  BE=$(cat /tmp/be64.txt); echo "dense_above (d 64 break-even) $BE"
  # a card without an entry in attention_backend/break_even.py (an H200) also needs the minimum of work: the H100's
  MIN=""; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100 || MIN="--min-sparse-ms 0.6"
  MODEL=smol RUNS="xattn xattn_untimed" RUN_TIMEOUT=260 XATTN_ARGS="--dense-above $BE $MIN" bash bench/h200/real_models.sh
fi
