"""The connector's scheduler side with fake requests: which blocks load from the tier and which are copied out.
A request whose first blocks vLLM's own cache served and whose next blocks load from the tier also copies its
first blocks back out when the tier had lost them, as a request with no tier hit does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole  # noqa: E402

from server.engine.kv_tier.vllm_connector import HostKVTier  # noqa: E402

BLOCK = 4


def _scheduler(host_blocks: int) -> HostKVTier:
    cfg = SimpleNamespace(
        kv_transfer_config=SimpleNamespace(kv_connector_extra_config={"host_blocks": host_blocks}, is_kv_producer=True),
        cache_config=SimpleNamespace(block_size=BLOCK),
    )  # fmt: skip
    tier = HostKVTier(cfg, KVConnectorRole.SCHEDULER, None)  # type: ignore[arg-type]
    tier._kv_cache_manager = SimpleNamespace(get_block_ids=lambda rid: (tier._test_ids[rid],))
    tier._test_ids = {}
    return tier


def _request(rid: str, hashes: list[str], computed: int) -> SimpleNamespace:
    return SimpleNamespace(
        request_id=rid, block_hashes=hashes, num_tokens=len(hashes) * BLOCK, num_computed_tokens=computed,
        sampling_params=SimpleNamespace(extra_args=None),
    )  # fmt: skip


def _schedule(tier: HostKVTier, req: SimpleNamespace, vllm_ids: list[int]) -> tuple[int, object]:
    """One first step of ``req`` in vLLM's order (``Scheduler.schedule``): lookup, allocation, the computed count
    set, the step's metadata, then the count advanced by the scheduled tokens."""
    external, _ = tier.get_num_new_matched_tokens(req, req.num_computed_tokens)
    tier._test_ids[req.request_id] = vllm_ids
    tier.update_state_after_alloc(req, SimpleNamespace(get_block_ids=lambda: (vllm_ids,)), external)
    req.num_computed_tokens += external  # vLLM's scheduler: local + external hits, before the step's metadata
    n = req.num_tokens - req.num_computed_tokens
    meta = tier.build_connector_meta(SimpleNamespace(num_scheduled_tokens={req.request_id: n}))
    req.num_computed_tokens += n  # after it (_update_after_schedule)
    return external, meta


def test_blocks_served_by_vllms_cache_go_back_to_the_tier_beside_a_tier_load() -> None:
    tier = _scheduler(host_blocks=8)
    # an earlier request left only h2 and h3 in the tier (vLLM's cache served it h0 and h1: keys are all the
    # tier compares)
    earlier = _request("a", ["h2", "h3"], computed=0)
    external, meta = _schedule(tier, earlier, vllm_ids=[10, 11])
    assert external == 0 and [b for b, _ in meta.saves] == [10, 11]  # every computed block copied out
    tier.request_finished(earlier, [])
    second = _request("b", ["h0", "h1", "h2", "h3", "h4"], computed=2 * BLOCK)  # vLLM's cache: h0, h1
    external, meta = _schedule(tier, second, vllm_ids=[20, 21, 22, 23, 24])
    assert external == 2 * BLOCK  # h2, h3 load from the tier, into vLLM's blocks 22 and 23
    assert [b for _, b in meta.loads] == [22, 23]
    assert sorted(b for b, _ in meta.saves) == [20, 21, 24]  # h0, h1 into the tier too, and the new h4
    assert all(h in tier._index for h in ("h0", "h1", "h2", "h3", "h4"))
    tier._index.check_integrity()


def test_a_request_without_tier_hits_copies_out_from_its_first_block() -> None:
    tier = _scheduler(host_blocks=8)
    req = _request("c", ["h0", "h1", "h2"], computed=2 * BLOCK)  # vLLM's cache served h0, h1
    external, meta = _schedule(tier, req, vllm_ids=[30, 31, 32])
    assert external == 0 and sorted(b for b, _ in meta.saves) == [30, 31, 32]
