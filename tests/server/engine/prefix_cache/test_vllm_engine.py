"""Real vLLM on CPU (SmolLM2-135M, offline engine in one process, 40 blocks of 32 tokens): stock vLLM vs
our ``lru`` vs ``workload``, seen through vLLM's own ``RequestOutput.num_cached_tokens``.

Each configuration runs ``engine_run.py`` in its own process (the plugin patches vLLM's classes
process-wide): ``order`` then ``pin`` scenarios in one engine start, about 30 s each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

RUNNER = Path(__file__).with_name("engine_run.py")
BLOCK = 32


def _run(tmp: Path, name: str, policy: str | None) -> dict:
    pytest.importorskip("vllm", reason="vLLM is not installed")
    from server.models.store import ensure_default_model

    status_dir = tmp / name
    status_dir.mkdir()
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": "2",
        # stock: no plugin of ours (and no LoRA resolvers: a name that matches nothing)
        "VLLM_PLUGINS": "xedge_prefix_cache" if policy else "none",
        "XEDGE_PREFIX_CACHE_POLICY": policy or "lru",
    }
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "order,pin", str(ensure_default_model()), str(status_dir)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("XEDGE_RESULT ")]
    assert proc.returncode == 0 and lines, f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Failed to load plugin" not in proc.stderr + proc.stdout
    result = json.loads(lines[-1].removeprefix("XEDGE_RESULT "))
    result["markers"] = {
        p.name.split(".")[1]: json.loads(p.read_text()) for p in status_dir.glob("prefix_cache.*.json")
    }
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("engine")
    return {
        name: _run(tmp, name, policy)
        for name, policy in (("stock", None), ("lru", "lru"), ("workload", "workload"))
    }


def test_plugin_is_in_the_engine_only_when_enabled(runs: dict[str, dict]) -> None:
    assert runs["stock"]["policy"] is None and runs["stock"]["markers"] == {}
    for name in ("lru", "workload"):
        assert runs[name]["policy"] == name
        assert runs[name]["markers"]["block_pool"]["detail"]["policy"] == name
        assert runs[name]["markers"]["stats"]["detail"]["policy"] == name


def test_lru_reproduces_stock_vllm_cached_tokens(runs: dict[str, dict]) -> None:
    stock, lru = runs["stock"]["cached"]["order"], runs["lru"]["cached"]["order"]
    assert lru == stock
    assert any(stock) and len(set(stock)) > 2, f"the scripted sequence must produce varied hits: {stock}"
    stats = runs["lru"]["markers"]["stats"]["detail"]
    assert stats["evictions"] > 0


def test_pinned_system_prompt_survives_the_flood_under_workload_only(runs: dict[str, dict]) -> None:
    assert runs["stock"]["cached"]["pin"][-1] == 0
    assert runs["lru"]["cached"]["pin"][-1] == 0
    assert runs["workload"]["cached"]["pin"][-1] == 4 * BLOCK
    stats = runs["workload"]["markers"]["stats"]["detail"]
    assert stats["categories"]["system"]["hit_tokens"] >= 4 * BLOCK
    assert stats["categories"]["oneoff"]["requests"] == 8
