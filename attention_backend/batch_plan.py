"""Which requests of a vLLM batch take the XAttention prefill path (plain Python, no vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class RowPath(str, Enum):
    DECODE = "decode"  # one new token: vLLM's dense kernel
    DENSE_SHORT = "dense_short"  # prefill with a context shorter than min_sparse_len
    SPARSE = "sparse"  # long prefill whose forward holds the whole context: XAttention
    FALLBACK_CACHED = "fallback_cached"  # long prefill that attends to cached context: dense, counted


@dataclass(frozen=True)
class RequestRows:
    index: int
    start: int  # first token row of the request in the batch
    end: int
    seq_len: int  # context length including the new tokens
    path: RowPath


@dataclass(frozen=True)
class BatchPlan:
    requests: tuple[RequestRows, ...] = field(default_factory=tuple)

    def of(self, path: RowPath) -> list[RequestRows]:
        return [r for r in self.requests if r.path is path]

    @property
    def has_sparse(self) -> bool:
        return any(r.path is RowPath.SPARSE for r in self.requests)

    @property
    def all_sparse(self) -> bool:
        return bool(self.requests) and all(r.path is RowPath.SPARSE for r in self.requests)


def plan_batch(query_start_loc: list[int], seq_lens: list[int], min_sparse_len: int) -> BatchPlan:
    """Classify each request: ``query_start_loc`` [B+1] token offsets, ``seq_lens`` [B] context lengths.

    A request is SPARSE when it is a prefill (more than one new token), its context has at least
    ``min_sparse_len`` tokens, and the new tokens are the whole context (no cached prefix and no earlier
    chunk): only then does the forward's own key/value hold everything XAttention needs, because the CPU
    KV cache is packed per instruction set and is not read back here. Long prefills that attend to cached
    context are FALLBACK_CACHED (dense, counted and logged by the adapter).
    """
    if len(query_start_loc) != len(seq_lens) + 1:
        raise ValueError(
            f"query_start_loc: expected {len(seq_lens) + 1} entries (B+1), got {len(query_start_loc)}"
        )
    rows = []
    for i, seq_len in enumerate(seq_lens):
        start, end = query_start_loc[i], query_start_loc[i + 1]
        n_new = end - start
        if n_new <= 1:
            path = RowPath.DECODE
        elif seq_len < min_sparse_len:
            path = RowPath.DENSE_SHORT
        elif n_new == seq_len:
            path = RowPath.SPARSE
        else:
            path = RowPath.FALLBACK_CACHED
        rows.append(RequestRows(i, start, end, seq_len, path))
    return BatchPlan(tuple(rows))
