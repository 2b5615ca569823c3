import pytest
import torch
import torch.nn.functional as F

from attention_backend import XAttentionConfig, block_sparse_attention, xattention_prefill
from attention_backend.reference import ref_block_sparse_attention, ref_dense_attention
from tests.attention_backend.xattn_helpers import assert_close, assert_mask_equal, causal_block_mask, qkv


def _sdpa_causal(q, k, v):
    group = q.shape[1] // k.shape[1]
    kk, vv = (t.repeat_interleave(group, 1).transpose(0, 1) for t in (k, v))
    return F.scaled_dot_product_attention(q.transpose(0, 1), kk, vv, is_causal=True).transpose(0, 1)


@pytest.mark.parametrize(("lq", "lk", "q_offset"), [(1, 1, None), (45, 45, None), (30, 77, 47), (10, 77, 20)])
def test_random_block_mask_equals_dense_under_expanded_token_mask(lq, lk, q_offset):
    block = 16
    q, k, v = qkv(lq, lk, 6, 3, 16, seed=lq + lk)
    off = lk - lq if q_offset is None else q_offset
    first, nqb, nkb = off // block, (off + lq - 1) // block - off // block + 1, -(-lk // block)
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(6, nqb, nkb, generator=g) < 0.5) & causal_block_mask(6, nqb, nkb, first)
    mask[:, torch.arange(nqb), torch.arange(first, first + nqb)] = True
    got = block_sparse_attention(q, k, v, mask, block_size=block, q_offset=q_offset)
    want = ref_block_sparse_attention(q, k, v, mask, block_size=block, q_offset=q_offset)
    assert_close(got, want, 1e-4, "block-sparse output")


@pytest.mark.parametrize("length", [1, 127, 129, 1000, 4097])
def test_tau_one_keeps_every_causal_block_and_equals_sdpa(length):
    q, k, v = qkv(length, length, 4, 2, 16, seed=length)
    cfg = XAttentionConfig(block_size=128, stride=8, threshold=1.0)
    out, mask = xattention_prefill(q, k, v, cfg)
    n = -(-length // 128)
    assert_mask_equal(mask, causal_block_mask(4, n, n), "tau=1 mask")
    assert_close(out, _sdpa_causal(q, k, v), 1e-4, "tau=1 output vs SDPA")


@pytest.mark.parametrize("length", [127, 129, 1000])
def test_realistic_tau_output_matches_reference_under_its_mask(length):
    q, k, v = qkv(length, length, 4, 2, 16, seed=length)
    cfg = XAttentionConfig(block_size=64, stride=8, threshold=0.8)
    out, mask = xattention_prefill(q, k, v, cfg)
    assert_close(out, ref_block_sparse_attention(q, k, v, mask, block_size=64), 1e-4, "sparse output")


def test_gqa_equals_repeated_kv():
    q, k, v = qkv(300, 300, 8, 2, 16, seed=5)
    cfg = XAttentionConfig(block_size=32, stride=4, threshold=0.7)
    out, mask = xattention_prefill(q, k, v, cfg)
    out_rep, mask_rep = xattention_prefill(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), cfg)
    assert_mask_equal(mask, mask_rep, "GQA mask")
    assert_close(out, out_rep, 1e-5, "GQA output")
    assert bool((~mask).any()), "test needs a sparse mask"


