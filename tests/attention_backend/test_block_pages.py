"""Block-sparse attention as paged dense attention (``attention_backend.block_pages``): the page tables it
builds, fed to a torch model of FlashAttention's paged varlen causal call (bottom-right causal mask, keys
read through the block table, ``seqused_k`` keys per sequence), give the fp64 reference block-sparse
attention, on vLLM's two cache layouts, chunked rows and several rows in one call."""

from __future__ import annotations

import pytest
import torch

from attention_backend.block_pages import (
    SparsePages,
    concat_pages,
    head_major,
    head_pages,
    query_block_lens,
    row_geometry,
    sparse_pages,
)
from attention_backend.reference import ref_block_sparse_attention
from tests.attention_backend.block_pages_helpers import paged_varlen_causal, random_selection, vllm_cache
from tests.attention_backend.xattn_helpers import assert_close, qkv


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page", [8, 32])
@pytest.mark.parametrize(("q_len", "k_len"), [(150, 150), (70, 150), (64, 192), (1, 97)])
def test_one_row_matches_reference_block_sparse(layout: str, page: int, q_len: int, k_len: int) -> None:
    hq, hkv, d, block = 4, 2, 16, 32
    q, k, v = qkv(q_len, k_len, hq, hkv, d, seed=q_len + k_len)
    key_cache, value_cache, table = vllm_cache(k, v, page, layout, seed=page)
    mask, idx, count = random_selection(hq, q_len, k_len, block, keep=0.4, seed=k_len)
    k_pages, ratio = head_pages(key_cache)
    v_pages, _ = head_pages(value_cache)
    sp = sparse_pages(idx, count, table, q_len=q_len, k_len=k_len, block_size=block, page_size=page,
                      ratio=ratio, num_kv_heads=hkv)
    got = paged_varlen_causal(head_major(q), k_pages, v_pages, sp).view(hq, q_len, d).transpose(0, 1)
    want = ref_block_sparse_attention(q, k, v, mask, block_size=block, q_offset=k_len - q_len)
    assert_close(got, want, 1e-5, f"{layout} page {page} q {q_len} k {k_len}")


@pytest.mark.parametrize(("q_len", "k_len"), [(150, 150), (70, 150)])
def test_descending_tables_give_each_heads_query_blocks_last_first(q_len: int, k_len: int) -> None:
    """Built ``descending``, the same sequences in each head's reverse order, located by offsets and ``seqused_q``
    (as FA3's op takes them): the same attention as the reference; the tables refuse to be concatenated."""
    hq, hkv, d, block, page = 4, 2, 16, 32, 8
    q, k, v = qkv(q_len, k_len, hq, hkv, d, seed=7)
    key_cache, value_cache, table = vllm_cache(k, v, page, "NHD", seed=3)
    mask, idx, count = random_selection(hq, q_len, k_len, block, keep=0.4, seed=5)
    k_pages, ratio = head_pages(key_cache)
    kw = dict(q_len=q_len, k_len=k_len, block_size=block, page_size=page, ratio=ratio, num_kv_heads=hkv)
    asc, desc = sparse_pages(idx, count, table, **kw), sparse_pages(idx, count, table, **kw, descending=True)
    n_qb = count.shape[1]
    assert asc.seqused_q is None and desc.seqused_q.shape == (hq * n_qb,)
    order = (torch.arange(hq)[:, None] * n_qb + torch.arange(n_qb).flip(0)).reshape(-1)  # head-major, last first
    assert torch.equal(desc.block_table, asc.block_table[order]) and torch.equal(desc.seqused_k, asc.seqused_k[order])
    assert torch.equal(desc.cu_seqlens_q[:-1], asc.cu_seqlens_q[:-1][order])
    assert torch.equal(desc.seqused_q, (asc.cu_seqlens_q[1:] - asc.cu_seqlens_q[:-1])[order])
    assert desc.cu_seqlens_q[-1] == hq * q_len
    got = paged_varlen_causal(head_major(q), k_pages, head_pages(value_cache)[0], desc, seqused_q=desc.seqused_q)
    want = ref_block_sparse_attention(q, k, v, mask, block_size=block, q_offset=k_len - q_len)
    assert_close(got.view(hq, q_len, d).transpose(0, 1), want, 1e-5, f"descending q {q_len} k {k_len}")
    with pytest.raises(ValueError, match="descending"):
        concat_pages([desc])


