"""End to end on CPU: real vLLM, the SmolLM2-135M model, our attention plugin in the worker.

Each engine runs in its own subprocess (xattn_vllm_run.py); the plugin's status markers in
XEDGE_STATUS_DIR prove that our impl ran and count which path each prefill took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attention_backend.vllm.engine_runs import run_engine

pytestmark = pytest.mark.vllm

SHORT = ["The capital of France is", "Write one sentence about the sea:"]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from server.models.store import ensure_default_model

    try:
        return ensure_default_model()
    except FileNotFoundError as exc:
        pytest.skip(f"SmolLM2 model not available: {exc}")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from attention_backend.sample_text import SampleTextUnavailable, long_texts

    try:
        return long_texts(2, 10_000)
    except SampleTextUnavailable as exc:
        pytest.skip(str(exc))


def _run(tmp: Path, name: str, spec: dict) -> tuple[dict, dict]:
    """Run one engine; return (its result, its attention.stats marker detail or {})."""
    run = run_engine(tmp, name, spec)
    return run.result, next(iter(run.stats.values()), {})


def _spec(model_dir: Path, xattn: dict, rounds: list[list[str]], **extra) -> dict:
    return {
        "model": str(model_dir),
        "additional_config": {"xattn": xattn},
        "rounds": rounds,
        "max_tokens": 16,
        "max_model_len": 4096,
        **extra,
    }


@pytest.fixture(scope="module")
def runs(model_dir: Path, texts: list[str], tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("xattn-vllm")
    medium = texts[0][:2500]
    long = texts[1][:9000]
    # "Once" is a one-token prompt: that request takes vLLM's own kernel, so the first step mixes
    # three sparse prefills with a dense row (the adapter runs vLLM's kernel on that row alone).
    forced = [[*SHORT, medium, "Once"]]
    return {
        "dense": _run(tmp, "dense", _spec(model_dir, {"enabled": False}, forced)),
        "forced": _run(tmp, "forced", _spec(model_dir, {"min_sparse_len": 2, "threshold": 1.0}, forced)),
        "realistic": _run(
            tmp,
            "realistic",
            _spec(
                model_dir,
                {"min_sparse_len": 1024, "threshold": 0.9},
                [[long, SHORT[0]], [long]],
                enable_prefix_caching=True,
            ),
        ),
    }


def test_forced_sparse_tau_one_matches_dense_backend(runs):
    dense, dense_stats = runs["dense"]
    forced, stats = runs["forced"]
    assert dense_stats == {}, "the disabled config must not take the sparse path"
    assert stats["sparse_prefills"] == 3 and stats["dense_short_prefills"] == 0, stats
    assert forced["prompt_lens"][0][3] == 1
    assert stats["fallback_cached_prefills"] == 0, stats
    assert stats["density"] == 1.0, stats
    assert max(forced["prompt_lens"][0]) > 256, "the medium prompt must span several 128-token blocks"
    assert forced["token_ids"] == dense["token_ids"]


def test_realistic_tau_long_prompt_runs_sparse_and_cache_hit_falls_back(runs):
    result, stats = runs["realistic"]
    long_len = result["prompt_lens"][0][0]
    assert 1024 <= long_len < 4096, long_len
    # Round 1: the long prompt is sparse, the short one dense. Round 2: the same long prompt hits the
    # prefix cache, so its forward lacks the cached context: it must run dense and be counted.
    assert stats["sparse_prefills"] == 1, stats
    assert stats["sparse_tokens"] == long_len, stats
    assert result["cached_tokens"][1][0] > 0, "round 2 should hit the prefix cache"
    assert stats["fallback_cached_prefills"] == 1, stats
    assert 0.0 < stats["density"] < 1.0, stats
    assert len(result["token_ids"][0][0]) == 16
