#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, check import directions, run the CPU test suite.
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
  bash "$engine" >&2 || echo "[test] no Docker engine started: the docker tests will skip" >&2
fi
# The shared session store's tests start a real redis-server (Debian package; they skip, saying why, without it).
if ! command -v redis-server >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "[test] installing redis-server (apt-get)" >&2
  { apt-get install -y -q redis-server || { apt-get update -q && apt-get install -y -q redis-server; }; } >/dev/null \
    || echo "[test] redis-server not installed: the Redis store tests will skip" >&2
fi
echo "[test] pytest (CPU suite: not gpu, not slow)" >&2
exec "$VENV/bin/python" -m pytest -m "not gpu and not slow" --durations=15 "$@"
