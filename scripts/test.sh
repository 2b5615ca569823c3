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
echo "[test] pytest (CPU suite: not gpu, not slow)" >&2
exec "$VENV/bin/python" -m pytest -m "not gpu and not slow" --durations=15 "$@"
