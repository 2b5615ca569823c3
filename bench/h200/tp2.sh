#!/usr/bin/env bash
# Issue 14 must-have 5 (tensor parallel) on a two-GPU machine (nvidia-h100-x2 or nvidia-h200-x2), vLLM 0.26
# carried and unpacked as in ../shared/gpu/README.md, from the repo root, in one device call:
#   source .gpucarry/run/device_env.sh; mv .gpucarry/c02/part.* /tmp/parts/ && bash .gpucarry/run/device_unpack.sh \
#     && bash bench/h200/tp2.sh
# (c01 moved to /tmp/parts by the call before, as the README says; carry .gpucarry/run). Not run yet: no
# two-GPU machine was lent when it was written; the CPU version of the same checks is
# tests/attention_backend/vllm/test_xattn_vllm_tp.py.
# 1. tau = 1 greedy equality at --tensor-parallel-size 2: FLASH_ATTN alone (our plugin not loaded) vs our
#    backend (195M random Llama of make_model.py: 16 query / 8 KV heads, 8 / 4 per GPU), as ttft_dense.sh
#    does at TP=1; both workers must show our impl (tp_rank 0 and 1, 8 heads each) with sparse prefills.
# 2. TTFT at 131,000 tokens, Llama-3.1-8B shape, dummy weights, 128-token KV blocks, TP=2: FLASH_ATTN vs
#    XAttention (S=16, tau 0.9, dense_above = the card's break-even).
# Results in $OUT: one JSON + log per run, tp2.json (summary). Budget: ~7-9 min of the call's 10.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
# NVLink multicast stays off (KINDS.md); vllm_ttft.py --tp also turns vLLM's custom and symmetric-memory
# all-reduce off, so the all-reduce is plain NCCL.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_ALLREDUCE_USE_SYMM_MEM=0
# The workers are separate processes: they find our backend only through the plugin entry point, which a
# dist-info shim declares without installing the package (no network there). VLLM_PLUGINS picks it per run.
EP=/tmp/xedge_ep/xedge_attention_shim-0.0.dist-info
mkdir -p "$EP"
printf 'Metadata-Version: 2.1\nName: xedge-attention-shim\nVersion: 0.0\n' > "$EP/METADATA"
printf '[vllm.general_plugins]\nxedge_attention = attention_backend.vllm.plugin:register\n' > "$EP/entry_points.txt"
export PYTHONPATH=/tmp/xedge_ep:$PYTHONPATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] || { echo "tp2.sh: needs 2 GPUs, found $(nvidia-smi -L | wc -l)"; exit 2; }
[ -d /tmp/model ] || python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
run() { local name=$1 limit=$2 plugins=$3; shift 3; local t0=$(date +%s)
  mkdir -p "/tmp/tp2_status/$name"
  VLLM_PLUGINS=$plugins XEDGE_STATUS_DIR=/tmp/tp2_status/$name \
    timeout "$limit" python3 bench/vllm_ttft.py "$@" --tp 2 --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "[$name] rc=$? $(( $(date +%s) - t0 )) s: $(grep -h '^\[ttft\]' "$OUT/$name.log" | tr '\n' ' ')"
  grep -m1 "Failed to load plugin" "$OUT/$name.log"; }
run eq_fa 120 none equal --backend FLASH_ATTN --block-size 128
run eq_x 120 xedge_attention equal --backend xattn --block-size 128
python3 bench/vllm_ttft.py compare "$OUT/eq_fa.json" "$OUT/eq_x.json" --out "$OUT/eq_cmp.json" | cut -c1-400
run ttft_fa 150 none ttft --backend FLASH_ATTN --block-size 128 --lens 131000
run ttft_x 170 xedge_attention ttft --backend xattn --block-size 128 --lens 131000 --tau 0.9 --stride 16
grep -h "xattn:" "$OUT/ttft_x.log" | sort | uniq -c | head -5
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None
eq_x, cmp, t_fa, t_x = load("eq_x"), load("eq_cmp"), load("ttft_fa"), load("ttft_x")
def workers(run):
    s = (run or {}).get("xattn_stats", {})
    impls, stats = s.get("workers_impl", {}), s.get("workers_stats", {})
    return [{**{k: impls[pid].get(k) for k in ("tp_rank", "tp_size", "num_heads", "num_kv_heads")},
             **{k: stats.get(pid, {}).get(k) for k in ("sparse_prefills", "sparse_row_layers", "dense_row_layers", "density")}}
            for pid in sorted(impls, key=lambda p: impls[p].get("tp_rank", -1))]
summary = {
    "tau1_equal_tp2": None if cmp is None else cmp["all_equal"],
    "eq_x_workers": workers(eq_x),
    "both_workers_sparse": len(workers(eq_x)) == 2 and all((w["sparse_prefills"] or 0) > 0 for w in workers(eq_x)),
    "ttft_131000_s": {"FLASH_ATTN": (t_fa or {}).get("ttft_s"), "xattn": (t_x or {}).get("ttft_s")},
    "ttft_x_workers": workers(t_x),
}
if t_fa and t_x:
    fa, x = min(t_fa["ttft_s"]["131000"]), min(t_x["ttft_s"]["131000"])
    summary["ttft_ratio_x_over_fa"] = x / fa
(out / "tp2.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PY
