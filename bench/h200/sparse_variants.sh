#!/usr/bin/env bash
# Issue 14 must-have 3: the sparse attention kernel's variants at 128K/64K/32K and densities 0.05-0.5
# against vLLM's FA3 in the same run, vLLM's page-128 cache layout at 128K, then a chunk correctness check
# (bench/xattn_sparse_variants.py): the pointer kernel and the TMA variants.
# Needs the carried vLLM in /tmp/site (for FA3). About 1 minute on an H100 (46 s, 2026-12-05), capped at
# 150 s. Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_sparse_variants.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, triton.__file__)" \
  | tee -a "$OUT/gpu_sparse_variants.txt"
run() {  # name limit tail-lines args...
  local name=$1 limit=$2 lines=$3; shift 3
  local t0=$(date +%s)
  timeout "$limit" python3 bench/xattn_sparse_variants.py --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc in $(( $(date +%s) - t0 )) s"
  if [ $rc -ne 0 ] && [ -f "$OUT/$name.json" ]; then  # cut short or crashed: the table of what finished
    python3 bench/xattn_sparse_variants.py --render "$OUT/$name.json" >> "$OUT/$name.log" 2>&1
  fi
  grep -v '^{' "$OUT/$name.log" | grep -v '^\s*$' | tail -"$lines"
}
run xattn_sparse_variants "${SPARSE_LIMIT:-150}" 30 --variants pointer,tma-s2,tma-s3,tma-bn64-s3,tma-qka-s3
# The warp-specialised TMA variants hang on an H100 (bench/results/xattn_sparse_variants/notes.md) and are
# refused on a GPU (sparse_attention.WS_HANGS): not benched.
