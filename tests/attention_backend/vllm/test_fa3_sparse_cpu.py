"""``attention_backend.vllm.fa3_sparse.fa3_attend`` on any host, with vLLM's FlashAttention replaced by a torch
model of its documented paged varlen causal call: the sparse rows of a batch (a whole prompt and a chunk
starting mid-block, around a decode row) come out as the fp64 reference block-sparse attention, the other rows
untouched, and the call carries the arguments the real FA3 needs."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest
import torch

from attention_backend.block_pages import SparsePages
from attention_backend.reference import ref_block_sparse_attention
from tests.attention_backend.block_pages_helpers import paged_varlen_causal, random_selection
from tests.attention_backend.xattn_helpers import assert_close, qkv

HQ, HKV, D, BLOCK, PAGE = 4, 2, 16, 32, 16


def _fa3_module(monkeypatch, calls: list):
    def flash_attn_varlen_func(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k, seqused_k=None, softmax_scale=None,
                               causal=False, block_table=None, out=None, fa_version=None, num_splits=0):
        calls.append({"causal": causal, "fa_version": fa_version, "num_splits": num_splits, "max_seqlen_q": max_seqlen_q,
                      "dtypes": (cu_seqlens_q.dtype, seqused_k.dtype, block_table.dtype), "contiguous":
                      all(t.is_contiguous() for t in (q, cu_seqlens_q, seqused_k, block_table))})  # fmt: skip
        assert int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max()) <= max_seqlen_q
        assert int(seqused_k.max()) <= max_seqlen_k == block_table.shape[1] * k.shape[1]
        sp = SparsePages(cu_seqlens_q, seqused_k, block_table, max_seqlen_k)
        out.copy_(paged_varlen_causal(q, k, v, sp, scale=softmax_scale).to(out.dtype))

    monkeypatch.setitem(sys.modules, "vllm.vllm_flash_attn", SimpleNamespace(flash_attn_varlen_func=flash_attn_varlen_func))
    monkeypatch.delitem(sys.modules, "attention_backend.vllm.fa3_sparse", raising=False)
    return importlib.import_module("attention_backend.vllm.fa3_sparse")


def _sparse_batch(rows: list[tuple[int, int]], seed: int):
    """A batch of ``(q_len, k_len)`` rows in a vLLM NHD FLASH_ATTN cache over shuffled pages, with a random block
    selection and the fp64 reference output of every row longer than one query (a decode row gets neither):
    ``(query, key_cache, value_cache, block_table, seqs, selections, wants)``."""
    n_pages = sum(-(-k // PAGE) for _, k in rows) + 2
    cache = torch.zeros(n_pages, PAGE, HKV, 2 * D).permute(0, 2, 1, 3)
    key_cache, value_cache = cache.transpose(1, 2).split(D, dim=-1)
    perm = torch.randperm(n_pages, generator=torch.Generator().manual_seed(seed)).int()
    table = torch.zeros(len(rows), 12, dtype=torch.int32)
    queries, seqs, sels, wants, used, start = [], [], [], [], 0, 0
    for r, (q_len, k_len) in enumerate(rows):
        q, k, v = qkv(q_len, k_len, HQ, HKV, D, seed=seed + r)
        pages = perm[used : used + -(-k_len // PAGE)]
        used += pages.numel()
        table[r, : pages.numel()] = pages
        for t in range(k_len):
            key_cache[pages[t // PAGE], t % PAGE] = k[t]
            value_cache[pages[t // PAGE], t % PAGE] = v[t]
        queries.append(q)
        if q_len > 1:
            mask, idx, count = random_selection(HQ, q_len, k_len, BLOCK, keep=0.4, seed=seed + r)
            seqs.append(SimpleNamespace(row=r, q_start=start, q_len=q_len, k_len=k_len))
            sels.append(SimpleNamespace(idx=idx, count=count))
            wants.append(ref_block_sparse_attention(q, k, v, mask, block_size=BLOCK, q_offset=k_len - q_len, scale=0.3))
        start += q_len
    return torch.cat(queries), key_cache, value_cache, table, seqs, sels, wants


def test_sparse_rows_of_a_batch_match_the_reference_and_leave_other_rows(monkeypatch) -> None:
    calls: list = []
    fa3 = _fa3_module(monkeypatch, calls)
    rows = [(150, 150), (1, 40), (70, 150)]  # (q_len, k_len): a prompt, a decode (dense), a chunk from 80
    query, key_cache, value_cache, table, seqs, sels, wants = _sparse_batch(rows, seed=0)
    out = torch.full_like(query, float("nan"))
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out,
                   widths=[int(s.count.max()) for s in sels], fa_version=3)  # fmt: skip
    for s, want in zip(seqs, wants, strict=True):
        assert_close(out[s.q_start : s.q_start + s.q_len], want, 1e-5, f"row {s.row}")
    assert torch.isnan(out[150]).all()  # the decode row is FA3's own business, not written here
    assert calls == [{"causal": True, "fa_version": 3, "num_splits": 1, "max_seqlen_q": BLOCK,
                      "dtypes": (torch.int32,) * 3, "contiguous": True}]  # fmt: skip
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out,
                   tma_pages=True)  # fmt: skip
    assert calls[-1]["max_seqlen_q"] == BLOCK + 1
    assert_close(out[seqs[1].q_start : seqs[1].q_start + seqs[1].q_len], wants[1], 1e-5, "tma_pages, no widths")
    monkeypatch.setattr(fa3, "TMA_PAGES_HEAD_DIMS", (D,))  # the default turns TMA pages on at the listed head dims
    n_calls = len(calls)
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out)
    assert len(calls) == n_calls + 1 and calls[-1]["max_seqlen_q"] == BLOCK + 1
    # the copy-free path (CUDA streams: GPU test) is the default at the head dims listed, keep flags included
    per_head: list = []
    monkeypatch.setattr(fa3, "_per_head_calls", lambda *a, **kw: per_head.append(kw))
    monkeypatch.setattr(fa3, "PER_HEAD_STREAMS_BY_HEAD_DIM", {D: 2})
    n_calls, keep = len(calls), [torch.tensor(True), torch.tensor(False)]
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out, keep=keep)
    assert len(calls) == n_calls and len(per_head) == 1
    assert per_head[0]["streams"] == 2 and per_head[0]["keep"] is keep and per_head[0]["max_seqlen_q"] == BLOCK + 1


@pytest.mark.parametrize("descending", [False, True])
def test_per_head_calls_in_either_query_block_order_match_the_reference(monkeypatch, descending: bool) -> None:
    """The copy-free per-head form, query blocks ascending (vLLM's wrapper) or last first (FA3's op with
    ``seqused_q``, modelled here): every row's outputs as the reference's; a row whose keep flag is False keeps what
    ``out`` held; a row starting mid-block (its first query block partial) keeps its rows in place."""
    calls: list = []
    fa3 = _fa3_module(monkeypatch, calls)
    ordered: list = []

    def seqused_q_op(q, k, v, *, out, cu_seqlens_q, seqused_q, seqused_k, max_seqlen_q, max_seqlen_k, block_table,
                     softmax_scale):  # fmt: skip
        assert int(seqused_q.max()) <= max_seqlen_q and cu_seqlens_q.shape[0] == seqused_q.shape[0] + 1
        ordered.append(cu_seqlens_q[:-1].tolist())
        sp = SparsePages(cu_seqlens_q, seqused_k, block_table, max_seqlen_k)
        got = paged_varlen_causal(q, k, v, sp, scale=softmax_scale, seqused_q=seqused_q)
        written = ~torch.isnan(got)
        out[written] = got[written].to(out.dtype)

    monkeypatch.setattr(fa3, "fa3_varlen_seqused_q", seqused_q_op)
    rows = [(150, 150), (70, 150)]  # a prompt, and a chunk from token 80 (its first query block starts mid-block)
    query, key_cache, value_cache, table, seqs, sels, wants = _sparse_batch(rows, seed=10)
    out = torch.full_like(query, float("nan"))
    keep = [torch.tensor(True), torch.tensor(False)]
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out, keep=keep,
                   per_head_streams=2, descending=descending)  # fmt: skip
    assert_close(out[:150], wants[0], 1e-5, "kept row")
    assert torch.isnan(out[150:]).all()  # decided dense: nothing written
    fa3.fa3_attend(query, key_cache, value_cache, table, seqs, sels, block_size=BLOCK, scale=0.3, out=out,
                   per_head_streams=2, descending=descending)  # fmt: skip
    for s, want in zip(seqs, wants, strict=True):
        assert_close(out[s.q_start : s.q_start + s.q_len], want, 1e-5, f"row {s.row}")
    if descending:  # the query blocks' offsets, last first: row 1's 70 rows start at token 80, its blocks at rows 0, 16, 48
        assert len(calls) == 0 and ordered[-1] == [48, 16, 0] and ordered[0] == [128, 96, 64, 32, 0]
    else:
        assert len(ordered) == 0 and len(calls) == 4 * HQ


def test_descending_needs_the_per_head_calls(monkeypatch) -> None:
    fa3 = _fa3_module(monkeypatch, [])
    q = torch.zeros(64, HQ, D)
    with pytest.raises(ValueError, match="per_head_streams"):
        fa3.fa3_attend(q, torch.zeros(4, PAGE, HKV, D), torch.zeros(4, PAGE, HKV, D), torch.zeros(1, 4, dtype=torch.int32),
                       [], [], block_size=BLOCK, scale=0.3, out=q, per_head_streams=0, descending=True)  # fmt: skip
