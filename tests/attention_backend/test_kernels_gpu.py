"""The Triton kernels against the fp64 reference (``attention_backend.reference``) on fresh random inputs.

Runs on CUDA; skipped elsewhere with the reason. Under ``TRITON_INTERPRET=1`` (Triton installed, no GPU)
the same tests run on CPU tensors with fp16 only (the interpreter mishandles bf16 loads) and a smaller
grid. Every output is poisoned with NaN before the launch and checked to be fully written.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import pytest
import torch
import torch.nn.functional as F

from attention_backend.reference import (
    ref_block_sparse_attention,
    ref_dense_attention,
    ref_estimate_block_scores,
    ref_select_blocks,
)
from tests.attention_backend.xattn_helpers import assert_close, assert_mask_equal, causal_block_mask

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
HAS_TRITON = importlib.util.find_spec("triton") is not None
if torch.cuda.is_available() and HAS_TRITON:
    DEV = "cuda"
elif INTERPRET and HAS_TRITON:
    DEV = "cpu"
else:
    DEV = ""

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEV == "", reason="needs CUDA and Triton (or TRITON_INTERPRET=1 with Triton installed)"),
]

DTYPES = [torch.float16] if DEV == "cpu" else [torch.bfloat16, torch.float16]
# Scores are probability masses (each reshaped row sums to 1); outputs are O(1).
SCORE_TOL = {torch.float16: 2e-3, torch.bfloat16: 2e-3}
OUT_TOL = {torch.float16: 4e-3, torch.bfloat16: 2.5e-2}

if DEV:
    from attention_backend.kernels import (
        AttnTiles,
        EstimateTiles,
        PagedKV,
        PrefillSeq,
        block_sparse_attention_indexed,
        estimate_block_scores,
        mask_to_index,
        paged_prefill,
        select_blocks_indexed,
        xattention_prefill,
    )
    from attention_backend.kernels.select import search_rounds


def _rand(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(dtype).to(DEV)


def _inputs(lk: int, lq: int, hq: int, hkv: int, d: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = _rand(lq, hq, d, dtype=dtype, gen=gen)
    # Keys with a few strong shared directions so that the scores are not uniform.
    k = _rand(lk, hkv, d, dtype=dtype, gen=gen)
    v = _rand(lk, hkv, d, dtype=dtype, gen=gen)
    return q, k, v


def _paged(k: torch.Tensor, v: torch.Tensor, page: int, seed: int) -> PagedKV:
    """Scatter ``k, v: [Lk, Hkv, D]`` into a shuffled page pool laid out as vLLM's FLASH_ATTN cache
    (``[pages, Hkv, page, 2D]`` with K and V side by side), viewed as ``[pages, page, Hkv, D]``."""
    lk, hkv, d = k.shape
    n_pages = -(-lk // page)
    pool = n_pages + 3
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(pool, generator=gen)[:n_pages]
    cache = torch.full((pool, hkv, page, 2 * d), float("nan"), dtype=k.dtype, device=k.device)
    pad = n_pages * page - lk
    kp = F.pad(k, (0, 0, 0, 0, 0, pad)).view(n_pages, page, hkv, d).transpose(1, 2)
    vp = F.pad(v, (0, 0, 0, 0, 0, pad)).view(n_pages, page, hkv, d).transpose(1, 2)
    cache[perm.to(k.device)] = torch.cat([kp, vp], dim=-1)
    if pad:  # slots past the sequence hold garbage in vLLM's cache: no kernel may read them as values
        cache[int(perm[-1]), :, page - pad :] = float("nan")
    key_cache, value_cache = cache.transpose(1, 2).split(d, dim=-1)
    table = torch.cat([perm, torch.zeros(2, dtype=torch.long)]).to(torch.int32).to(k.device)
    return PagedKV(key_cache, value_cache, table, lk)


def _cpu(*ts: torch.Tensor):
    return [t.cpu() for t in ts]


def _first_qb_nqb(lk: int, q_offset: int, block: int) -> tuple[int, int, int]:
    n_kb = -(-lk // block)
    return q_offset // block, n_kb - q_offset // block, n_kb


if DEV == "cpu":
    SHAPES = [(1, 0, 2, 1, 64, 8), (129, 0, 4, 2, 64, 16), (333, 70, 2, 1, 64, 8), (257, 128, 2, 2, 128, 16)]
else:
    SHAPES = [
        (1, 0, 4, 1, 128, 8),
        (127, 0, 8, 2, 128, 8),
        (129, 0, 4, 4, 128, 16),
        (1000, 0, 8, 2, 128, 8),
        (1823, 0, 4, 1, 64, 16),
        (1000, 333, 8, 2, 128, 8),
        (777, 512, 4, 2, 128, 16),
        (1823, 1537, 8, 8, 64, 8),
    ]
SHAPE_IDS = [f"lk{s[0]}-off{s[1]}-h{s[2]}x{s[3]}-B{s[4]}-S{s[5]}" for s in SHAPES]


EST_VARIANTS = ["pointer", "pointer-whole-d", "pointer-split3", "tma", "tma-split3", "gemm", "gemm-grouped",
                "gemm-grouped-cols3", "gemm-grouped-plain"]


def _est_tiles(variant: str) -> EstimateTiles:
    """Pointer-load kernel (32-wide head-dim slices or the whole head dim per step) or the TMA one; the
    ``split3`` variants cut every query tile's key range into 3 programs (fewer than 3 tiles: one each);
    ``gemm``: the library GEMM + Triton epilogue, in chunks of query rows small enough to need several
    (``gemm-grouped``: one batched GEMM and one epilogue a chunk over every KV head; ``-cols3``: each epilogue
    program walks 3 logit tiles of its rows; ``-plain``: a plain GEMM per KV head into the chunk's buffer)."""
    if variant.startswith("gemm"):
        kind = dict(gemm=True, gemm_grouped=variant.startswith("gemm-grouped"),
                    gemm_grouped_kernel=not variant.endswith("plain"))
        if variant.endswith("cols3"):
            kind.update(gemm_epilogue_cols=3, bn=16 if DEV == "cpu" else 32)
        return EstimateTiles(gemm_chunk=32, bm=64, **{"bn": 64, **kind}, num_warps=4) if DEV == "cpu" else \
            EstimateTiles(gemm_chunk=96, **kind)
    kind = dict(tma=variant.startswith("tma"), bk=0 if variant == "pointer-whole-d" else 32)
    kind["splits"] = 3 if variant.endswith("split3") else 1
    if DEV == "cpu":
        return EstimateTiles(bm=64, bn=64, num_warps=4, **kind)
    return EstimateTiles(**kind) if variant.startswith("tma") else EstimateTiles(bm=64, bn=128, num_warps=4, **kind)


@pytest.mark.parametrize("variant", EST_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("lk", "off", "hq", "hkv", "block", "stride"), SHAPES, ids=SHAPE_IDS)
def test_estimate_matches_reference(lk, off, hq, hkv, block, stride, dtype, variant):
    d = 64
    q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=lk + off)
    first, nqb, nkb = _first_qb_nqb(lk, off, block)
    out = torch.full((hq, nqb, nkb), float("nan"), device=DEV)
    tiles = _est_tiles(variant)
    got = estimate_block_scores(
        q, PagedKV.from_contiguous(k, v), block_size=block, stride=stride, q_offset=off, out=out, tiles=tiles
    )
    assert got.data_ptr() == out.data_ptr() and bool(torch.isfinite(got).all()), "scores not fully written"
    qc, kc = _cpu(q, k)
    if lk <= 400:
        want = ref_estimate_block_scores(qc, kc, block_size=block, stride=stride, q_offset=off)
    else:  # the vectorised torch path, itself tested against the reference on CPU
        from attention_backend.estimate import estimate_block_scores as torch_estimate

        want = torch_estimate(qc.float(), kc.float(), block_size=block, stride=stride, q_offset=off)
    assert_close(got.cpu(), want, SCORE_TOL[dtype], "block scores")


