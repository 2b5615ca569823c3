"""Our policies inside vLLM's real KVCacheManager / BlockPool (no model): the scheduler's call sequence
for each request, driven by ``kv_manager_harness``. Needs vLLM importable; no engine is started."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from server.engine.prefix_cache import vllm_adapter  # noqa: E402
from tests.server.engine.prefix_cache.kv_manager_harness import (  # noqa: E402
    BLOCK,
    make_manager,
    run_sequence,
)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XEDGE_STATUS_DIR", raising=False)
    vllm_adapter.register()


def _conversations(seed: int, n: int = 80) -> list[tuple[list[int], dict | None]]:
    rng = random.Random(seed)
    system = list(range(1000, 1000 + 3 * BLOCK))
    histories = [list(system) for _ in range(12)]
    prompts = []
    for i in range(n):
        if rng.random() < 0.3:
            prompts.append(([rng.randrange(2000, 40000) for _ in range(rng.randrange(1, 6) * BLOCK)], None))
            continue
        h = histories[rng.randrange(len(histories))]
        h.extend(rng.randrange(2000, 40000) for _ in range(rng.randrange(BLOCK // 2, 2 * BLOCK)))
        prompts.append((h + [i], None))
    return prompts


@pytest.mark.parametrize("seed", [0, 1])
def test_lru_allocates_exactly_what_stock_vllm_would(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Stock vLLM pops the head of its free queue; with ``lru`` installed every allocation must return
    exactly that head (the blocks vLLM would have evicted), in order, while evictions happen."""
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "lru")
    manager = make_manager(48)
    run = run_sequence(manager, _conversations(seed))
    policy = vllm_adapter.installed_policy(manager.block_pool)
    assert policy is not None and policy.name == "lru"
    assert policy.stats.evictions > 20, "the sequence must put the cache under pressure"
    assert sum(run.cached_tokens) > 0
    mismatches = [(i, got, head) for i, (got, head) in enumerate(run.allocations) if got != head]
    assert not mismatches, mismatches[:3]
    policy.check_integrity()
    assert len(policy) == manager.block_pool.get_num_free_blocks() - sum(
        1 for b in manager.block_pool.free_block_queue.get_all_free_blocks() if b.block_hash is None
    )


def _pin_sequence() -> list[tuple[list[int], dict | None]]:
    rng = random.Random(3)
    system = [rng.randrange(2000, 40000) for _ in range(4 * BLOCK)]
    pin = {"xedge_category": "system", "xedge_pin_ttl_s": 3600, "xedge_pin_tokens": 4 * BLOCK}
    prompts = [(system + [1, 2, 3], pin)]
    for _ in range(10):
        prompts.append(
            ([rng.randrange(2000, 40000) for _ in range(6 * BLOCK + 1)], {"xedge_category": "oneoff"})
        )
    prompts.append((system + [4, 5, 6], pin))
    return prompts


@pytest.mark.parametrize(("policy", "expected"), [("workload", 4 * BLOCK), ("lru", 0)])
def test_pinned_system_prompt_survives_a_flood_only_when_pinned(
    monkeypatch: pytest.MonkeyPatch, policy: str, expected: int
) -> None:
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, policy)
    manager = make_manager(40)
    run = run_sequence(manager, _pin_sequence())
    assert run.cached_tokens[-1] == expected
    installed = vllm_adapter.installed_policy(manager.block_pool)
    assert installed.stats.evictions > 20  # the flood did evict
    categories = installed.stats.categories
    assert categories["oneoff"].requests == 10 and categories["system"].requests == 2
    assert categories["system"].hit_tokens == expected
    installed.check_integrity()


def test_allocation_cost_scales_with_evicted_blocks_not_pool_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.core.kv_cache_utils import FreeKVCacheBlockQueue

    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "workload")
    touched = {"n": 0}
    for name in ("popleft_n", "prepend_n"):
        original = getattr(FreeKVCacheBlockQueue, name)

        def counting(self, arg, _original=original):
            touched["n"] += arg if isinstance(arg, int) else len(arg)
            return _original(self, arg)

        monkeypatch.setattr(FreeKVCacheBlockQueue, name, counting)
    manager = make_manager(4000)
    spy_free = manager.block_pool.free_block_queue.get_all_free_blocks
    manager.block_pool.free_block_queue.get_all_free_blocks = lambda: spy_free()[:0]  # harness spy: free
    prompts = [([i * 100000 + j for j in range(20 * BLOCK)], None) for i in range(400)]  # 2x the pool
    run_sequence(manager, prompts)
    allocated = 400 * 20
    assert touched["n"] <= 4 * allocated, touched


