set -u
source .gpucarry/run/device_env.sh
export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -d /tmp/model ] || python3 .gpucarry/run/make_model.py .gpucarry/run /tmp/model > /dev/null 2>&1
for spec in "fa FLASH_ATTN 16 triton" "fa3 xattn 16 fa3" "tri xattn 16 triton" "fa3p128 xattn 128 fa3" "fa128 FLASH_ATTN 128 triton"; do set -- $spec; t0=$(date +%s)
  timeout 120 python3 bench/vllm_ttft.py equal --backend $2 --block-size $3 --sparse-kernel $4 --out "$OUT/eq_$1.json" > "$OUT/eq_$1.log" 2>&1
  echo "[eq_$1] rc=$? $(( $(date +%s) - t0 )) s"; done
for x in fa3 tri; do python3 bench/vllm_ttft.py compare "$OUT/eq_fa.json" "$OUT/eq_$x.json" --out "$OUT/cmp_$x.json" | tail -1; done
python3 bench/vllm_ttft.py compare "$OUT/eq_fa128.json" "$OUT/eq_fa3p128.json" --out "$OUT/cmp_fa3p128.json" | tail -1
python3 -c "
import json,sys
for n in ['fa','fa3','tri']:
    m=json.load(open('$OUT/eq_'+n+'.json'))['margins']; print(n, [round(min(r),5) for r in m], [round(x,4) for x in m[1][:5]])"
rm -f $OUT/eq_*.log
timeout 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/attention_backend/test_kernels_gpu.py -k fp8 2>&1 | tail -3
