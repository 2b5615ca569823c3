"""The impl set-up both adapters share (``common.init_xattn``) under tensor parallelism, without starting vLLM:
a full-model threshold table becomes this rank's heads; a table that does not fit the model stops at start-up.
The same path at TP=2 inside a real vLLM is test_xattn_vllm_tp.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.config import XAttentionConfig  # noqa: E402
from attention_backend.vllm import common  # noqa: E402

TABLE = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]  # 2 layers x 4 query heads


def _impl(heads: int) -> SimpleNamespace:
    return SimpleNamespace(num_heads=heads, num_kv_heads=1, head_size=64)


@pytest.fixture
def rank(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[int, int], None]:
    monkeypatch.setenv("XEDGE_STATUS_DIR", str(tmp_path))
    monkeypatch.setattr(common, "config_from_vllm", lambda: XAttentionConfig(threshold=TABLE))

    def set_rank(r: int, size: int) -> None:
        monkeypatch.setattr(common, "tensor_parallel_rank", lambda: (r, size))

    return set_rank


def test_rank_gets_its_heads_of_the_full_table(rank: Callable[[int, int], None]) -> None:
    rank(1, 2)
    impl = _impl(2)
    common.init_xattn(impl, {})
    assert impl.xattn.thresholds(2, layer=0) == [0.3, 0.4] and impl.xattn.thresholds(2, layer=1) == [0.7, 0.8]
    assert impl.sparse_enabled


def test_table_for_another_model_stops_at_start_up(rank: Callable[[int, int], None]) -> None:
    rank(0, 2)
    with pytest.raises(ValueError, match=r"^--xattn-threshold-table: expected 6 query heads per layer .*\[4\]"):
        common.init_xattn(_impl(3), {})
    rank(0, 1)
    with pytest.raises(ValueError, match=r"^--xattn-threshold-table: expected 2 query heads per layer .*\[4\]"):
        common.init_xattn(_impl(2), {})


def test_outside_a_tensor_parallel_group_is_rank_0_of_1() -> None:
    assert common.tensor_parallel_rank() == (0, 1)


def test_fp8_estimation_where_the_device_has_none_stops_at_start_up(
    monkeypatch: pytest.MonkeyPatch, rank: Callable[[int, int], None]
) -> None:
    rank(0, 1)
    monkeypatch.setattr(common, "config_from_vllm", lambda: XAttentionConfig(estimate_fp8=True))
    with pytest.raises(ValueError, match=r"^--xattn-estimate-fp8: this device has no fp8 estimation"):
        common.init_xattn(_impl(2), {})  # the CPU impl and GPUs before sm_90 pass False
    impl = _impl(2)
    common.init_xattn(impl, {}, fp8_estimation=True)
    assert impl.xattn.estimate_fp8 and impl.sparse_enabled
