"""``kernels.page_tables.sparse_pages_fused`` (one Triton launch) against ``block_pages.sparse_pages`` (torch):
the same tables, key lengths and query offsets, entry for entry, for page sizes 16-128 (1-8 pages per block),
GQA groups, chunked rows, a width bound and rows with no kept blocks.

Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` with Triton installed; skipped elsewhere with the reason."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from attention_backend.block_pages import sparse_pages
from tests.attention_backend.block_pages_helpers import random_selection

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
HAS_TRITON = importlib.util.find_spec("triton") is not None
DEV = "cuda" if torch.cuda.is_available() and HAS_TRITON else ("cpu" if INTERPRET and HAS_TRITON else "")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEV == "", reason="needs CUDA and Triton (or TRITON_INTERPRET=1 with Triton installed)"),
]


@pytest.mark.parametrize("page", [16, 64, 128])
@pytest.mark.parametrize(("hq", "hkv"), [(4, 1), (9, 3)])
@pytest.mark.parametrize(("q_len", "k_len", "width"), [(1000, 1000, None), (300, 1100, None), (640, 900, 3)])
@pytest.mark.parametrize("descending", [False, True])
def test_fused_tables_equal_the_torch_construction(page: int, hq: int, hkv: int, q_len: int, k_len: int, width,
                                                   descending: bool):  # fmt: skip
    from attention_backend.kernels.page_tables import sparse_pages_fused

    block = 128
    _, idx, count = random_selection(hq, q_len, k_len, block, keep=0.4, seed=q_len + page)
    idx, count = idx.to(DEV).int().contiguous(), count.to(DEV).int()
    count[0, 0] = 0  # a sequence decided dense on the device
    if width is not None:
        count = count.clamp_max(width)
    n_pages = -(-k_len // page)
    table = torch.randperm(n_pages + 7, generator=torch.Generator().manual_seed(page))[:n_pages].int().to(DEV)
    ratio = page * hkv
    kw = dict(q_len=q_len, k_len=k_len, block_size=block, page_size=page, ratio=ratio, num_kv_heads=hkv, width=width,
              descending=descending)  # fmt: skip
    want = sparse_pages(idx, count, table, **kw)
    got = sparse_pages_fused(idx, count, table, **kw)
    assert got.max_seqlen_k == want.max_seqlen_k
    assert (got.seqused_q is None) == (want.seqused_q is None) == (not descending)
    for name in ("cu_seqlens_q", "seqused_k", "block_table") + (("seqused_q",) if descending else ()):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype == torch.int32 and a.shape == b.shape, name
        assert torch.equal(a.cpu(), b.cpu()), name
    n_qb = count.shape[1]
    assert got.seqused_k[n_qb - 1 if descending else 0].item() == 0  # head 0, query block 0: decided dense


def test_bad_input_is_refused_before_a_launch():
    from attention_backend.kernels.page_tables import sparse_pages_fused

    count = torch.ones(3, 2, dtype=torch.int32, device=DEV)
    idx = torch.zeros(3, 2, 2, dtype=torch.int32, device=DEV)
    table = torch.zeros(4, dtype=torch.int32, device=DEV)
    kw = dict(q_len=200, k_len=200, block_size=128, page_size=128, ratio=1, num_kv_heads=2)
    with pytest.raises(ValueError, match="not a multiple"):
        sparse_pages_fused(idx, count, table, **kw)
    with pytest.raises(ValueError, match="does not divide"):
        sparse_pages_fused(idx, count, table, **{**kw, "num_kv_heads": 1, "page_size": 96})
    with pytest.raises(ValueError, match="int32"):
        sparse_pages_fused(idx.long(), count, table, **{**kw, "num_kv_heads": 1})
    with pytest.raises(ValueError, match="contiguous last dim"):
        sparse_pages_fused(idx, count.t().contiguous().t(), table, **{**kw, "num_kv_heads": 1})
