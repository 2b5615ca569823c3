"""One engine step's XAttention plan (:class:`CudaStepPlan`, built by the CUDA adapter's metadata builder and
shared by every layer of the step) and the kept-block counts that stay on the GPU until the step's end
(:class:`DeviceCounts`). Part of the CUDA adapter (:mod:`attention_backend.vllm.cuda`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from vllm.v1.attention.backends.flash_attn import FlashAttentionMetadata

from attention_backend.break_even import causal_pairs
from attention_backend.layer_gate import LayerGate, length_bucket
from attention_backend.vllm.common import STATS

_FIELDS = FlashAttentionMetadata.__dataclass_fields__
HAS_CASCADE = "use_cascade" in _FIELDS  # vLLM <= 0.31
_PER_REQUEST = ("seq_lens", "block_table", "mm_prefix_range_tensor", "rswa_prefix_lens", "dcp_context_kv_lens")
"""Metadata tensors with one entry per request (indexed when a sub-batch is built), where present."""


@dataclass
class CudaStepPlan:
    """One engine step's plan, shared by every layer of the step (it rides on the step's metadata)."""

    meta: Any  # the step's FlashAttentionMetadata
    qsl: list[int]  # host copies: query_start_loc [B+1], seq_lens [B]
    seq_lens: list[int]
    candidates: list[Any]  # kernels.PrefillSeq rows that may run sparse
    always_dense: tuple[int, ...]  # request indices that run FA3 whatever the estimate
    small: int = 0  # long prefill rows under the minimum of work (among always_dense)
    counted: bool = False
    _subsets: dict[tuple[int, ...], tuple[torch.Tensor, Any]] = field(default_factory=dict)
    _rows: torch.Tensor | None = None  # the candidates' request indices on the device (without_keys)
    _limits: dict[tuple, torch.Tensor] = field(default_factory=dict)  # most_kept, per rule
    bucket: int = field(init=False)  # the longest candidate's context (layer_gate.length_bucket)
    work: float = field(init=False)  # causal (query, key) pairs of every row: what a path's time is divided by

    def __post_init__(self) -> None:
        self.bucket = length_bucket(max((s.k_len for s in self.candidates), default=1))
        self.work = sum(causal_pairs(self.qsl[r + 1] - self.qsl[r], k) for r, k in enumerate(self.seq_lens))

    def without_keys(self, emptied: torch.Tensor) -> Any:
        """The step's metadata with the key length of candidate ``i`` set to 0 where ``emptied[i]`` (a bool on
        the device): vLLM's FlashAttention then computes nothing for those rows (their outputs are written by
        the sparse kernel after it). No host sync; one op when the candidates are the whole batch in order."""
        meta = self.meta
        rows = [s.row for s in self.candidates]
        if rows == list(range(len(self.seq_lens))) and meta.seq_lens.shape[0] == len(rows):
            seq_lens = torch.where(emptied, 0, meta.seq_lens)
        else:
            if self._rows is None:
                self._rows = torch.tensor(rows, dtype=torch.long).to(meta.seq_lens.device, non_blocking=True)
            seq_lens = meta.seq_lens.index_put((self._rows,), torch.where(emptied, 0, meta.seq_lens[self._rows]))
        changes: dict[str, Any] = {"seq_lens": seq_lens, "scheduler_metadata": None, "max_num_splits": 0}
        if HAS_CASCADE:
            changes["use_cascade"] = False
        return dataclasses.replace(meta, **{k: v for k, v in changes.items() if k in _FIELDS})

    def most_kept(self, dense_above: float, causal: list[int], device: torch.device) -> torch.Tensor:
        """Per candidate, the most kept blocks that still run sparse (``_most_kept``), on the device; built once
        per step and rule (every layer of a step has the same rows)."""
        key = (dense_above, tuple(causal))
        if key not in self._limits:
            limits = [_most_kept(dense_above, c) for c in causal]
            self._limits[key] = torch.tensor(limits, dtype=torch.long).to(device, non_blocking=True)
        return self._limits[key]

    def dense_subset(self, requests: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        """(token rows on the device, FlashAttentionMetadata) for the sorted request indices ``requests``;
        built once per step and set of rows."""
        if requests not in self._subsets:
            self._subsets[requests] = self._build_subset(requests)
        return self._subsets[requests]

    def _build_subset(self, requests: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        meta, device = self.meta, self.meta.query_start_loc.device
        lens = [self.qsl[r + 1] - self.qsl[r] for r in requests]
        rows = torch.tensor(
            [t for r in requests for t in range(self.qsl[r], self.qsl[r + 1])], dtype=torch.long
        ).to(device, non_blocking=True)
        idx = torch.tensor(requests, dtype=torch.long).to(device, non_blocking=True)
        qsl = torch.tensor([0, *lens]).cumsum(0).to(meta.query_start_loc.dtype).to(device, non_blocking=True)
        changes: dict[str, Any] = {
            "num_actual_tokens": sum(lens),
            "max_query_len": max(lens),
            "query_start_loc": qsl,
            "max_seq_len": max(self.seq_lens[r] for r in requests),
            "slot_mapping": meta.slot_mapping[rows],
            "scheduler_metadata": None,  # FA3 then plans the split itself
            "max_num_splits": 0,
        }
        for name in _PER_REQUEST:
            value = getattr(meta, name, None)
            if name in _FIELDS and value is not None:
                changes[name] = value[idx]
        if HAS_CASCADE:
            changes["use_cascade"] = False
        return rows, dataclasses.replace(meta, **{k: v for k, v in changes.items() if k in _FIELDS})


@dataclass(frozen=True)
class _Pending:
    """One layer's counts still on the device (:class:`DeviceCounts`)."""

    layer: int
    kept: torch.Tensor  # kept blocks, summed over heads (one count, or one per row)
    causal: int  # causal blocks of those rows and heads
    sparse_rows: torch.Tensor | None  # per row decided on the device: sparse (None: decided on the host)
    rows: int  # rows decided on the device
    gate: LayerGate | None  # the layer's gate, told the estimate at the flush
    bucket: int  # the step's length bucket, where the gate keeps the estimate