@pytest.mark.parametrize("kernel", ["tma", "gemm", "gemm-grouped", "gemm-grouped-plain"])
@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize(("lk", "off", "hq", "hkv", "block", "stride"), SHAPES[:3], ids=SHAPE_IDS[:3])
def test_fp8_estimate_is_the_reference_on_the_fp8_operands(lk, off, hq, hkv, block, stride, paged, kernel):
    """``fp8=True``: the scores are the reference's on e4m3 copies of q and k (what the kernel multiplies),
    and close to the bf16 scores (what it replaces). The TMA kernel scales each head, the library GEMM each
    reshaped row of each head; heads of different magnitudes check that the scale is taken back out of the
    logits."""
    from attention_backend.fp8 import fp8_round_trip, fp8_rows_round_trip

    if kernel.startswith("gemm") and INTERPRET:
        pytest.skip("the Triton interpreter's fp32 -> e4m3 conversion drops the carry of a rounded-up mantissa "
                    "(-31.9 -> -16); the GPU's conversion rounds to nearest")
    d = 64
    dtype = DTYPES[0]
    q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=lk + off + 1)
    q = q * torch.linspace(0.2, 3.0, hq, device=q.device, dtype=q.dtype)[None, :, None]
    kv = _paged(k, v, 16, seed=3) if paged else PagedKV.from_contiguous(k, v)
    tiles = _est_tiles(kernel)
    got = estimate_block_scores(q, kv, block_size=block, stride=stride, q_offset=off, tiles=tiles, fp8=True)
    if kernel.startswith("gemm"):
        qf, kf = fp8_rows_round_trip(q, stride, off), fp8_rows_round_trip(k, stride)
    else:
        qf, kf = fp8_round_trip(q).cpu(), fp8_round_trip(k).cpu()
    want = ref_estimate_block_scores(qf, kf, block_size=block, stride=stride, q_offset=off)
    assert_close(got.cpu(), want, SCORE_TOL[dtype], "fp8 block scores vs the reference on the fp8 operands")
    bf = estimate_block_scores(q, kv, block_size=block, stride=stride, q_offset=off, tiles=tiles)
    assert float((got - bf).abs().max()) < 0.1, "fp8 scores far from the bf16 ones"
    with pytest.raises(ValueError, match="fp8 estimation needs the TMA kernel"):
        estimate_block_scores(q, kv, block_size=block, stride=stride, q_offset=off, tiles=_est_tiles("pointer"), fp8=True)


@pytest.mark.parametrize("grouped", [False, True], ids=["pairs", "grouped"])
def test_gemm_epilogue_walking_tiles_is_the_one_tile_epilogue(grouped):
    """``gemm_epilogue_cols``: an epilogue program that walks 3 logit tiles of its rows writes what 3 one-tile programs
    write, bit for bit (rows long enough that each spans several such programs, and tiles past the causal edge)."""
    lk, hq, hkv, d = 1100, 2, 1, 64
    q, k, v = _inputs(lk, lk, hq, hkv, d, DTYPES[0], seed=9)
    est = functools.partial(estimate_block_scores, q, PagedKV.from_contiguous(k, v), block_size=128, stride=8)
    tiles = dict(gemm=True, gemm_chunk=48, bm=32, bn=16, num_warps=4, gemm_grouped=grouped)
    one = est(tiles=EstimateTiles(**tiles))
    assert bool(torch.isfinite(one).all())
    assert torch.equal(est(tiles=EstimateTiles(**tiles, gemm_epilogue_cols=3)), one)


def test_gemm_grouped_plain_is_the_per_head_path():
    """``gemm_grouped_kernel=False``: each KV head's plain GEMM written into the chunk's buffer and one epilogue launch
    over all heads give the per-(KV head, chunk) path's scores bit for bit (the same GEMMs, the same epilogue tiles)."""
    lk, hq, hkv, d = 700, 4, 2, 64
    q, k, v = _inputs(lk, lk, hq, hkv, d, DTYPES[0], seed=11)
    est = functools.partial(estimate_block_scores, q, PagedKV.from_contiguous(k, v), block_size=128, stride=8)
    tiles = dict(gemm=True, gemm_chunk=32, bm=32, bn=16, num_warps=4)
    pairs = est(tiles=EstimateTiles(**tiles))
    assert bool(torch.isfinite(pairs).all())
    assert torch.equal(est(tiles=EstimateTiles(**tiles, gemm_grouped=True, gemm_grouped_kernel=False)), pairs)


