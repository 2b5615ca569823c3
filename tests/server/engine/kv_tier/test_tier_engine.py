"""The host KV tier inside a real vLLM (CPU, the packaged model): ``tier_run.py`` in its own process, with and
without the tier, on the same requests.

What must hold: prompts whose prefix vLLM evicted (a flood bigger than its 40-block cache came between) load
that prefix back from the tier (vLLM's own ``num_cached_tokens``, which counts external hits), and the answer
is the one computed KV gives: the same greedy tokens and the same first-token logprob.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("tier_run.py")
BLOCK = 32


def _run(tmp: Path, host_blocks: int) -> dict:
    pytest.importorskip("vllm", reason="vLLM is not installed")
    from server.models.store import ensure_default_model

    status_dir = tmp / f"status{host_blocks}"
    status_dir.mkdir()
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": "2",
        "VLLM_PLUGINS": "xedge_prefix_cache",
        "XEDGE_PREFIX_CACHE_POLICY": "lru",
    }
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(ensure_default_model()), str(status_dir), str(host_blocks)],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("XEDGE_RESULT ")]
    assert proc.returncode == 0 and lines, f"tier run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1].removeprefix("XEDGE_RESULT "))
    result["markers"] = [json.loads(p.read_text()) for p in status_dir.glob("kv_tier.*.json")]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("kv_tier")
    return {"tier": _run(tmp, 256), "none": _run(tmp, 0)}


def test_evicted_prefixes_load_back_from_the_tier(runs: dict[str, dict]) -> None:
    tier, none = runs["tier"]["rows"], runs["none"]["rows"]
    again_tier, again_none = tier[-3:], none[-3:]
    assert [r["cached"] for r in again_none] == [0, 0, 0]  # the flood evicted them from vLLM's cache
    assert [r["cached"] for r in again_tier] == [6 * BLOCK] * 3  # every full block of the old prompt
    assert [r["cached"] for r in tier[:-3]] == [0] * (len(tier) - 3)  # nothing else was ever seen twice
    stats = runs["tier"]["tier"]
    assert stats["hit_blocks"] == 18 and stats["evicted_blocks"] == 0
    assert stats["saved_blocks"] == stats["held_blocks"] >= 18
    assert {m["event"] for m in runs["tier"]["markers"]} >= {"registered", "stats"}


def test_loaded_kv_gives_the_computed_answer(runs: dict[str, dict]) -> None:
    for t, n in zip(runs["tier"]["rows"], runs["none"]["rows"], strict=True):
        assert t["tokens"] == n["tokens"]
        assert t["first_logprob"] == pytest.approx(n["first_logprob"], abs=1e-4)