class DeviceCounts:
    """Kept-block counts still on the GPU, per layer: added without a host sync, read into ``STATS`` with
    one sync (``flush``) at the end of a step. One per process, like ``STATS``."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self.last_layer = -1  # the highest XAttention layer index seen: where a step ends

    def add(
        self,
        layer: int,
        kept: torch.Tensor,
        causal: int,
        *,
        sparse_rows: torch.Tensor | None = None,
        rows: int = 0,
        gate: LayerGate | None = None,
        bucket: int = 0,
    ) -> None:
        """One layer's kept blocks (a count, or one per row: summed at the flush); with ``sparse_rows`` (a bool
        per row decided on the device, ``rows`` of them) also its decisions, counted at the flush, where
        ``gate`` sees the layer's estimate."""
        self._pending.append(_Pending(layer, kept, causal, sparse_rows, rows, gate, bucket))

    def flush(self) -> None:
        if not self._pending:
            return
        parts = [torch.cat([p.kept.reshape(-1) for p in self._pending]).long()]
        decided = [p.sparse_rows.reshape(-1) for p in self._pending if p.sparse_rows is not None]
        if decided:
            parts.append(torch.cat(decided).long())
        values = torch.cat(parts).tolist()  # the one host sync
        at = 0
        kept = []
        for p in self._pending:
            kept.append(sum(values[at : at + p.kept.numel()]))
            at += p.kept.numel()
        for p, n in zip(self._pending, kept, strict=True):
            sparse = 0
            if p.sparse_rows is not None:
                sparse = sum(values[at : at + p.sparse_rows.numel()])
                at += p.sparse_rows.numel()
            STATS.kept_blocks += int(n)
            STATS.causal_blocks += p.causal
            STATS.add_layer(p.layer, int(n), p.causal)
            STATS.sparse_row_layers += int(sparse)
            STATS.dense_row_layers += p.rows - int(sparse)
            if p.gate is not None:
                p.gate.observe(int(n), p.causal, p.bucket)
        self._pending.clear()


DEVICE_COUNTS = DeviceCounts()


def _most_kept(dense_above: float, causal: int) -> int:
    """The most kept blocks of ``causal`` that still run sparse: the largest n with n / causal <= dense_above
    (the host's rule, in integers, so a device-side comparison decides the same)."""
    n = math.floor(dense_above * causal)
    while n / causal > dense_above:
        n -= 1
    while (n + 1) / causal <= dense_above:
        n += 1
    return n