def test_gemm_chunks_last_first_is_the_first_first_path():
    """``gemm_last_first`` (the default) only reorders the chunks: each chunk's GEMM and epilogue write their own lse
    rows, so the scores are those of the chunks in row order, bit for bit (several chunks, a partial last one)."""
    lk, hq, hkv, d = 900, 4, 2, 64
    q, k, v = _inputs(lk, lk, hq, hkv, d, DTYPES[0], seed=13)
    est = functools.partial(estimate_block_scores, q, PagedKV.from_contiguous(k, v), block_size=128, stride=8)
    tiles = dict(gemm=True, gemm_chunk=32, bm=32, bn=16, num_warps=4, gemm_grouped=True, gemm_grouped_kernel=False)
    first_first = est(tiles=EstimateTiles(**tiles, gemm_last_first=False))
    assert bool(torch.isfinite(first_first).all())
    assert torch.equal(est(tiles=EstimateTiles(**tiles)), first_first)


@pytest.mark.parametrize(
    ("capability", "fp8", "stride", "want"),
    [((9, 0), True, 16, "FP8_GEMM_TILES"), ((9, 0), True, 32, "FP8_GEMM_TILES"), ((9, 0), True, 8, "fused"),
     ((9, 0), False, 16, "fused"), ((10, 0), True, 16, "fused"), ((8, 0), True, 16, "POINTER_TILES"),
     ((8, 0), False, 8, "POINTER_TILES")],
)
def test_default_estimate_tiles_follow_the_measured_card(monkeypatch, capability, fp8, stride, want):
    """``default_tiles``: the grouped fp8 library GEMM only where it was measured faster (fp8 at S >= 16 on sm_90),
    the fused TMA kernel on other sm_90+ cases, pointer loads before sm_90 (the capability is faked: no GPU needed)."""
    from attention_backend.kernels import estimate as est

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    got = est.default_tiles(torch.device("cuda"), fp8=fp8, stride=stride)
    assert got == (est.EstimateTiles() if want == "fused" else getattr(est, want))
    assert est.default_tiles(torch.device("cpu"), fp8=fp8, stride=stride) == est.EstimateTiles()  # the interpreter


@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
def test_gemm_estimate_over_streams_is_the_serial_one(fp8: bool) -> None:
    """``EstimateTiles.gemm_streams``: the (KV head, chunk) pairs over 3 CUDA streams give the scores of one stream
    bit for bit (the same kernels on the same operands, each pair writing its own lse rows); a missing wait or
    join shows as unwritten or stale scores."""
    if DEV != "cuda":
        pytest.skip("CUDA streams: off CUDA the pairs run in order whatever gemm_streams says")
    lk, hq, hkv, d = 3000, 8, 2, 128
    q, k, v = _inputs(lk, lk, hq, hkv, d, torch.bfloat16, seed=5)
    est = functools.partial(estimate_block_scores, q, PagedKV.from_contiguous(k, v), block_size=128, stride=16, fp8=fp8)
    serial = est(tiles=EstimateTiles(gemm=True, gemm_chunk=32))
    streamed = est(tiles=EstimateTiles(gemm=True, gemm_chunk=32, gemm_streams=3))
    assert bool(torch.isfinite(serial).all())
    assert torch.equal(streamed, serial)
    # one batched GEMM a chunk over both KV heads: another GEMM kernel (same logits up to its summation order),
    # and over streams the same bits as its own serial run
    grouped = est(tiles=EstimateTiles(gemm=True, gemm_chunk=32, gemm_grouped=True))
    assert float((grouped - serial).abs().max()) < 1e-2
    assert torch.equal(est(tiles=EstimateTiles(gemm=True, gemm_chunk=32, gemm_grouped=True, gemm_streams=3)), grouped)
    # a plain GEMM per KV head into the grouped chunk's buffer: the pairs' GEMMs, so their bits, over streams too
    plain = dict(gemm=True, gemm_chunk=32, gemm_grouped=True, gemm_grouped_kernel=False)
    assert torch.equal(est(tiles=EstimateTiles(**plain)), serial)
    assert torch.equal(est(tiles=EstimateTiles(**plain, gemm_streams=3)), serial)


@pytest.mark.parametrize("variant", EST_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("page", [16, 32, 128])
def test_estimate_reads_the_paged_cache(page, dtype, variant):
    lk, off, hq, hkv, d = (300, 100, 4, 2, 64) if DEV == "cpu" else (1500, 700, 8, 2, 128)
    q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=page)
    est = functools.partial(estimate_block_scores, block_size=128, stride=8, q_offset=off, tiles=_est_tiles(variant))
    contiguous = est(q, PagedKV.from_contiguous(k, v))
    paged = est(q, _paged(k, v, page, seed=page))
    assert_close(paged, contiguous, 1e-6, f"paged (page {page}) vs contiguous scores")


@pytest.mark.parametrize("variant", EST_VARIANTS)
def test_estimate_reads_queries_out_of_a_fused_qkv_buffer(variant):
    """vLLM hands the backend q as a view of its fused qkv projection (token stride (Hq + 2 Hkv) D): the
    kernels read it in place with its strides, and give the scores of a contiguous copy; so do head-major
    q and k (one page), which the TMA kernel copies token-major first."""
    lk, hq, hkv, d = (256, 4, 2, 64) if DEV == "cpu" else (1536, 8, 2, 128)
    dtype = DTYPES[0]
    q, k, v = _inputs(lk, lk, hq, hkv, d, dtype, seed=11)
    qkv = torch.cat([q, k, v], dim=1)
    q_view = qkv[:, :hq]
    assert not q_view.is_contiguous()
    est = functools.partial(estimate_block_scores, block_size=128, stride=16, tiles=_est_tiles(variant))
    kv = PagedKV.from_contiguous(k, v)
    want = est(q.contiguous(), kv)
    assert_close(est(q_view, kv), want, 1e-6, "scores of a qkv view vs a contiguous q")
    # head-major layouts (vLLM's FLASH_ATTN cache keeps [pages, Hkv, page, D]): not viewable as token rows
    q_hnd = q.transpose(0, 1).contiguous().transpose(0, 1)
    k_hnd, v_hnd = (x.transpose(0, 1).contiguous().transpose(0, 1) for x in (k, v))
    assert_close(est(q_hnd, PagedKV.from_contiguous(k_hnd, v_hnd)), want, 1e-6, "scores of head-major q and k")


