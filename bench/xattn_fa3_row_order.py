"""Does the order of a row's query blocks inside one FA3 call matter? (the random-mask gap of the fa3 sparse kernel)

The fa3 sparse kernel's per-head form (``attention_backend/vllm/fa3_sparse.py``) gives FA3 one call per query head
whose sequences are the row's query blocks in ascending order, so under a causal mask the heaviest sequences (the
last query blocks, the most kept key blocks) come last. On structured masks (a band: every query block keeps about
as many blocks) it reaches 90-96 % of FA3 per computed block at 128K on an H100; on random masks (kept blocks grow
with the query block) 83-87 % (``bench/results/xattn_curve/notes.md``). If FA3 schedules a call's tiles in sequence
order, the tail of each call is its heaviest tiles. This times the same per-head calls with the query blocks given
in ascending order (as the backend does) and in descending order (queries, outputs, page tables and key lengths
reversed by query block: a copy here, outside the timing), on 1 and 4 CUDA streams, and checks that both orders
give the same output. A descending order that is faster would be worth an adapter that passes ``seqused_q`` (vLLM's
``flash_attn_varlen_func`` does not; FA3's op does).

Needs vLLM's FA3 (the carried vLLM on the device); random bf16 q/k/v, 32 q / 8 KV heads, d 128, block 128, masks of
``xattn_curve.block_mask``. Writes ``<out>.json``, prints a table:

    python3 bench/xattn_fa3_row_order.py --out bench/results/xattn_curve/fa3_row_order
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import torch
from xattn_curve import block_mask
from xattn_speed import bench_ms

from attention_backend.block_pages import head_pages, sparse_pages
from attention_backend.kernels.select import mask_to_index
from attention_backend.kernels.streams import round_robin

BLOCK = 128


def per_head_calls(fa: Any, q: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor, pages: Any, out: torch.Tensor,
                   *, n_qb: int, descending: bool, streams: int, scale: float) -> None:  # fmt: skip
    """One FA3 call per query head over the row's ``n_qb`` query blocks (``pages``: ``block_pages.sparse_pages`` of
    the row, head-major); ``descending``: ``q`` / ``out`` hold the query blocks last first and the tables follow."""
    hq = q.shape[1]
    cu = pages.cu_seqlens_q[: n_qb + 1]  # every query block is whole (length % BLOCK == 0): the same offsets
    tables, useds = pages.block_table.view(hq, n_qb, -1), pages.seqused_k.view(hq, n_qb)
    if descending:  # copies made here, alive until every stream is joined: a copy made per call and dropped after
        # its launch is freed to the caching allocator of the current stream while the side stream has yet to read it
        tables, useds = tables.flip(1), useds.flip(1)

    def calls():
        for h in range(hq):
            table, used = tables[h], useds[h]
            yield functools.partial(
                fa, q[:, h : h + 1], k_pages, v_pages, max_seqlen_q=BLOCK + 1, cu_seqlens_q=cu,
                max_seqlen_k=pages.max_seqlen_k, seqused_k=used, softmax_scale=scale, causal=True,
                block_table=table, out=out[:, h : h + 1], fa_version=3, num_splits=1,
            )

    if streams > 1 and q.is_cuda:
        round_robin(calls(), streams, q.device)
    else:
        for call in calls():
            call()


def by_block(x: torch.Tensor, descending: bool) -> torch.Tensor:
    """``x [L, H, D]`` with its query blocks reversed (a copy) when ``descending``."""
    if not descending:
        return x
    return x.view(-1, BLOCK, *x.shape[1:]).flip(0).reshape(x.shape).contiguous()


def measure_point(fa: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str, density: float, gen: Any,
                  streams_list: list[int]) -> dict[str, Any]:  # fmt: skip
    length, hq, d = q.shape
    hkv = k.shape[1]
    n_qb = length // BLOCK
    mask = block_mask(kind, density, hq, n_qb, gen)
    idx, count = mask_to_index(mask)
    k_cache, v_cache = k.view(n_qb, BLOCK, hkv, d), v.view(n_qb, BLOCK, hkv, d)
    k_pages, ratio = head_pages(k_cache)
    v_pages, _ = head_pages(v_cache)
    page_table = torch.arange(n_qb, dtype=torch.int32, device=q.device)
    pages = sparse_pages(idx, count, page_table, q_len=length, k_len=length, block_size=BLOCK, page_size=BLOCK,
                         ratio=ratio, num_kv_heads=hkv, width=int(count.max()))  # fmt: skip
    point: dict[str, Any] = {"kind": kind, "target_density": density,
                             "density": float(count.sum()) / (hq * n_qb * (n_qb + 1) / 2)}  # fmt: skip
    outs = {}
    for descending in (False, True):
        qo = by_block(q, descending)
        out = torch.full_like(q, float("nan"))
        for n in streams_list:
            call = functools.partial(per_head_calls, fa, qo, k_pages, v_pages, pages, out, n_qb=n_qb,
                                     descending=descending, streams=n, scale=d**-0.5)  # fmt: skip
            point[f"{'desc' if descending else 'asc'}_s{n}_ms"] = bench_ms(call) if q.is_cuda else None
        call()
        outs[descending] = by_block(out, descending)  # back in ascending order
    point["max_abs_diff"] = float((outs[True].float() - outs[False].float()).abs().max())
    return point


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--densities", default="0.1,0.3")
    ap.add_argument("--kinds", default="random,structured")
    ap.add_argument("--streams", default="1,4")
    ap.add_argument("--out", type=Path, default=Path("bench/results/xattn_curve/fa3_row_order"))
    args = ap.parse_args()
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    hq, hkv, d = 32, 8, 128
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(args.length, h, d, device="cuda", dtype=torch.bfloat16, generator=gen) for h in (hq, hkv, hkv))
    streams = [int(x) for x in args.streams.split(",")]
    points = []
    for kind in args.kinds.split(","):
        for density in (float(x) for x in args.densities.split(",")):
            points.append(measure_point(flash_attn_varlen_func, q, k, v, kind, density, gen, streams))
            print(json.dumps(points[-1]), flush=True)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "length": args.length, "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(f"\n{res['device']}, {args.length} tokens, {hq} / {hkv} heads, d {d}: per-head FA3 calls, ms")
    print(f"{'mask':>10} {'density':>7} " + " ".join(f"{'asc s' + str(n):>8} {'desc s' + str(n):>8} {'desc/asc':>8}" for n in streams)
          + f" {'max diff':>8}")  # fmt: skip
    for p in points:
        cells = " ".join(f"{p[f'asc_s{n}_ms']:8.2f} {p[f'desc_s{n}_ms']:8.2f} {p[f'desc_s{n}_ms'] / p[f'asc_s{n}_ms']:8.3f}"
                         for n in streams)  # fmt: skip
        print(f"{p['kind']:>10} {p['density']:7.3f} {cells} {p['max_abs_diff']:8.1e}")


if __name__ == "__main__":
    main()
