import pytest

from attention_backend.batch_plan import RowPath, plan_batch


def test_plan_mixed_batch():
    # decode, short prefill, long full prefill, long prefill over a cached prefix / earlier chunk
    plan = plan_batch([0, 1, 51, 1051, 1551], [300, 50, 1000, 4000], min_sparse_len=1000)
    assert [r.path for r in plan.requests] == [
        RowPath.DECODE,
        RowPath.DENSE_SHORT,
        RowPath.SPARSE,
        RowPath.FALLBACK_CACHED,
    ]
    assert (plan.requests[2].start, plan.requests[2].end) == (51, 1051)
    assert plan.has_sparse and not plan.all_sparse
    assert plan_batch([0, 2000], [2000], 1000).all_sparse
    assert not plan_batch([0, 1], [5000], 1000).has_sparse


def test_plan_rejects_inconsistent_metadata():
    with pytest.raises(ValueError, match="B\\+1"):
        plan_batch([0, 5], [5, 6], 10)