@pytest.mark.parametrize("tau", [0.0, 0.5, 0.9, 0.97, 1.0])
def test_select_matches_reference(tau):
    gen = torch.Generator().manual_seed(int(tau * 100))
    hq, nkb, first = 6, 37, 5
    nqb = nkb - first
    raw = torch.rand(hq, nqb, nkb, generator=gen) ** 4  # skewed, like real block scores
    scores = (raw * causal_block_mask(hq, nqb, nkb, first)).to(DEV)
    mask, idx, count = select_blocks_indexed(scores, tau, first_qb=first)
    want = ref_select_blocks(scores.cpu(), tau, q_block_offset=first)
    assert_mask_equal(mask.cpu(), want, f"selection tau={tau}")
    assert torch.equal(count.cpu(), want.sum(-1, dtype=torch.int32)), "count != kept blocks"
    for h in range(hq):
        for i in range(nqb):
            kept = torch.nonzero(want[h, i]).flatten().to(torch.int32)
            assert torch.equal(idx[h, i, : len(kept)].cpu(), kept), f"index list of row ({h}, {i})"


def test_select_ties_follow_the_reference_order():
    """Equal scores (uniform attention, e.g. dummy weights): as many tied blocks as the reference's stable
    sort takes, lowest key blocks first, not every tied block."""
    hq, nkb = 2, 24
    scores = causal_block_mask(hq, nkb, nkb).float() * 0.25
    scores[:, :, 0] = 0.5
    for tau in (0.3, 0.7, 0.9):
        mask, _, count = select_blocks_indexed(scores.to(DEV), tau, first_qb=0)
        want = ref_select_blocks(scores, tau)
        assert_mask_equal(mask.cpu(), want, f"tied selection tau={tau}")
        assert int(count.sum()) < int(causal_block_mask(hq, nkb, nkb).sum()), "ties kept every block"


@pytest.mark.parametrize("tau", [0.5, 0.9, 0.95])
def test_select_long_rows_with_ties_match_the_reference(tau):
    """Rows of 300 key blocks (NKB 512, the cut-off found by bisection over many candidates) whose scores are
    multiples of 1/8 (many exact ties, sums exact in fp32 and fp64 alike), and skewed continuous ones."""
    gen = torch.Generator().manual_seed(int(tau * 1000))
    hq, nkb, first = 2, 300, 200
    nqb = nkb - first
    causal = causal_block_mask(hq, nqb, nkb, first)
    for raw in (
        torch.randint(0, 6, (hq, nqb, nkb), generator=gen) / 8.0,
        torch.rand(hq, nqb, nkb, generator=gen) ** 6,
    ):
        scores = (raw * causal).float()
        mask, idx, count = select_blocks_indexed(scores.to(DEV), tau, first_qb=first)
        want = ref_select_blocks(scores, tau, q_block_offset=first)
        assert_mask_equal(mask.cpu(), want, f"long-row selection tau={tau}")
        assert torch.equal(count.cpu(), want.sum(-1, dtype=torch.int32)), "count != kept blocks"
        kept = torch.nonzero(want[1, -1]).flatten().to(torch.int32)
        assert torch.equal(idx[1, -1, : len(kept)].cpu(), kept), "index list of the last row"


def test_select_short_causal_rows_on_fewer_warps_match_one_length():
    """Rows 400-599 of 600 key blocks: those up to block 511 run at 512 blocks on one warp, the rest at 1,024 on two
    (``select_levels``): the same mask (the short rows' entries past 512 written False), index lists and counts as every
    row at 1,024, and the reference's blocks."""
    from attention_backend.kernels.select import select_levels

    gen = torch.Generator().manual_seed(3)
    hq, nkb, first = 1, 600, 400
    nqb = nkb - first
    assert select_levels(first, nqb, nkb) == [(0, 112, 512), (112, 88, 1024)]
    scores = (torch.rand(hq, nqb, nkb, generator=gen) ** 4 * causal_block_mask(hq, nqb, nkb, first)).float().to(DEV)
    one = select_blocks_indexed(scores, 0.9, first_qb=first, levels=1)
    got = select_blocks_indexed(scores, 0.9, first_qb=first)
    assert_mask_equal(got[0].cpu(), one[0].cpu(), "short rows' masks")
    assert_mask_equal(got[0].cpu(), ref_select_blocks(scores.cpu(), 0.9, q_block_offset=first), "vs the reference")
    assert torch.equal(got[2], one[2]), "counts"
    for i in range(nqb):
        n = int(one[2][0, i])
        assert torch.equal(got[1][0, i, :n], one[1][0, i, :n]), f"index list of row {i}"


def test_select_levels_split_rows_by_warps():
    from attention_backend.kernels.select import level_sizes, select_levels

    assert level_sizes(1024) == [512, 1024] and level_sizes(1024, 1) == [1024] and level_sizes(300) == [512]
    assert level_sizes(4096) == [512, 1024, 2048, 4096] and level_sizes(8192) == [8192]  # 4,096 runs on 8 warps too
    assert select_levels(0, 1024, 1024) == [(0, 512, 512), (512, 512, 1024)]
    assert select_levels(300, 724, 1024) == [(0, 212, 512), (212, 512, 1024)]
    assert select_levels(600, 424, 1024) == [(0, 424, 1024)]  # every row past 512 blocks
    assert select_levels(0, 1024, 1024, levels=1) == [(0, 1024, 1024)]
    with pytest.raises(ValueError, match="levels"):
        level_sizes(1024, 0)


