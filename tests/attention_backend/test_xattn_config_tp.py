"""XAttentionConfig.for_tensor_parallel: a full-model per-head table seen from one tensor-parallel rank."""

from __future__ import annotations

import pytest

from attention_backend import XAttentionConfig

TABLE = ((0.1, 0.2, 0.3, 0.4, 0.5, 0.6), (1.0, 0.9, 0.8, 0.7, 0.6, 0.5))  # 2 layers x 6 query heads


@pytest.mark.parametrize(
    ("rank", "size", "layer0", "layer1"),
    [
        (0, 1, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]),
        (0, 2, [0.1, 0.2, 0.3], [1.0, 0.9, 0.8]),
        (1, 2, [0.4, 0.5, 0.6], [0.7, 0.6, 0.5]),
        (2, 3, [0.5, 0.6], [0.6, 0.5]),
        (5, 6, [0.6], [0.5]),
    ],
)
def test_each_rank_keeps_its_contiguous_heads(rank: int, size: int, layer0: list, layer1: list) -> None:
    cfg = XAttentionConfig(threshold=TABLE, stride=16).for_tensor_parallel(rank, size)
    heads = len(TABLE[0]) // size
    assert cfg.thresholds(heads, layer=0) == layer0 and cfg.thresholds(heads, layer=1) == layer1
    assert cfg.stride == 16


def test_float_tau_and_single_rank_are_unchanged() -> None:
    cfg = XAttentionConfig(threshold=0.8)
    assert cfg.for_tensor_parallel(1, 2) is cfg
    table = XAttentionConfig(threshold=TABLE)
    assert table.for_tensor_parallel(0, 1) is table


def test_full_table_without_split_fails_on_the_rank_head_count() -> None:
    # What a TP=2 worker (3 of the 6 heads) met before the split: the full row does not fit its heads.
    with pytest.raises(ValueError, match="has 6 heads, expected 3"):
        XAttentionConfig(threshold=TABLE).thresholds(3, layer=0)


@pytest.mark.parametrize(
    ("rank", "size", "match"),
    [
        (0, 4, r"threshold\[0\]: expected a head count divisible by the tensor-parallel size 4, got 6"),
        (2, 2, r"expected 0 <= rank < size, got 2, 2"),
        (0, 0, r"expected 0 <= rank < size, got 0, 0"),
    ],
)
def test_rejects_bad_rank_or_indivisible_table(rank: int, size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        XAttentionConfig(threshold=TABLE).for_tensor_parallel(rank, size)