def _chunked(q, k, v, cfg, bounds):
    outs, masks = [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        out, mask = xattention_prefill(q[a:b], k[:b], v[:b], cfg)
        outs.append(out)
        masks.append(mask)
    return torch.cat(outs), masks


@pytest.mark.parametrize("bounds", [[0, 64, 192, 320, 417], [0, 256, 417], [0, 384, 417]])
def test_chunked_prefill_at_block_starts_equals_one_shot(bounds):
    q, k, v = qkv(417, 417, 4, 2, 16, seed=9)
    cfg = XAttentionConfig(block_size=64, stride=8, threshold=0.6)
    full_out, full_mask = xattention_prefill(q, k, v, cfg)
    out, masks = _chunked(q, k, v, cfg, bounds)
    assert_close(out, full_out, 1e-5, "chunked output")
    for a, b, m in zip(bounds[:-1], bounds[1:], masks, strict=False):
        rows = slice(a // 64, (b - 1) // 64 + 1)
        assert_mask_equal(m, full_mask[:, rows, : m.shape[2]], f"chunk [{a},{b}) mask")
        assert not bool(full_mask[:, rows, m.shape[2] :].any())
    assert bool((~full_mask & causal_block_mask(4, 7, 7)).any()), "test needs a sparse mask"


def test_chunks_split_inside_a_block():
    """A block split between two chunks is estimated from the queries each chunk holds: blocks that no
    boundary splits match one shot exactly; with tau = 1 every split gives the dense result."""
    q, k, v = qkv(417, 417, 4, 2, 16, seed=11)
    bounds = [0, 100, 250, 300, 417]
    cfg = XAttentionConfig(block_size=64, stride=8, threshold=0.6)
    full_out, full_mask = xattention_prefill(q, k, v, cfg)
    out, masks = _chunked(q, k, v, cfg, bounds)
    split_blocks = {b // 64 for b in bounds[1:-1] if b % 64}
    whole = [p for p in range(417) if p // 64 not in split_blocks]
    assert_close(out[whole], full_out[whole], 1e-5, "rows of unsplit blocks")
    for a, b, m in zip(bounds[:-1], bounds[1:], masks, strict=False):
        for i, qb in enumerate(range(a // 64, (b - 1) // 64 + 1)):
            if qb not in split_blocks:
                assert_mask_equal(m[:, i], full_mask[:, qb, : m.shape[2]], f"block {qb}")
    dense = XAttentionConfig(block_size=64, stride=8, threshold=1.0)
    out, _ = _chunked(q, k, v, dense, bounds)
    assert_close(out, ref_dense_attention(q, k, v), 1e-4, "tau=1 chunked vs dense")


def test_bfloat16_inputs():
    q, k, v = qkv(200, 200, 4, 2, 16, seed=2, dtype=torch.bfloat16)
    out, _ = xattention_prefill(q, k, v, XAttentionConfig(block_size=64, stride=8, threshold=1.0))
    assert out.dtype == torch.bfloat16
    assert_close(out, ref_dense_attention(q, k, v), 2e-2, "bf16 output")


def test_threshold_table_picks_the_layer_row():
    q, k, v = qkv(256, 256, 2, 1, 16, seed=4)
    cfg = XAttentionConfig(block_size=32, stride=8, threshold=((1e-6, 1e-6), (1.0, 1e-6)))
    _, m0 = xattention_prefill(q, k, v, cfg, layer=0)
    _, m1 = xattention_prefill(q, k, v, cfg, layer=1)
    assert_mask_equal(m1[0], causal_block_mask(1, 8, 8)[0], "tau=1 head")
    assert_mask_equal(m0[1], m1[1], "same tau, same mask")
    assert int(m0[0].sum()) == 8 + 7
    with pytest.raises(ValueError, match="layer"):
        xattention_prefill(q, k, v, cfg)


def test_one_shot_mask_of_a_block_depends_on_its_later_queries():
    """Why no chunked prefill can equal one shot when a chunk ends INSIDE a query block: the one-shot
    output of a query before the boundary depends on queries after it (they vote in the block's
    selection), which a chunk that ends at the boundary has not seen. Changing only the queries after
    position 220 (block 3 = positions 192..255) changes the one-shot output at positions 192..219."""
    q, k, v = qkv(320, 320, 4, 2, 16, seed=13)
    cfg = XAttentionConfig(block_size=64, stride=8, threshold=0.6)
    out_a, mask_a = xattention_prefill(q, k, v, cfg)
    q2 = q.clone()
    q2[220:256] = 4.0 * k[128:164].repeat_interleave(2, dim=1)  # later queries that look elsewhere
    out_b, mask_b = xattention_prefill(q2, k, v, cfg)
    assert torch.equal(mask_a[:, :3], mask_b[:, :3]), "blocks 0-2 have no changed query"
    assert not torch.equal(mask_a[:, 3], mask_b[:, 3]), "the later queries must move block 3's selection"
    assert not torch.allclose(out_a[192:220], out_b[192:220]), "so the output before the boundary moves too"
    assert torch.allclose(out_a[:192], out_b[:192]), "while earlier blocks' rows are untouched"