def test_markers_name_the_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XEDGE_STATUS_DIR", str(tmp_path))
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "s3fifo")
    vllm_adapter.register()
    manager = make_manager(40)
    run_sequence(manager, _pin_sequence())
    markers = {p.name.split(".")[1]: json.loads(p.read_text()) for p in tmp_path.glob("prefix_cache.*.json")}
    assert markers["registered"]["detail"]["policy"] == "s3fifo"
    assert markers["block_pool"]["detail"]["policy"] == "s3fifo"
    assert markers["stats"]["detail"]["policy"] == "s3fifo"


@pytest.mark.parametrize(
    ("policy", "keys"),
    [
        ("guarded", ("guard_leader", "guard_switches", "guard_loss_budget_used")),
        ("session", ("session_evictions",)),
    ],
)
def test_stats_marker_carries_the_policys_own_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: str, keys: tuple[str, ...]
) -> None:
    monkeypatch.setenv("XEDGE_STATUS_DIR", str(tmp_path))
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, policy)
    manager = make_manager(40)
    run_sequence(manager, _rotation_sequence())
    vllm_adapter.flush_stats(manager.block_pool)
    (marker,) = tmp_path.glob("prefix_cache.stats.*.json")
    own = json.loads(marker.read_text())["detail"]["policy_stats"]
    assert own == vllm_adapter.installed_policy(manager.block_pool).own_stats()
    assert set(keys) <= set(own)
    if policy == "session":
        assert own["session_live"] == 4 and sum(own["session_evictions"].values()) > 0


@pytest.mark.parametrize(
    "bad",
    [
        {"xedge_session": ""},
        {"xedge_session": "k" * 65},
        {"xedge_session": 12},
        {"xedge_session_ttl_s": -1},
        {"xedge_session_final": "yes"},
        {"xedge_closed_sessions": "a,,b"},
        {"xedge": "not an object"},
    ],
)
def test_session_metadata_that_does_not_parse_is_counted_and_runs_without_metadata(
    monkeypatch: pytest.MonkeyPatch, bad: dict
) -> None:
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "session")
    manager = make_manager(40)
    prompt = [5000 + j for j in range(3 * BLOCK)]
    good = {"xedge_category": "edge-session", "xedge_session": "k0", "xedge_session_ttl_s": 600}
    run = run_sequence(manager, [(prompt + [1], good), (prompt + [2], {**good, **bad})])
    installed = vllm_adapter.installed_policy(manager.block_pool)
    assert installed.stats.invalid_meta == 1
    assert run.cached_tokens == [0, 3 * BLOCK]  # the request ran (as no-metadata) and hit the prefix
    assert installed.stats.categories["default"].requests == 1
    installed.check_integrity()


def test_a_pool_without_a_cacheable_block_runs_without_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "session")
    manager = make_manager(1)  # block 0 is vLLM's null block: nothing to cache, nothing to evict
    assert vllm_adapter.installed_policy(manager.block_pool) is None


def test_unknown_policy_fails_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.engine.prefix_cache.registry import UnknownPolicyError

    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "fifo")
    with pytest.raises(
        UnknownPolicyError, match="valid: density, guarded, lru, s3fifo, session, session-due, workload, workload-paper"
    ):
        vllm_adapter.register()


def _rotation_sequence(bad_meta: bool = False) -> list[tuple[list[int], dict | None]]:
    """Four edge sessions of 12 blocks each (48 > the 39 usable blocks) escalating in rotation, one new
    block per escalation; the second round's requests are the ones measured."""
    contexts = [[s * 100000 + j for j in range(12 * BLOCK)] for s in range(4)]
    prompts: list[tuple[list[int], dict | None]] = []
    for r in range(3):
        for s, ctx in enumerate(contexts):
            ctx.extend(s * 100000 + 50000 + r * BLOCK + j for j in range(BLOCK))
            meta: dict = {
                "xedge_category": "edge-session",
                "xedge_session": f"k{s}",
                "xedge_session_ttl_s": 600,
            }
            if bad_meta and r == 1 and s == 0:
                meta["xedge_closed_sessions"] = 7  # not a string: counted, request runs without metadata
            prompts.append((list(ctx) + [1], meta))
    return prompts