def test_width_bound_and_several_rows_in_one_call() -> None:
    """Two rows (one chunked) in one call, each with its table cut to its widest kept row."""
    hq, hkv, d, block, page = 4, 1, 8, 16, 16
    rows = [(40, 100), (33, 33)]
    inputs, parts, wants = [], [], []
    for i, (q_len, k_len) in enumerate(rows):
        q, k, v = qkv(q_len, k_len, hq, hkv, d, seed=10 + i)
        key_cache, value_cache, table = vllm_cache(k, v, page, "NHD", seed=i)
        mask, idx, count = random_selection(hq, q_len, k_len, block, keep=0.3, seed=i)
        k_pages, ratio = head_pages(key_cache)
        width = int(count.max())
        parts.append(sparse_pages(idx, count, table, q_len=q_len, k_len=k_len, block_size=block, page_size=page,
                                  ratio=ratio, num_kv_heads=hkv, width=width))
        assert parts[-1].block_table.shape[1] == width
        inputs.append((q, k_pages, head_pages(value_cache)[0]))
        wants.append(ref_block_sparse_attention(q, k, v, mask, block_size=block, q_offset=k_len - q_len))
    both = concat_pages(parts)
    assert both.cu_seqlens_q[-1].item() == hq * sum(q for q, _ in rows)
    # one call reads one cache: run each row's sequences of the joint tables against its own cache
    n0 = parts[0].seqused_k.numel()
    for i, (q, kp, vp) in enumerate(inputs):
        seqs = slice(0, n0) if i == 0 else slice(n0, None)
        cu = both.cu_seqlens_q[seqs.start : (n0 + 1 if i == 0 else None)]
        sub = SparsePages(cu - cu[0], both.seqused_k[seqs], both.block_table[seqs], both.max_seqlen_k)
        got = paged_varlen_causal(head_major(q), kp, vp, sub).view(hq, q.shape[0], d).transpose(0, 1)
        assert_close(got, wants[i], 1e-5, f"row {i}")


def test_query_block_lens_cover_the_row() -> None:
    assert query_block_lens(150, 150, 32, "cpu").tolist() == [32, 32, 32, 32, 22]
    assert query_block_lens(70, 150, 32, "cpu").tolist() == [16, 32, 22]  # starts at 80, mid-block 2
    assert query_block_lens(1, 97, 32, "cpu").tolist() == [1]


@pytest.mark.parametrize(("q_len", "k_len"), [(150, 150), (70, 150), (1, 97)])
def test_every_head_of_a_row_has_the_first_heads_query_offsets(q_len: int, k_len: int) -> None:
    """The copy-free fa3 path (``fa3_attend(per_head_streams=)``) passes head 0's ``cu_seqlens_q`` for every head;
    last first, the offsets and ``seqused_q`` of the one-head geometry."""
    hq = 4
    cu, _, none = row_geometry(q_len, k_len, 32, hq, "cpu")
    n_qb = (cu.numel() - 1) // hq
    assert none is None
    for h in range(hq):
        assert (cu[h * n_qb : (h + 1) * n_qb + 1] - cu[h * n_qb]).tolist() == cu[: n_qb + 1].tolist()
    starts, _, used = row_geometry(q_len, k_len, 32, hq, "cpu", descending=True)
    one, _, one_used = row_geometry(q_len, k_len, 32, 1, "cpu", descending=True)
    assert one[-1] == q_len and starts[-1] == hq * q_len
    for h in range(hq):
        assert (starts[h * n_qb : (h + 1) * n_qb] - h * q_len).tolist() == one[:-1].tolist()
        assert used[h * n_qb : (h + 1) * n_qb].tolist() == one_used.tolist()


def test_bad_layouts_and_pages_raise() -> None:
    cache = torch.zeros(4, 16, 2, 8)
    with pytest.raises(ValueError, match="contiguous last dim"):
        head_pages(cache.transpose(2, 3))
    idx, count = torch.zeros(2, 1, 1, dtype=torch.int32), torch.ones(2, 1, dtype=torch.int32)
    with pytest.raises(ValueError, match="does not divide the XAttention block"):
        sparse_pages(idx, count, torch.zeros(1, dtype=torch.int32), q_len=16, k_len=16, block_size=16,
                     page_size=32, ratio=32, num_kv_heads=2)
    with pytest.raises(ValueError, match="not a multiple"):
        sparse_pages(torch.zeros(3, 1, 1, dtype=torch.int32), torch.ones(3, 1, dtype=torch.int32),
                     torch.zeros(1, dtype=torch.int32), q_len=16, k_len=16, block_size=16, page_size=16,
                     ratio=32, num_kv_heads=2)


@pytest.mark.parametrize(("q_len", "k_len"), [(150, 150), (70, 150), (1, 97)])
def test_a_row_with_no_kept_blocks_gets_no_keys(q_len: int, k_len: int) -> None:
    """Counts of 0 (a row decided dense on the device) give sequences of 0 keys, never a negative length."""
    hq, hkv, block, page = 4, 2, 32, 8
    _, idx, count = random_selection(hq, q_len, k_len, block, keep=0.4, seed=1)
    table = torch.arange(-(-k_len // page), dtype=torch.int32)
    sp = sparse_pages(idx, torch.zeros_like(count), table, q_len=q_len, k_len=k_len, block_size=block,
                      page_size=page, ratio=hkv, num_kv_heads=hkv)  # fmt: skip
    assert sp.seqused_k.tolist() == [0] * count.numel()
    assert sp.cu_seqlens_q[-1].item() == hq * q_len  # the queries are still laid out: FlashAttention skips them
