import pytest
import torch

from attention_backend import select_blocks
from attention_backend.reference import ref_select_blocks
from tests.attention_backend.xattn_helpers import assert_mask_equal, causal_block_mask


def _scores(hq, nqb, nkb, first, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(hq, nqb, nkb, generator=g) ** 4
    return s * causal_block_mask(hq, nqb, nkb, first)


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.7, 0.9, 0.99, 1.0])
@pytest.mark.parametrize(("nqb", "nkb", "first"), [(1, 1, 0), (7, 7, 0), (3, 9, 6), (5, 12, 4)])
def test_select_matches_reference(tau, nqb, nkb, first):
    s = _scores(4, nqb, nkb, first, seed=nqb * 31 + nkb)
    assert_mask_equal(select_blocks(s, tau, q_block_offset=first), ref_select_blocks(s, tau, q_block_offset=first), "mask")


def test_per_head_tau_matches_reference_and_rules_hold():
    s = _scores(4, 9, 9, 0, seed=3)
    taus = [0.0, 0.5, 0.9, 1.0]
    m = select_blocks(s, taus)
    assert_mask_equal(m, ref_select_blocks(s, taus), "mask")
    causal = causal_block_mask(4, 9, 9)
    assert not bool((m & ~causal).any()), "block above the diagonal kept"
    assert bool(m[:, :, 0].all()) and bool(m[:, torch.arange(9), torch.arange(9)].all()), "sink/diagonal"
    assert_mask_equal(m[3], causal[3], "tau=1 keeps every causal block")
    assert int(m[0].sum()) == 9 + 8, "tau=0 keeps only sink + diagonal"
    kept = (s * m).sum(-1)
    total = s.sum(-1)
    assert bool((kept >= total * torch.tensor(taus)[:, None] - 1e-6).all()), "kept mass below tau"


def test_tau_is_monotone():
    s = _scores(2, 12, 12, 0, seed=7)
    prev = select_blocks(s, 0.0)
    for tau in (0.2, 0.5, 0.8, 0.95, 1.0):
        cur = select_blocks(s, tau)
        assert not bool((prev & ~cur).any()), f"tau={tau} dropped a block kept at a lower tau"
        prev = cur


def test_zero_mass_blocks_are_kept_at_tau_one():
    s = torch.zeros(1, 4, 4)
    s[0, :, 0] = 1.0
    assert_mask_equal(select_blocks(s, 1.0), causal_block_mask(1, 4, 4), "tau=1")
