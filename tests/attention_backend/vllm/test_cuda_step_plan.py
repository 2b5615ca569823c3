"""The CUDA adapter's per-step plan, on any host: the sub-batch FlashAttention runs on when only some rows
are dense (vLLM's FlashAttentionMetadata, indexed on the host; no GPU needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

import torch  # noqa: E402
from vllm.v1.attention.backends.flash_attn import FlashAttentionMetadata  # noqa: E402

from attention_backend.vllm.cuda_step import CudaStepPlan  # noqa: E402


def _meta(qsl: list[int], seq_lens: list[int]) -> FlashAttentionMetadata:
    fields = FlashAttentionMetadata.__dataclass_fields__
    n_tok = qsl[-1]
    values = {
        "num_actual_tokens": n_tok,
        "max_query_len": max(b - a for a, b in zip(qsl, qsl[1:], strict=False)),
        "query_start_loc": torch.tensor(qsl, dtype=torch.int32),
        "max_seq_len": max(seq_lens),
        "seq_lens": torch.tensor(seq_lens, dtype=torch.int32),
        "block_table": torch.arange(len(seq_lens) * 4, dtype=torch.int32).view(len(seq_lens), 4),
        "slot_mapping": torch.arange(n_tok, dtype=torch.int64) + 1000,
        "use_cascade": False,
        "common_prefix_len": 0,
        "cu_prefix_query_lens": None,
        "prefix_kv_lens": None,
        "suffix_kv_lens": None,
        "scheduler_metadata": torch.zeros(8, dtype=torch.int32),
    }
    return FlashAttentionMetadata(**{k: v for k, v in values.items() if k in fields})


def test_dense_subset_indexes_rows_requests_and_drops_the_aot_schedule() -> None:
    # three requests: a decode (1 token), a long prefill (5 tokens), a short prefill (3 tokens)
    qsl, seq_lens = [0, 1, 6, 9], [40, 5000, 3]
    meta = _meta(qsl, seq_lens)
    step = CudaStepPlan(meta, qsl, seq_lens, candidates=[], always_dense=(0, 2))
    rows, sub = step.dense_subset((0, 2))
    assert rows.tolist() == [0, 6, 7, 8]
    assert sub.query_start_loc.dtype == torch.int32  # FA3 refuses anything else
    assert sub.query_start_loc.tolist() == [0, 1, 4]
    assert sub.seq_lens.tolist() == [40, 3]
    assert sub.block_table.tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert sub.slot_mapping.tolist() == [1000, 1006, 1007, 1008]
    assert (sub.num_actual_tokens, sub.max_query_len, sub.max_seq_len) == (4, 3, 40)
    assert sub.scheduler_metadata is None
    assert step.dense_subset((0, 2))[1] is sub  # built once per step and set of rows
    assert meta.query_start_loc.tolist() == qsl  # the step's own metadata is untouched


def test_only_groups_that_may_hold_full_attention_layers_are_planned() -> None:
    """Gemma-3's sliding-window layers get a KV-cache group of their own: its builder plans nothing (each step
    was planned, and its long rows counted, once per group). A FullAttentionSpec group is planned even with a
    sliding window set (vLLM's hybrid allocator off: local and full layers share it)."""
    from vllm.v1.kv_cache_interface import ChunkedLocalAttentionSpec, FullAttentionSpec, SlidingWindowSpec

    from attention_backend.vllm.cuda import plans_group

    shape = dict(block_size=128, num_kv_heads=1, head_size=256, dtype=torch.bfloat16)
    assert plans_group(FullAttentionSpec(**shape))
    assert plans_group(FullAttentionSpec(**shape, sliding_window=512))
    assert not plans_group(SlidingWindowSpec(**shape, sliding_window=512))
    assert not plans_group(ChunkedLocalAttentionSpec(**shape, attention_chunk_size=8192))