@pytest.mark.parametrize("probes", [2, 4, 16])
def test_select_with_more_probes_a_round_finds_the_same_cut_off(probes):
    """The search testing several cut-off candidates a round keeps exactly the bisection's blocks (same cut-off,
    fewer rounds): ties at multiples of 1/8, skewed continuous scores, and rows where even the largest candidate is
    not taken (tau 0: only the forced blocks)."""
    gen = torch.Generator().manual_seed(probes)
    hq, nkb, first = 2, 90, 80  # the search runs over the scores' bits: its depth does not depend on the row length
    nqb = nkb - first
    causal = causal_block_mask(hq, nqb, nkb, first)
    for raw in (torch.randint(0, 6, (hq, nqb, nkb), generator=gen) / 8.0, torch.rand(hq, nqb, nkb, generator=gen) ** 6):
        scores = (raw * causal).float().to(DEV)
        for tau in (0.0, 0.5, 0.9):
            want = select_blocks_indexed(scores, tau, first_qb=first, probes=1)
            got = select_blocks_indexed(scores, tau, first_qb=first, probes=probes)
            assert_mask_equal(got[0].cpu(), want[0].cpu(), f"probes={probes} tau={tau}")
            assert torch.equal(got[2], want[2]), f"counts, probes={probes} tau={tau}"
    with pytest.raises(ValueError, match="power of two"):
        select_blocks_indexed(scores, 0.9, first_qb=first, probes=3)


def test_search_rounds_narrow_every_float_to_one_pattern():
    assert [search_rounds(p) for p in (1, 2, 4, 8, 16)] == [31, 20, 14, 10, 8]


def test_select_per_head_thresholds():
    gen = torch.Generator().manual_seed(7)
    hq, nkb = 4, 20
    scores = (torch.rand(hq, nkb, nkb, generator=gen) ** 3 * causal_block_mask(hq, nkb, nkb)).to(DEV)
    taus = [0.3, 0.6, 0.9, 1.0]
    mask, _, _ = select_blocks_indexed(scores, torch.tensor(taus), first_qb=0)
    assert_mask_equal(mask.cpu(), ref_select_blocks(scores.cpu(), taus), "per-head selection")


def _dense_sdpa(q, k, v, off):
    """Dense causal attention through torch SDPA (GQA via repeat here only, as the comparison)."""
    group = q.shape[1] // k.shape[1]
    kk, vv = (t.repeat_interleave(group, 1).transpose(0, 1).float() for t in (k, v))
    lq, lk = q.shape[0], k.shape[0]
    allowed = torch.arange(lk, device=q.device)[None, :] <= torch.arange(off, off + lq, device=q.device)[:, None]
    out = F.scaled_dot_product_attention(q.transpose(0, 1).float(), kk, vv, attn_mask=allowed)
    return out.transpose(0, 1)


# The sparse attention kernels: the pointer-load one and the TMA one (whole-block and 32-row key tiles,
# q k^T one step ahead, the warp-specialised single loop). The interpreter runs the warp-specialised
# variant's loop without the warp split (Triton compiles the split only for a GPU).
# On a GPU the warp-specialised variant is refused (it hangs there: sparse_attention.WS_HANGS), tested below.
WS_ON_GPU = pytest.mark.skipif(DEV == "cuda" and not INTERPRET, reason="warp_specialize is refused on a GPU (hangs)")
ATTN_VARIANTS = [
    "pointer", "tma", "tma-bn32", "tma-qk-ahead", "tma-qk-ahead-bn32",
    pytest.param("tma-ws", marks=WS_ON_GPU), pytest.param("tma-ws-bn32", marks=WS_ON_GPU),
]  # fmt: skip


def _attn_tiles(variant: str) -> AttnTiles:
    if variant == "pointer":
        return AttnTiles()
    opts = {
        "tma-bn32": dict(bn=32),
        "tma-qk-ahead": dict(qk_ahead=True),
        "tma-qk-ahead-bn32": dict(bn=32, qk_ahead=True),  # several steps per block: the carried logits rotate
        "tma-ws": dict(warp_specialize=True, num_warps=4, num_stages=2),
        "tma-ws-bn32": dict(warp_specialize=True, num_warps=4, num_stages=2, bn=32),
    }
    return AttnTiles(kernel="tma", **({"num_stages": 3} | opts.get(variant, {})))


@pytest.mark.skipif(DEV != "cuda" or INTERPRET, reason="the refusal is for a GPU; the interpreter runs the variant")
def test_warp_specialized_tiles_are_refused_on_a_gpu():
    q, k, v = _inputs(300, 300, 2, 1, 64, torch.float16, seed=62)
    idx, count = mask_to_index(causal_block_mask(2, 3, 3).to(DEV))
    with pytest.raises(ValueError, match="warp_specialize hangs on the GPU"):
        block_sparse_attention_indexed(
            q, PagedKV.from_contiguous(k, v), idx, count, block_size=128, tiles=_attn_tiles("tma-ws")
        )


@pytest.mark.parametrize("variant", ATTN_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("lk", "off", "hq", "hkv", "block", "stride"), SHAPES, ids=SHAPE_IDS)
def test_all_blocks_equals_dense_sdpa(lk, off, hq, hkv, block, stride, dtype, variant):
    d = 64 if DEV == "cpu" else 128
    q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=3 * lk + off)
    first, nqb, nkb = _first_qb_nqb(lk, off, block)
    idx, count = mask_to_index(causal_block_mask(hq, nqb, nkb, first).to(DEV), first_qb=first)
    out = torch.full_like(q, float("nan"))
    block_sparse_attention_indexed(
        q, PagedKV.from_contiguous(k, v), idx, count, block_size=block, q_offset=off, out=out,
        tiles=_attn_tiles(variant),
    )
    assert bool(torch.isfinite(out).all()), "output not fully written"
    assert_close(out.float(), _dense_sdpa(q, k, v, off), OUT_TOL[dtype], "all blocks vs dense SDPA")


