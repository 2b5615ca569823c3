import pytest
import torch

from attention_backend import estimate_block_scores
from attention_backend.estimate import reshape_keys, reshape_queries
from attention_backend.reference import ref_antidiagonal_logits, ref_estimate_block_scores
from tests.attention_backend.xattn_helpers import assert_close, qkv


@pytest.mark.parametrize(
    ("lq", "lk", "q_offset", "hq", "hkv", "stride"),
    [(24, 24, 0, 2, 2, 4), (19, 37, 18, 4, 2, 4), (13, 13, 0, 3, 1, 8), (5, 29, 11, 2, 1, 8)],
)
def test_strided_gemm_equals_explicit_antidiagonal_loops(lq, lk, q_offset, hq, hkv, stride):
    q, k, _ = qkv(lq, lk, hq, hkv, 8, seed=lq)
    n_cols = -(-lk // stride)
    n_rows = -(-(q_offset + lq) // stride)
    k_resh = reshape_keys(k, stride, n_cols * stride)  # [Hkv, C, S*D]
    q_resh = reshape_queries(q, stride, q_offset, 0, n_rows * stride)  # [Hq, R, S*D]
    group = hq // hkv
    gemm = torch.einsum("hrx,hcx->hrc", q_resh, k_resh.repeat_interleave(group, 0)) * (8**-0.5 / stride)
    loops = ref_antidiagonal_logits(q, k, stride=stride, q_offset=q_offset)
    assert_close(gemm, loops, 1e-5, "antidiagonal logits")


@pytest.mark.parametrize(
    ("lq", "lk", "q_offset", "block", "stride", "chunk"),
    [
        (1, 1, None, 16, 4, 16),
        (37, 37, None, 16, 4, 16),
        (50, 90, 40, 16, 8, 32),
        (127, 127, None, 32, 8, 64),
        (129, 129, None, 32, 4, 32),
        (20, 70, 33, 16, 4, 4096),
        (64, 64, None, 16, 16, 16),
    ],
)
def test_estimate_matches_reference(lq, lk, q_offset, block, stride, chunk):
    q, k, _ = qkv(lq, lk, 6, 2, 8, seed=lk)
    got = estimate_block_scores(q, k, block_size=block, stride=stride, q_offset=q_offset, chunk_tokens=chunk)
    want = ref_estimate_block_scores(q, k, block_size=block, stride=stride, q_offset=q_offset)
    assert_close(got, want, 1e-5, "block scores")


def test_each_row_block_holds_its_reshaped_rows_mass():
    q, k, _ = qkv(100, 100, 2, 1, 8)
    scores = estimate_block_scores(q, k, block_size=32, stride=8)
    # 100 queries -> rows of 8 tokens: blocks 0..2 hold 4 rows each, block 3 holds ceil(4/8) = 1 row.
    assert_close(scores.sum(-1), torch.tensor([[4.0, 4.0, 4.0, 1.0]] * 2), 1e-5, "row mass")
    assert float(scores[:, 0, 1:].abs().max()) == 0.0, "mass above the diagonal"
