#!/usr/bin/env bash
# Issue 15, must-have 4: the prefix-cache BlockPool adapter inside the device's vLLM 0.26 (CUDA) on the
# random-weight Llama (make_model.py). Three engine runs of tests/server/engine/prefix_cache/engine_run.py
# (offline LLM, 40 blocks of 32 tokens, the ``order`` and ``pin`` scenarios): stock vLLM (our plugin not
# loaded), ``lru`` and ``guarded``. Pass: every request's num_cached_tokens under ``lru`` equals stock
# vLLM's. Results in $OUT: prefix_cache_gpu.json (+ one log per run). Run it in one device call after the
# usual unpack (/work/shared/gpu/README.md), with .gpucarry/run carried:
#   source .gpucarry/run/device_env.sh; bash bench/h200/prefix_cache_gpu.sh
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
# vLLM finds general plugins through entry points: a dist-info shim declares ours without installing
# the package (the device has no network).
EP=/tmp/xedge_ep/xedge_prefix_cache_shim-0.0.dist-info
mkdir -p "$EP"
printf 'Metadata-Version: 2.1\nName: xedge-prefix-cache-shim\nVersion: 0.0\n' > "$EP/METADATA"
printf '[vllm.general_plugins]\nxedge_prefix_cache = server.engine.prefix_cache.vllm_adapter:register\n' > "$EP/entry_points.txt"
export PYTHONPATH=/tmp/xedge_ep:$PYTHONPATH
[ -d /tmp/model ] || python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
python3 -c "import vllm; print('vllm', vllm.__version__)"
for run in stock lru guarded; do
  mkdir -p "/tmp/pc_status/$run"
  plugins=xedge_prefix_cache; [ "$run" = stock ] && plugins=none
  t0=$(date +%s)
  VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_PLUGINS=$plugins XEDGE_PREFIX_CACHE_POLICY=$run \
    timeout 170 python3 tests/server/engine/prefix_cache/engine_run.py order,pin /tmp/model "/tmp/pc_status/$run" \
    > "$OUT/prefix_cache_gpu_$run.log" 2>&1
  echo "$run rc=$? in $(( $(date +%s) - t0 )) s"
  grep -m1 "Failed to load plugin" "$OUT/prefix_cache_gpu_$run.log"
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
runs = {}
for run in ("stock", "lru", "guarded"):
    lines = [l for l in (out / f"prefix_cache_gpu_{run}.log").read_text().splitlines() if l.startswith("XEDGE_RESULT ")]
    runs[run] = json.loads(lines[-1].removeprefix("XEDGE_RESULT ")) if lines else None
import vllm
ok = bool(runs["stock"] and runs["lru"]) and runs["lru"]["cached"] == runs["stock"]["cached"]
result = {"vllm": vllm.__version__, "lru_equals_stock": ok, "runs": runs}
(out / "prefix_cache_gpu.json").write_text(json.dumps(result, indent=1) + "\n")
for run, r in runs.items():
    print(run, "missing" if r is None else f"policy={r['policy']} cached={r['cached']}")
print("lru cached tokens == stock vLLM:", ok)
PY
