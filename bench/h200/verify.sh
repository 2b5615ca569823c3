#!/usr/bin/env bash
# Session 4: the sampling-verify logits processor inside the device's vLLM 0.26 (GPU tests in
# tests/server/engine/verify/test_verify_vllm_gpu.py) on the random-weight Llama. Results in $OUT.
set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD XEDGE_GPU_TEST_MODEL=/tmp/model
python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > "$OUT/make_model.log" 2>&1; echo "make_model rc=$?"
python3 -c "import vllm; print('vllm', vllm.__version__)"
t0=$(date +%s)
timeout 400 python3 -m pytest --noconftest -q -p no:cacheprovider -rA tests/server/engine/verify/test_verify_vllm_gpu.py \
  > "$OUT/verify_vllm_gpu_pytest.log" 2>&1
echo "pytest rc=$? in $(( $(date +%s) - t0 )) s"; tail -15 "$OUT/verify_vllm_gpu_pytest.log"
grep -m3 -E "Model Runner V2|V1 model runner|logits processor" "$OUT/verify_vllm_gpu_pytest.log"
