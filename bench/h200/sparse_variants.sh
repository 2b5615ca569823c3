#!/usr/bin/env bash
# Issue 14 must-have 3: the sparse attention kernel's variants (pointer loads vs TMA, stages, key-tile
# rows, block-table prefetch) at 128K/64K/32K and densities 0.05-0.5 against vLLM's FA3 in the same run
# (bench/xattn_sparse_variants.py; a chunk check on vLLM's cache layout first), then the warp-specialised
# TMA variants at 128K in a second process (Triton's Hopper warp specialisation is new: a compiler crash
# there must not lose the main table). Needs the carried vLLM in /tmp/site (for FA3). About 3 minutes on
# an H100, capped at 160 + 75 s. Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_sparse_variants.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, triton.__file__)" \
  | tee -a "$OUT/gpu_sparse_variants.txt"
run() {  # name limit args...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" python3 bench/xattn_sparse_variants.py --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc in $(( $(date +%s) - t0 )) s"
  if [ $rc -ne 0 ] && [ -f "$OUT/$name.json" ]; then  # cut short or crashed: the table of what finished
    python3 bench/xattn_sparse_variants.py --render "$OUT/$name.json" >> "$OUT/$name.log" 2>&1
  fi
  grep -v '^{' "$OUT/$name.log" | grep -v '^\s*$' | tail -"${TAIL:-30}"
}
run xattn_sparse_variants "${SPARSE_LIMIT:-160}"
TAIL=12 run xattn_sparse_variants_ws "${SPARSE_WS_LIMIT:-75}" --lens 131072 --densities 0.1,0.5 --paged-densities 0.1 \
  --variants pointer,tma-ws-s3,tma-ws-w4-s3