@pytest.mark.parametrize("variant", ATTN_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("page", [16, 64, 128, 256])
@pytest.mark.parametrize(("lk", "off", "hq", "hkv", "block", "stride"), SHAPES, ids=SHAPE_IDS)
def test_random_block_mask_paged_matches_reference(lk, off, hq, hkv, block, stride, page, dtype, variant):
    """vLLM's cache layout (K/V strided views, shuffled pages, NaN past the sequence), a random block mask
    (diagonal kept) and chunk offsets; the TMA kernel refuses key tiles that straddle pages."""
    d = 64
    q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=5 * lk + off + page)
    first, nqb, nkb = _first_qb_nqb(lk, off, block)
    gen = torch.Generator().manual_seed(lk + page)
    mask = (torch.rand(hq, nqb, nkb, generator=gen) < 0.4) & causal_block_mask(hq, nqb, nkb, first)
    mask[:, torch.arange(nqb), torch.arange(first, first + nqb)] = True
    idx, count = mask_to_index(mask.to(DEV), first_qb=first)
    out = torch.full_like(q, float("nan"))
    tiles = _attn_tiles(variant)
    kv = _paged(k, v, page, seed=lk)
    if tiles.kernel == "tma" and page % (tiles.bn or block) and lk > page:
        with pytest.raises(ValueError, match="must lie in one page"):
            block_sparse_attention_indexed(q, kv, idx, count, block_size=block, q_offset=off, out=out, tiles=tiles)
        return
    block_sparse_attention_indexed(q, kv, idx, count, block_size=block, q_offset=off, out=out, tiles=tiles)
    assert bool(torch.isfinite(out).all()), "output not fully written"
    qc, kc, vc = _cpu(q, k, v)
    want = ref_block_sparse_attention(qc, kc, vc, mask, block_size=block, q_offset=off)
    assert_close(out.cpu(), want, OUT_TOL[dtype], "block-sparse output")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_prefill_end_to_end_against_reference(dtype):
    lk, hq, hkv, d = (300, 4, 2, 64) if DEV == "cpu" else (2000, 8, 2, 128)
    q, k, v = _inputs(lk, lk, hq, hkv, d, dtype, seed=11)
    out = torch.full_like(q, float("nan"))
    got, mask = xattention_prefill(
        q, PagedKV.from_contiguous(k, v), block_size=128, stride=8, threshold=0.9, out=out
    )
    assert bool(torch.isfinite(got).all()), "output not fully written"
    qc, kc, vc = _cpu(q, k, v)
    from attention_backend.estimate import estimate_block_scores as torch_estimate

    scores = torch_estimate(qc.float(), kc.float(), block_size=128, stride=8)
    want_mask = ref_select_blocks(scores, 0.9)
    differ = int((mask.cpu() != want_mask).sum())
    # fp32 scores of two implementations: only blocks at the exact threshold may flip.
    assert differ <= max(1, want_mask.numel() // 1000), f"{differ} of {want_mask.numel()} mask blocks differ"
    want = ref_block_sparse_attention(qc, kc, vc, mask.cpu(), block_size=128)
    assert_close(got.cpu(), want, OUT_TOL[dtype], "prefill output under its own mask")
    assert bool(mask.any(-1).all()), "a query block kept nothing"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_paged_varlen_batch_with_chunk_and_tail(dtype):
    """One vLLM-like batch: a whole prompt, a chunk that attends to cached context (offset not a multiple
    of B) and a short tail, packed in one query tensor, K/V only in the paged cache."""
    d, hq, hkv, page = (64, 4, 2, 16) if DEV == "cpu" else (128, 8, 2, 16)
    specs = [(260, 0), (333, 201), (140, 137)] if DEV == "cpu" else [(1500, 0), (2100, 1333), (700, 699)]
    qs, kvs, seqs, start = [], [], [], 0
    for row, (lk, off) in enumerate(specs):
        q, k, v = _inputs(lk, lk - off, hq, hkv, d, dtype, seed=100 + row)
        qs.append(q)
        kvs.append((k, v))
        seqs.append(PrefillSeq(row=row, q_start=start, q_len=lk - off, k_len=lk))
        start += lk - off
    # One shared page pool for the batch: each sequence's pages at distinct places.
    pools = [_paged(k, v, page, seed=row) for row, (k, v) in enumerate(kvs)]
    key_cache = torch.cat([p.key_cache for p in pools])
    value_cache = torch.cat([p.value_cache for p in pools])
    width = max(p.block_table.numel() for p in pools)
    table = torch.zeros(len(pools), width, dtype=torch.int32, device=DEV)
    base = 0
    for row, p in enumerate(pools):
        table[row, : p.block_table.numel()] = p.block_table + base
        base += p.key_cache.shape[0]
    query = torch.cat(qs)
    out = torch.full_like(query, float("nan"))
    masks = paged_prefill(
        query, key_cache, value_cache, table, seqs, block_size=128, stride=8, threshold=0.9, scale=None, out=out
    )
    assert bool(torch.isfinite(out).all()), "output not fully written"
    for s, mask, (k, v) in zip(seqs, masks, kvs, strict=False):
        sl = slice(s.q_start, s.q_start + s.q_len)
        single, single_mask = xattention_prefill(
            query[sl], PagedKV.from_contiguous(k, v), block_size=128, stride=8, threshold=0.9,
            q_offset=s.k_len - s.q_len, attn_tiles=AttnTiles(),  # 16-row pages rule out the tma kernel above
        )
        assert_mask_equal(mask, single_mask, f"row {s.row} mask, paged vs contiguous")
        assert_close(out[sl].float(), single.float(), 1e-6, f"row {s.row} output, paged vs contiguous")
        qc, kc, vc = _cpu(query[sl], k, v)
        want = ref_block_sparse_attention(qc, kc, vc, mask.cpu(), block_size=128, q_offset=s.k_len - s.q_len)
        assert_close(out[sl].cpu(), want, OUT_TOL[dtype], f"row {s.row} output vs reference")


def test_chunked_prefill_equals_one_shot():
    """Chunks that start at multiples of B give the same mask rows and outputs as one shot."""
    dtype = torch.float16
    lk, hq, hkv, d = (400, 2, 1, 64) if DEV == "cpu" else (3000, 8, 2, 128)
    cuts = [0, 128, 384, lk] if DEV == "cpu" else [0, 1024, 1280, 2304, lk]
    q, k, v = _inputs(lk, lk, hq, hkv, d, dtype, seed=21)
    whole, whole_mask = xattention_prefill(
        q, PagedKV.from_contiguous(k, v), block_size=128, stride=8, threshold=0.9
    )
    for a, b in zip(cuts[:-1], cuts[1:], strict=False):
        kv = PagedKV.from_contiguous(k[:b], v[:b])
        part, part_mask = xattention_prefill(q[a:b], kv, block_size=128, stride=8, threshold=0.9, q_offset=a)
        rows = slice(a // 128, -(-b // 128))
        assert_mask_equal(part_mask, whole_mask[:, rows, : part_mask.shape[2]], f"chunk [{a}, {b}) mask")
        assert_close(part.float(), whole[a:b].float(), 1e-6, f"chunk [{a}, {b}) output")


def test_gqa_equals_repeated_kv():
    dtype = torch.float16
    lk, hq, hkv, d = (300, 4, 1, 64) if DEV == "cpu" else (1500, 8, 2, 128)
    q, k, v = _inputs(lk, lk, hq, hkv, d, dtype, seed=31)
    group = hq // hkv
    rk, rv = (t.repeat_interleave(group, 1).contiguous() for t in (k, v))
    a, ma = xattention_prefill(q, PagedKV.from_contiguous(k, v), block_size=128, stride=8, threshold=0.8)
    b, mb = xattention_prefill(q, PagedKV.from_contiguous(rk, rv), block_size=128, stride=8, threshold=0.8)
    assert_mask_equal(ma, mb, "GQA vs repeated-KV mask")
    assert_close(a.float(), b.float(), 1e-6, "GQA vs repeated-KV output")


def test_bad_input_raises_before_launch():
    q, k, v = _inputs(64, 64, 4, 2, 64, torch.float16, seed=0)
    kv = PagedKV.from_contiguous(k, v)
    with pytest.raises(ValueError, match="dtype"):
        estimate_block_scores(q.float(), PagedKV.from_contiguous(k.float(), v.float()), block_size=128, stride=8)
    with pytest.raises(ValueError, match="multiple of Hkv"):
        estimate_block_scores(q[:, :3], kv, block_size=128, stride=8)
    with pytest.raises(ValueError, match="block_size"):
        estimate_block_scores(q, kv, block_size=96, stride=8)
    with pytest.raises(ValueError, match="stride"):
        estimate_block_scores(q, kv, block_size=128, stride=3)
    with pytest.raises(ValueError, match="q_offset"):
        estimate_block_scores(q[:10], kv, block_size=128, stride=8, q_offset=0)
    with pytest.raises(ValueError, match="threshold"):
        select_blocks_indexed(torch.zeros(4, 1, 1, device=DEV), 1.5, first_qb=0)


@pytest.mark.skipif(DEV != "cuda", reason="the dispatch of the public API needs CUDA tensors")
def test_public_api_dispatches_cuda_tensors_to_the_kernels():
    """``attention_backend.xattention_prefill`` on CUDA tensors runs the kernels (no torch fallback): an
    unsupported kernel block size raises instead of silently taking the torch path."""
    from attention_backend import XAttentionConfig
    from attention_backend import xattention_prefill as public_prefill

    q, k, v = _inputs(700, 700, 8, 2, 128, torch.bfloat16, seed=41)
    out, mask = public_prefill(q, k, v, XAttentionConfig(block_size=128, stride=8, threshold=0.9))
    want, want_mask = xattention_prefill(q, PagedKV.from_contiguous(k, v), block_size=128, stride=8, threshold=0.9)
    assert_mask_equal(mask, want_mask, "public API mask vs kernel")
    assert torch.equal(out, want), "public API output differs from the kernel's"
    with pytest.raises(ValueError, match="block_size"):
        public_prefill(q, k, v, XAttentionConfig(block_size=32, stride=8, threshold=0.9))


def test_scale_argument_is_used():
    q, k, v = _inputs(200, 200, 2, 1, 64, torch.float16, seed=51)
    kv = PagedKV.from_contiguous(k, v)
    a = estimate_block_scores(q, kv, block_size=64, stride=8, scale=0.5 / math.sqrt(64))
    qc, kc = _cpu(q, k)
    want = ref_estimate_block_scores(qc, kc, block_size=64, stride=8, scale=0.5 / math.sqrt(64))
    assert_close(a.cpu(), want, SCORE_TOL[torch.float16], "scores with a custom scale")
    mask = causal_block_mask(2, 4, 4).to(DEV)
    idx, count = mask_to_index(mask)
    out = block_sparse_attention_indexed(q, kv, idx, count, block_size=64, scale=0.3)
    want_out = ref_dense_attention(qc, kc, v.cpu(), scale=0.3)
    assert_close(out.cpu(), want_out, OUT_TOL[torch.float16], "attention with a custom scale")


def test_default_attention_tiles_follow_the_documented_rule(monkeypatch):
    """``default_attn_tiles``: ``HOPPER_TILES`` (``HOPPER_TILES_SMALL_D`` at head dims <= 64) where the TMA
    kernel can run (page-aligned key tiles, or the whole context in one page), the pointer kernel elsewhere;
    explicit TMA tiles never fall back."""
    from attention_backend.kernels import sparse_attention as sa

    tma, small = AttnTiles(kernel="tma", num_stages=3), AttnTiles(kernel="tma", num_warps=4, num_stages=2)
    monkeypatch.setattr(sa, "HOPPER_TILES", tma)
    monkeypatch.setattr(sa, "HOPPER_TILES_SMALL_D", small)
    q128, k128, v128 = _inputs(300, 300, 2, 1, 128, torch.float16, seed=62)
    assert sa.default_attn_tiles(q128, _paged(k128, v128, 128, seed=1), 128) == tma
    q, k, v = _inputs(300, 300, 2, 1, 64, torch.float16, seed=61)
    assert sa.default_attn_tiles(q, _paged(k, v, 128, seed=1), 128) == small
    assert sa.default_attn_tiles(q, PagedKV.from_contiguous(k, v), 128) == small  # one page of 300 rows
    assert sa.default_attn_tiles(q, _paged(k, v, 16, seed=1), 128) == sa.POINTER_TILES
    assert sa.default_attn_tiles(q128, _paged(k128, v128, 16, seed=1), 128) == sa.POINTER_TILES
    mask = causal_block_mask(2, 3, 3).to(DEV)
    idx, count = mask_to_index(mask)
    with pytest.raises(ValueError, match="must lie in one page"):
        block_sparse_attention_indexed(q, _paged(k, v, 16, seed=1), idx, count, block_size=128, tiles=tma)
    with pytest.raises(ValueError, match="bn"):
        AttnTiles(bn=64)  # key-tile rows are a TMA option
    idx64, count64 = mask_to_index(causal_block_mask(2, 5, 5).to(DEV))
    with pytest.raises(ValueError, match="divide the block size"):
        block_sparse_attention_indexed(
            q, _paged(k, v, 128, seed=1), idx64, count64, block_size=64, tiles=AttnTiles(kernel="tma", bn=128)
        )


def test_row_block_counts_cover_every_row_length():
    from attention_backend.kernels.warmup import row_block_counts

    assert row_block_counts(8192, 131072, 128) == [64, 128, 256, 512, 1024]
    counts = row_block_counts(8192, 100_000, 128)
    for n in range(8192, 100_001, 997):  # every row's NKB (next power of two of its key blocks) is covered
        assert triton_next_pow2(-(-n // 128)) in counts
    with pytest.raises(ValueError, match="min_len <= max_len"):
        row_block_counts(9000, 8192, 128)


def triton_next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _kernel_caches() -> list[int]:
    """How many compiled variants each XAttention Triton kernel holds in this process."""
    from attention_backend.kernels import (
        estimate,
        page_tables,
        select,
        sparse_attention,
        sparse_attention_tma,
    )

    kernels = (estimate._xattn_lse_tma_kernel, estimate._xattn_lse_flat_kernel, estimate._xattn_block_score_kernel,
               select._xattn_select_kernel, sparse_attention._block_sparse_attn_kernel,
               sparse_attention_tma._block_sparse_attn_tma_kernel, page_tables._sparse_pages_kernel)  # fmt: skip
    return [sum(len(c[0]) for c in k.device_caches.values()) for k in kernels]


@pytest.mark.skipif(DEV != "cuda" or INTERPRET, reason="counts the kernels Triton compiled on a GPU")
def test_after_precompile_no_row_compiles_a_kernel():
    """``precompile`` at start-up leaves nothing to compile for rows of any length, offset and batch place
    (the TTFT run found 1-6 s compiles on the first request of each length: notes in bench/results/vllm_ttft)."""
    from attention_backend.kernels import paged_attend, paged_select, precompile

    hq, hkv, d, page, block, stride, max_len = 8, 2, 128, 16, 128, 16, 20_000
    n_pages = max_len // page + 8
    g = torch.Generator(device="cuda").manual_seed(5)
    cache = torch.randn(n_pages, page, hkv, 2 * d, device="cuda", dtype=torch.bfloat16, generator=g)
    key_cache, value_cache = cache.split(d, dim=-1)  # vLLM's FLASH_ATTN views (NHD)
    tau = torch.full((hq,), 0.9, device="cuda")
    precompile(torch.empty(1, hq, d, device="cuda", dtype=torch.bfloat16), key_cache, value_cache, block_size=block,
               stride=stride, threshold=tau, scale=d**-0.5, fp8=False, attend=True, min_len=8192, max_len=max_len,
               page_tables=True)  # fmt: skip
    from attention_backend.kernels.page_tables import sparse_pages_fused
    before = _kernel_caches()
    for q_len, k_len in [(8192, 8192), (1000, 9001), (4096, 16000), (8197, 8197), (300, 20000), (1024, 17000)]:
        table = torch.randperm(n_pages, device="cuda", generator=g)[: -(-k_len // page)].int()[None]
        seqs = [PrefillSeq(row=0, q_start=0, q_len=q_len, k_len=k_len)]
        query = torch.randn(q_len, hq, d, device="cuda", dtype=torch.bfloat16, generator=g)
        sels = paged_select(query, key_cache, value_cache, table, seqs, block_size=block, stride=stride,
                            threshold=tau, scale=d**-0.5)
        paged_attend(query, key_cache, value_cache, table, seqs, sels, block_size=block, scale=d**-0.5,
                     out=torch.empty_like(query))
        for descending in (False, True):  # an unaligned table row, in both query-block orders
            sparse_pages_fused(sels[0].idx, sels[0].count, table[0, 1:], q_len=q_len, k_len=k_len, block_size=block,
                               page_size=page, ratio=hkv, num_kv_heads=hkv, descending=descending)  # fmt: skip
        assert _kernel_caches() == before, f"a row of {q_len} / {k_len} tokens compiled a kernel"


def test_precompile_runs_on_a_small_cache():
    """The start-up path itself (any device the kernels run on): it returns the key-block sizes it compiled
    and refuses a cache too small for its probe row."""
    from attention_backend.kernels import precompile

    dtype = torch.float16
    hq, hkv, d, page = 2, 1, 64, 16
    cache = torch.randn(40, page, hkv, 2 * d, device=DEV, dtype=dtype)
    key_cache, value_cache = cache.split(d, dim=-1)
    query = torch.empty(1, hq, d, device=DEV, dtype=dtype)
    kw = dict(block_size=128, stride=8, threshold=0.9, scale=d**-0.5, fp8=False, attend=True)
    assert precompile(query, key_cache, value_cache, min_len=512, max_len=1100, **kw) == [4, 8, 16]
    assert precompile(query, key_cache, value_cache, min_len=512, max_len=1100, page_tables=True, **kw) == [4, 8, 16]
    with pytest.raises(ValueError, match="at least 17 pages"):
        precompile(query, key_cache[:10], value_cache[:10], min_len=512, max_len=1100, **kw)
