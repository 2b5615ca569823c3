"""Planted attention structure is recovered, and per-head calibrated tau beats one uniform tau."""

from __future__ import annotations

import pytest
import torch

from attention_backend import estimate_block_scores, select_blocks
from attention_backend.calibrate import calibrate_heads, calibrate_layer, token_recall, true_block_mass
from tests.attention_backend.xattn_planted import KINDS, SLASH_OFFSETS, VERTICAL_KEYS, planted_qk

B, S, L, TARGET = 64, 8, 2048, 0.95
NB = L // B
CAUSAL = NB * (NB + 1) // 2


@pytest.fixture(scope="module")
def planted():
    q, k = planted_qk(L, seed=0)
    scores = estimate_block_scores(q, k, block_size=B, stride=S)
    mass = true_block_mass(q, k, block_size=B)
    return q, k, scores, mass


def _recall(mass, mask):
    return token_recall(mass, mask, block_size=B, q_offset=0).mean(-1)


def _uniform_tau(scores, mass):
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        ok = bool((_recall(mass, select_blocks(scores, mid)) >= TARGET).all())
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def test_per_head_tau_reaches_recall_at_lower_density_than_uniform(planted):
    q, k, scores, mass = planted
    tau = calibrate_layer([(q, k)], block_size=B, stride=S, target=TARGET)
    mask = select_blocks(scores, tau)
    recall = _recall(mass, mask)
    assert bool((recall >= TARGET).all()), dict(zip(KINDS, recall.tolist(), strict=False))
    uniform = select_blocks(scores, _uniform_tau(scores, mass))
    assert bool((_recall(mass, uniform) >= TARGET).all())
    density, density_uniform = mask.sum() / (CAUSAL * len(KINDS)), uniform.sum() / (CAUSAL * len(KINDS))
    assert density < 0.75 * density_uniform, (float(density), float(density_uniform))
    # Structured heads get sparse masks; the diffuse head needs most blocks.
    per_head = mask.sum((1, 2)) / CAUSAL
    diffuse = KINDS.index("diffuse")
    assert all(float(per_head[h]) < 0.4 for h in range(len(KINDS)) if h != diffuse), per_head.tolist()
    assert float(per_head[diffuse]) > 0.6, per_head.tolist()


def test_calibrated_tau_generalises_to_a_new_sample(planted):
    q, k, scores, mass = planted
    tau = calibrate_heads(scores, mass, block_size=B, q_offset=0, target=TARGET)
    q2, k2 = planted_qk(L, seed=1)
    s2 = estimate_block_scores(q2, k2, block_size=B, stride=S)
    m2 = true_block_mass(q2, k2, block_size=B)
    assert bool((_recall(m2, select_blocks(s2, tau)) >= TARGET - 0.01).all())


def test_planted_blocks_are_selected(planted):
    q, k, scores, mass = planted
    mask = select_blocks(scores, calibrate_heads(scores, mass, block_size=B, q_offset=0, target=TARGET))
    h = KINDS.index("vertical")
    for key in VERTICAL_KEYS:
        kb = key // B
        assert bool(mask[h, kb:, kb].all()), f"vertical column at block {kb} missed"
    for kind, off in SLASH_OFFSETS.items():
        h = KINDS.index(kind)
        for qb in range(NB):
            # most of the slash of query block qb (keys qb*B - off .. qb*B + B - 1 - off) is in this block
            middle = qb * B + B // 2 - off
            if middle >= 0:
                assert bool(mask[h, qb, middle // B]), f"{kind}: block ({qb}, {middle // B}) of the slash missed"
    # without planted structure, the same blocks are not special: a uniform-noise head keeps far more
    assert int(mask[KINDS.index("diffuse")].sum()) > 2 * int(mask[KINDS.index("slash_odd")].sum())


def test_lower_target_never_needs_more_blocks(planted):
    _, _, scores, mass = planted
    tau_hi = calibrate_heads(scores, mass, block_size=B, q_offset=0, target=0.95)
    tau_lo = calibrate_heads(scores, mass, block_size=B, q_offset=0, target=0.8)
    assert bool((tau_lo <= tau_hi).all())
    with pytest.raises(ValueError, match="target"):
        calibrate_heads(scores, mass, block_size=B, q_offset=0, target=0.0)
    assert torch.allclose(true_block_mass(*planted[:2], block_size=B).sum(-1), torch.ones(len(KINDS), L))
