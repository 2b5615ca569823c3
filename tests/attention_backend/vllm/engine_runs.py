"""Run one offline vLLM engine on CPU (xattn_vllm_run.py in a subprocess) and read what our plugin wrote.

    run = run_engine(tmp_path, "dense", spec)             # spec: see xattn_vllm_run.py
    run.result["token_ids"], run.impls[pid], run.stats[pid]

Each process that built our attention impl writes ``attention.impl.<pid>.json`` (and, once it served a
long prefill, ``attention.stats.<pid>.json``) under the run's ``XEDGE_STATUS_DIR``: one per worker, so
with tensor parallelism there is one per rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client_edge.protocol.status_marker import read_markers

RUNNER = Path(__file__).with_name("xattn_vllm_run.py")


@dataclass(frozen=True)
class EngineRun:
    result: dict[str, Any]  # what xattn_vllm_run.py wrote: token_ids, prompt_lens, cached_tokens, text, pid
    impls: dict[int, dict[str, Any]]  # pid -> attention.impl marker detail
    stats: dict[int, dict[str, Any]]  # pid -> attention.stats marker detail
    seconds: float


def run_engine(tmp: Path, name: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> EngineRun:
    """Run one engine with ``spec``; fail with its stderr tail unless it exits 0 with our impl in its path."""
    status = tmp / f"{name}-status"
    spec_path, out_path = tmp / f"{name}.json", tmp / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    full_env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "XEDGE_STATUS_DIR": str(status),
        **(env or {}),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(spec_path), str(out_path)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"{name} engine failed:\n{proc.stderr[-4000:]}"
    print(f"{name}: engine run took {seconds:.1f} s")
    assert "Failed to load plugin" not in proc.stderr, proc.stderr[-4000:]
    impls = {m.pid: m.detail for m in read_markers(status, "attention.impl.*.json")}
    assert impls, f"{name}: no attention.impl marker: our impl never ran"
    stats = {m.pid: m.detail for m in read_markers(status, "attention.stats.*.json")}
    return EngineRun(json.loads(out_path.read_text()), impls, stats, seconds)
