"""Fork-join over a few CUDA streams, for launches that are independent of each other (no host sync).

The XAttention paths that issue many small launches of one kind (the fa3 sparse kernel's per-head FA3 calls,
the library-GEMM estimate's (GEMM, epilogue) pairs) spread them round-robin over side streams, so one
launch's tail overlaps the next one's start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch


@functools.cache
def side_streams(n: int, device: torch.device) -> list[torch.cuda.Stream]:
    """``n`` streams of ``device``, made once per process and reused."""
    return [torch.cuda.Stream(device) for _ in range(n)]


def round_robin(calls: Iterable[Callable[[], object]], streams: int, device: torch.device) -> None:
    """Run ``calls`` in order, call ``i`` with side stream ``i % streams`` current. The side streams first wait
    for the current stream (so what it queued before, the calls' inputs, is ready), and it waits for all of them
    at the end, also when a call raises: nothing queued here outlives the caller's tensors unordered. A tensor a
    call allocates belongs to that call's stream (the caching allocator reuses it only there)."""
    main = torch.cuda.current_stream(device)
    pool = side_streams(streams, device)
    for st in pool:
        st.wait_stream(main)
    try:
        for i, call in enumerate(calls):
            with torch.cuda.stream(pool[i % streams]):
                call()
    finally:
        for st in pool:
            main.wait_stream(st)
