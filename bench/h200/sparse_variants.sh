#!/usr/bin/env bash
# Issue 14 must-have 3: the sparse attention kernel's variants (pointer loads vs TMA, pipeline stages,
# key-tile rows, q k^T one step ahead) at 128K/64K/32K and densities 0.05-0.5 against vLLM's FA3 in the
# same run, vLLM's page-128 cache layout at 128K, then a chunk correctness check
# (bench/xattn_sparse_variants.py). Needs the carried vLLM in /tmp/site (for FA3). About 2-3 minutes on an
# H100, capped at 230 s. Lands in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_sparse_variants.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, triton.__file__)" \
  | tee -a "$OUT/gpu_sparse_variants.txt"
t0=$(date +%s)
timeout "${SPARSE_LIMIT:-230}" python3 bench/xattn_sparse_variants.py --out "$OUT/xattn_sparse_variants" \
  > "$OUT/xattn_sparse_variants.log" 2>&1
rc=$?
echo "xattn_sparse_variants rc=$rc in $(( $(date +%s) - t0 )) s"
if [ $rc -ne 0 ] && [ -f "$OUT/xattn_sparse_variants.json" ]; then  # cut short or crashed: what finished
  python3 bench/xattn_sparse_variants.py --render "$OUT/xattn_sparse_variants.json" >> "$OUT/xattn_sparse_variants.log" 2>&1
fi
grep -v '^{' "$OUT/xattn_sparse_variants.log" | grep -v '^\s*$' | tail -40
