#!/usr/bin/env bash
# Session 4: V1-vs-V2 model runner cost of configuring the verify logits processor (vLLM 0.26, H200).
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
[ -d /tmp/model ] || python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1
timeout 520 python3 bench/vllm_runner_cost.py --model /tmp/model --out "$OUT/vllm_runner_cost.json" 2>&1 | tail -20
