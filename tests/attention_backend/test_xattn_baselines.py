"""The oracle and sink+recent baselines of bench/xattn_density.py against brute force on small masses."""

from __future__ import annotations

import itertools

import pytest
import torch

from attention_backend.baselines import (
    causal_blocks,
    mask_recall,
    oracle_mask,
    oracle_min_blocks,
    oracle_min_blocks_per_row,
    row_block_mass,
    streaming_mask,
    streaming_min_blocks,
)
from attention_backend.calibrate import token_recall, true_block_mass

B = 16


@pytest.fixture(scope="module")
def real_like():
    torch.manual_seed(0)
    n_tok = 5 * B - 3  # a partial last block
    q, k = torch.randn(n_tok, 2, 32), torch.randn(n_tok, 1, 32)
    mass = true_block_mass(q * 2, k, block_size=B)  # sharper than uniform
    return mass, row_block_mass(mass, B), n_tok


def test_row_mass_and_recall_match_token_recall(real_like):
    mass, rm, n_tok = real_like
    mask = torch.rand(rm.shape) > 0.5
    assert torch.allclose(mask_recall(rm, mask, n_tok), token_recall(mass, mask, block_size=B, q_offset=0).mean(-1), atol=1e-6)
    assert torch.allclose(rm.sum((1, 2)), torch.full((2,), float(n_tok)), atol=1e-3)


@pytest.mark.parametrize("target", [0.5, 0.9, 0.99])
def test_oracle_is_the_fewest_blocks_that_reach_the_target(real_like, target):
    _, rm, n_tok = real_like
    nqb, nkb = rm.shape[1:]
    pairs = [(i, j) for i, j in itertools.product(range(nqb), range(nkb)) if j <= i]
    count = oracle_min_blocks(rm, target, n_tok)
    for h in range(rm.shape[0]):
        values = sorted((float(rm[h, i, j]) for i, j in pairs), reverse=True)
        # no mask with one block fewer can reach the target: the best such is the top count-1 blocks
        assert sum(values[: int(count[h]) - 1]) / n_tok < target <= sum(values[: int(count[h])]) / n_tok + 1e-9


def test_per_row_oracle_needs_at_least_the_head_oracle(real_like):
    _, rm, n_tok = real_like
    for target in (0.5, 0.9):
        assert (oracle_min_blocks_per_row(rm, target, B, n_tok) >= oracle_min_blocks(rm, target, n_tok)).all()


def test_streaming_window_is_the_smallest_reaching_the_target(real_like):
    _, rm, n_tok = real_like
    nqb, nkb = rm.shape[1:]

    def window_mask(w: int) -> torch.Tensor:
        col, row = torch.arange(nkb)[None, :], torch.arange(nqb)[:, None]
        return ((col == 0) | ((col <= row) & (col > row - w))) & causal_blocks(nqb, nkb)

    kept, w = streaming_min_blocks(rm, 0.8, n_tok)
    for h in range(rm.shape[0]):
        wh = int(w[h])
        assert int(window_mask(wh).sum()) == int(kept[h])
        assert float(mask_recall(rm[h : h + 1], window_mask(wh)[None], n_tok)) >= 0.8 - 1e-9
        if wh > 1:
            assert float(mask_recall(rm[h : h + 1], window_mask(wh - 1)[None], n_tok)) < 0.8


def test_same_size_masks_keep_the_count_per_row_and_the_oracle_recalls_most(real_like):
    _, rm, n_tok = real_like
    nqb, nkb = rm.shape[1:]
    torch.manual_seed(1)
    kept = (torch.rand(rm.shape) > 0.4) & causal_blocks(nqb, nkb)
    kept[..., 0] = True
    stream, oracle = streaming_mask(kept), oracle_mask(kept, rm)
    assert torch.equal(stream.sum(-1), kept.sum(-1)) and torch.equal(oracle.sum(-1), kept.sum(-1))
    assert not (stream & ~causal_blocks(nqb, nkb)).any() and not (oracle & ~causal_blocks(nqb, nkb)).any()
    assert (mask_recall(rm, oracle, n_tok) >= mask_recall(rm, kept, n_tok) - 1e-6).all()
    assert (mask_recall(rm, oracle, n_tok) >= mask_recall(rm, stream, n_tok) - 1e-6).all()
