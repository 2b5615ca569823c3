"""The connector's worker side on real tensors in vLLM's CPU layout (block id first): saves copy whole blocks of
every KV tensor out, loads copy them back into other blocks, and a load that cannot be done is reported to vLLM
(``get_block_ids_with_load_errors``: vLLM recomputes those blocks) instead of failing the step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm", reason="vLLM is not installed")

from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole  # noqa: E402

from server.engine.kv_tier.vllm_connector import HostKVTier, HostKVTierMeta  # noqa: E402


def _worker(host_blocks: int) -> HostKVTier:
    cfg = SimpleNamespace(
        kv_transfer_config=SimpleNamespace(kv_connector_extra_config={"host_blocks": host_blocks}, is_kv_producer=True),
        cache_config=SimpleNamespace(block_size=4),
    )  # fmt: skip
    return HostKVTier(cfg, KVConnectorRole.WORKER, None)  # type: ignore[arg-type]


def _caches() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 2, 4, 16, generator=gen)  # [blocks, kv heads, block tokens, 2 x head dim]
    b = torch.randn(6, 2, 4, 16, generator=gen)
    return {"layer.0": a, "layer.1": b, "layer.1.shared": b}  # a layer sharing its KV aliases one tensor


def test_blocks_round_trip_through_the_host_slots() -> None:
    w, kv = _worker(3), _caches()
    w.register_kv_caches(kv)
    assert len(w._pairs) == 2  # the aliased tensor is copied once
    before = {k: t.clone() for k, t in kv.items()}
    w.bind_connector_metadata(HostKVTierMeta(saves=[(1, 0), (4, 2)]))
    w.wait_for_save()
    w.clear_connector_metadata()
    w.bind_connector_metadata(HostKVTierMeta(loads=[(0, 5), (2, 3)]))  # into two other blocks
    w.start_load_kv(None)
    for k in ("layer.0", "layer.1"):
        assert torch.equal(kv[k][5], before[k][1]) and torch.equal(kv[k][3], before[k][4])
        assert torch.equal(kv[k][:3], before[k][:3])  # nothing else written
    assert w.get_block_ids_with_load_errors() == set()


def test_a_failed_load_is_reported_for_recompute_not_raised() -> None:
    w, kv = _worker(2), _caches()
    w.register_kv_caches(kv)
    w.bind_connector_metadata(HostKVTierMeta(loads=[(7, 2), (0, 3)]))  # slot 7 does not exist
    w.start_load_kv(None)
    assert w.get_block_ids_with_load_errors() == {2, 3}
    assert w.get_block_ids_with_load_errors() == set()  # reported once