@pytest.mark.parametrize("policy", ["lru", "session"])
def test_sessions_in_rotation_keep_hits_only_when_session_aware(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, policy)
    manager = make_manager(40)
    run = run_sequence(manager, _rotation_sequence(bad_meta=True))
    later = run.cached_tokens[4:]
    installed = vllm_adapter.installed_policy(manager.block_pool)
    installed.check_integrity()
    assert installed.stats.invalid_meta == 1
    if policy == "lru":
        assert sum(later) == 0  # each session's blocks are the least recently used when it comes back
    else:
        # two sessions fit the protected share (0.9 of 39 blocks) and hit (nearly) their whole context
        assert sum(1 for c in later if c >= 10 * BLOCK) >= 4, later


def _bench_rotation_sequence() -> list[tuple[list[int], dict | None]]:
    """The vLLM session bench's shape: 8 sessions of 15 blocks (2x the 63 usable blocks) opened with a
    prefill, then 4 rounds in which each escalates in turn with one new block."""
    contexts = [[s * 100000 + j for j in range(15 * BLOCK)] for s in range(8)]

    def meta(s: int) -> dict:
        return {"xedge_category": "edge-session", "xedge_session": f"k{s}", "xedge_session_ttl_s": 600}

    prompts: list[tuple[list[int], dict | None]] = [(list(c), meta(s)) for s, c in enumerate(contexts)]
    for r in range(4):
        for s, ctx in enumerate(contexts):
            ctx.extend(s * 100000 + 50000 + r * BLOCK + j for j in range(BLOCK))
            prompts.append((list(ctx) + [1], meta(s)))
    return prompts


def test_session_keeps_the_same_hits_on_a_slow_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request holding its blocks 1.3 s (CPU prefill; the next request starts when it ends) must
    not change what ``session`` keeps: the idle rule compares idleness with the gaps between a session's
    requests, not with the requests' own duration. Counting the duration as a gap took protection from
    the sessions in use (12 sessions idled, 101 blocks hit instead of 173 here; the vLLM bench's 22 %
    cached where this harness, with instant requests, kept 31 %)."""
    clock = [1000.0]
    monkeypatch.setattr(vllm_adapter, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, "session")
    hits = {}
    for hold_s in (0.0, 1.3):

        def computing(hold_s: float = hold_s) -> None:
            clock[0] += hold_s

        manager = make_manager(64)
        hits[hold_s] = run_sequence(manager, _bench_rotation_sequence(), computing=computing).cached_tokens[
            8:
        ]
        installed = vllm_adapter.installed_policy(manager.block_pool)
        installed.check_integrity()
        assert installed.sessions_idled == 0
    assert hits[1.3] == hits[0.0]
    assert sum(hits[1.3]) >= 150 * BLOCK, hits[1.3]  # lru: 0 (every session comes back to nothing)


@pytest.mark.parametrize("policy", ["guarded", "session", "density", "s3fifo"])
def test_every_policy_keeps_vllms_free_queue_and_its_own_books_in_step(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """Under pressure, inside vLLM's real pool: the policy's candidates are exactly vLLM's free cached
    blocks, and its own structures agree with each other."""
    monkeypatch.setenv(vllm_adapter.POLICY_ENV, policy)
    manager = make_manager(48)
    run = run_sequence(manager, _conversations(2) + _rotation_sequence())
    installed = vllm_adapter.installed_policy(manager.block_pool)
    assert installed is not None and installed.name == policy
    assert installed.stats.evictions > 20 and sum(run.cached_tokens) > 0
    installed.check_integrity()
    assert len(installed) == manager.block_pool.get_num_free_blocks() - sum(
        1 for b in manager.block_pool.free_block_queue.get_all_free_blocks() if b.block_hash is None
    )
