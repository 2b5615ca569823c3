#!/usr/bin/env bash
# Issue 14: where SmolLM2's long prefill time goes, dense FLASH_ATTN vs XAttention (bench/xattn_profile.py),
# and TTFT at 8K-128K. Needs the vLLM carry unpacked and the SmolLM2 GGUF in /tmp/gparts (real_models.sh's
# first steps). Converted once to /tmp/smol (YaRN x4, 8K-32K) and /tmp/smol16 (YaRN x16, 64K-128K).
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
if [ ! -d /tmp/smol ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .xattn_carry/run/gguf-*.whl 2>&1 | tail -1
  mkdir -p /tmp/gg && cat /tmp/gparts/part.* > /tmp/gg/m.gguf
  echo "$(cat .xattn_carry/run/gguf.sha256)  /tmp/gg/m.gguf" | sha256sum -c - || exit 1
  python3 bench/xattn_retrieval.py convert /tmp/gg/m.gguf /tmp/smol --extend 4 > "$OUT/convert.log" 2>&1 || { tail -5 "$OUT/convert.log"; exit 1; }
  python3 bench/xattn_retrieval.py convert /tmp/gg/m.gguf /tmp/smol16 --extend 16 >> "$OUT/convert.log" 2>&1 || { tail -5 "$OUT/convert.log"; exit 1; }
fi
prof() { local name=$1; shift; timeout 200 python3 bench/xattn_profile.py --haystack .xattn_carry/run/haystack.txt --out "$OUT/$name.txt" "$@" > "/tmp/$name.log" 2>&1; echo "[$name] rc=$?"; grep -h "^backend=\|host syncs\|Error" "/tmp/$name.log" | tail -3; }
for L in ${PROFILE_LENS:-32000}; do
  M=/tmp/smol; [ "$L" -gt 32768 ] && M=/tmp/smol16
  prof "prof_dense_$L" --model $M --len $L --backend FLASH_ATTN
  prof "prof_xattn_$L" --model $M --len $L --backend xattn --xattn '{"threshold": 0.9, "stride": 16, "min_sparse_len": 4096, "dense_above": 1.0}'
done
