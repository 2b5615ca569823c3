"""vLLM's FLASH_ATTN backend (FlashAttention 3 on Hopper) with XAttention for long prefills.

The metadata builder plans once per engine step (:class:`CudaStepPlan`, attached to the step's metadata,
built from vLLM's host copies of the batch layout): which rows are XAttention candidates (prefill rows,
>= 2 new tokens, context >= ``min_sparse_len``; K/V are read from the paged cache, so chunked prefill and
prefix hits are included) and which always run dense (decodes, short prefills). The impl runs per layer:

1. a probe: estimate + select only the last ``probe_blocks`` query blocks of each long candidate row
   (one host sync for the kept block counts); a row above the break-even density measured on this card
   (``attention_backend.break_even``, or ``dense_above`` from the config) runs dense right away. The probe
   is skipped in a layer whose latest estimated density is under half the break-even: it
   would only add a sync there, the full estimate below still decides. A layer whose latest estimate is
   far above the break-even runs dense with no estimate, re-estimated every few calls
   (:class:`attention_backend.layer_gate.LayerGate`). All of this is kept per context length (half octaves),
   and each layer also times its attention both ways on the GPU (dense with no estimate, and XAttention: CUDA
   events read later, :class:`attention_backend.path_clock.PathClock`): once both are timed at a length it runs
   the cheaper there and re-times the other every few calls (``time_paths``), so a layer where estimating
   does not pay runs dense;
2. estimate + select the other candidates in full (Triton, ``kernels.paged_select``; one host sync);
   a row whose estimated density is above the break-even runs dense. With ``dense_above >= 1`` (every
   row sparse) there is nothing to decide and no sync: the kept counts stay on the device
   (:class:`DeviceCounts`) and reach the counters once per step. In a layer whose latest estimate is well
   under the break-even (``LayerGate.on_device``) the rows are **decided on the device** instead, with no
   probe and no sync: FlashAttention runs on the whole batch with the key lengths of the rows that came
   out sparse set to 0 (it computes nothing for them), the sparse kernel runs with the kept counts of the
   rows that came out dense set to 0, and each row takes its output from the kernel its own estimate
   chose (``torch.where``); the decisions reach the counters once per step;
3. vLLM's own FlashAttention runs once, on the dense rows only (the whole batch when every row is
   dense: no copy), through a sub-metadata built for that set of rows (cached in the step plan);
4. the sparse rows run over their selected blocks: on our Triton kernel (``kernels.paged_attend``, the
   default) or on vLLM's FlashAttention 3 through per-block page tables (``attention_backend.vllm.fa3_sparse``,
   where vLLM's KV block size divides the XAttention block); ``sparse_kernel`` in the config picks.

The step plan and the counts kept on the device live in :mod:`attention_backend.vllm.cuda_step`, the start-up rules
(break-even, minimum of work, timed paths, ``auto``, what stops at start-up) in
:mod:`attention_backend.vllm.cuda_startup`. Decisions are counted in the ``attention.stats`` marker (written once per step, at the step's last
XAttention layer); the rule is logged once per process. Version
differences handled here: ``use_cascade`` exists up to vLLM 0.31; ``seq_lens_cpu_upper_bound`` is used
where vLLM has it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import torch
from vllm.model_executor.models.utils import extract_layer_index
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.flash_attn import (
    FlashAttentionBackend,
    FlashAttentionImpl,
    FlashAttentionMetadataBuilder,
)
from vllm.v1.kv_cache_interface import ChunkedLocalAttentionSpec, SlidingWindowSpec

from attention_backend.block_pages import pages_unsupported
from attention_backend.break_even import causal_attention_flops
from attention_backend.layer_gate import DENSE, LayerGate, bucket_tokens
from attention_backend.path_clock import PathClock
from attention_backend.vllm.common import (
    STATS,
    config_from_vllm,
    init_xattn,
    max_model_len,
    publish_stats,
    warn_once,
)
from attention_backend.vllm.cuda_startup import (
    XAttentionStartupError,
    auto_sparse_kernel,
    check_kernel_support,
    check_sparse_kernel,
    resolve_dense_above,
    resolve_min_sparse_flops,
    resolve_time_paths,
)
from attention_backend.vllm.cuda_step import DEVICE_COUNTS, HAS_CASCADE, CudaStepPlan

logger = logging.getLogger("attention_backend.vllm")


DEVICE_TABLE_BYTES = 64 << 20
"""The most int32 page-table entries (in bytes) the fa3 kernel may build for one layer when its rows are decided on
the device (``XAttentionCudaImpl._full_tables_fit``)."""
_PRECOMPILED: set[tuple] = set()  # (layer shapes, page, settings) whose kernels this process compiled


def plans_group(kv_cache_spec: Any) -> bool:
    """Whether a KV-cache group may hold layers XAttention serves. vLLM gives sliding-window and chunked-local
    layers groups of their own spec (Gemma-3: 15 of its 18 layers), whose impls always run FA3: their builder
    plans nothing. (With vLLM's hybrid allocator off, local layers share the full layers' FullAttentionSpec and
    that group is planned; its local layers ignore the plan.)"""
    return not isinstance(kv_cache_spec, SlidingWindowSpec | ChunkedLocalAttentionSpec)


class XAttentionCudaMetadataBuilder(FlashAttentionMetadataBuilder):
    """Adds ``xattn_step`` (a :class:`CudaStepPlan`, or None) to every metadata, from vLLM's CPU copies of the
    batch layout, so planning never waits for the GPU. ``seq_lens`` comes from ``seq_lens_cpu_upper_bound``
    where vLLM has it (exact for prefill rows, the only ones planned), else from ``seq_lens`` (one copy to
    the host; vLLM <= 0.29 did the same in ``seq_lens_cpu``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._xattn = config_from_vllm(self.vllm_config)
        self._heads = self.vllm_config.model_config.get_num_attention_heads(self.vllm_config.parallel_config)
        self._head_dim = self.kv_cache_spec.head_size
        self._min_flops = 0.0
        self._plans = self._xattn.enabled and plans_group(self.kv_cache_spec)
        if self._xattn.enabled:
            check_sparse_kernel(self._xattn, self.kv_cache_spec.block_size)
        if self._plans:
            self._min_flops, rule = resolve_min_sparse_flops(self._xattn, torch.cuda.get_device_name())
            warn_once("min_work", "xattn: prefill rows whose dense attention per layer is under %s run FA3", rule)

    def build(self, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        meta = super().build(common_prefix_len, common_attn_metadata, fast_build)
        meta.xattn_step = None
        cfg = self._xattn
        if (
            not self._plans
            or (HAS_CASCADE and meta.use_cascade)
            or meta.causal is not True
            or meta.max_query_len < 2
            or meta.max_seq_len < cfg.min_sparse_len
        ):
            return meta
        from attention_backend.kernels import PrefillSeq  # Triton: CUDA hosts only

        n = common_attn_metadata.num_reqs
        bound = getattr(common_attn_metadata, "seq_lens_cpu_upper_bound", None)
        seq_lens = (bound if bound is not None else common_attn_metadata.seq_lens.cpu())[:n].tolist()
        qsl = common_attn_metadata.query_start_loc_cpu[: n + 1].tolist()
        candidates, dense, small = [], [], 0
        for i in range(n):
            q_len = qsl[i + 1] - qsl[i]
            if q_len < 2 or seq_lens[i] < cfg.min_sparse_len:
                dense.append(i)
            elif causal_attention_flops(q_len, seq_lens[i], self._heads, self._head_dim) < self._min_flops:
                dense.append(i)
                small += 1
            else:
                candidates.append(PrefillSeq(row=i, q_start=qsl[i], q_len=q_len, k_len=seq_lens[i]))
        if candidates:
            meta.xattn_step = CudaStepPlan(meta, qsl, seq_lens, candidates, tuple(dense), small)
        elif small:
            STATS.dense_small_prefills += small  # the whole step runs FA3 untouched: counted here
        return meta


class XAttentionCudaImpl(FlashAttentionImpl):
    """FlashAttention impl whose long prefill rows run XAttention when the estimate says it pays off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from attention_backend import kernels  # Triton: CUDA hosts only

        self._kernels = kernels
        self._tau: torch.Tensor | None = None
        self._layer_index: int | None = None
        self._sparse_kind: str | None = None  # "fa3" or "triton", fixed at the first sparse call
        self._precompiled = False  # kernels.warmup ran for this layer's shapes (at vLLM's warm-up)
        self._clock = PathClock()  # times both paths of a layer (LayerGate.path)
        init_xattn(
            self,
            {
                "attn_type": self.attn_type != AttentionType.DECODER,
                "sliding_window": self.sliding_window not in (None, (-1, -1)),
                "alibi": self.alibi_slopes is not None,
                "softcap": bool(self.logits_soft_cap),
                "sinks": getattr(self, "sinks", None) is not None,
                "kv_cache_dtype": self.kv_cache_dtype != "auto",
            },
            fp8_estimation=torch.cuda.get_device_capability() >= (9, 0),  # the TMA estimation kernel's
        )
        self.dense_above, self.dense_above_source = 1.0, "sparse disabled"
        self.time_paths_source = "sparse disabled"  # why the gate times its paths or not
        self._gate = LayerGate(self.dense_above)  # this layer's: one impl per attention layer
        self._max_len = max_model_len() if self.sparse_enabled else 0
        if self.sparse_enabled:
            check_kernel_support(self.head_size, self.xattn.block_size, self.xattn.stride)
            # "auto" is decided at the first call (the page size); until then its break-even is that of the
            # kernel it takes with a dividing page size
            kind = self.xattn.sparse_kernel
            if kind == "auto":
                kind = auto_sparse_kernel(torch.cuda.get_device_name(), self.head_size, self.xattn.block_size, self.xattn.block_size)[0]
            self._set_dense_above(kind)

    def _set_dense_above(self, kernel: str) -> None:
        self.dense_above, self.dense_above_source = resolve_dense_above(
            self.xattn, torch.cuda.get_device_name(), self.head_size, kernel
        )
        time_paths, self.time_paths_source = resolve_time_paths(self.xattn, kernel)
        self._gate = LayerGate(
            self.dense_above, device_below=self.xattn.device_decide_below, dense_margin=self.xattn.dense_margin,
            time_paths=time_paths,
            layer=self._layer_index or 0,
        )

    def _threshold(self, layer: Any, device: torch.device) -> torch.Tensor:
        if self._tau is None:
            index = extract_layer_index(layer.layer_name) if self.xattn.has_table else None
            taus = self.xattn.thresholds(self.num_heads, index)
            self._tau = torch.tensor(taus, dtype=torch.float32, device=device)
        return self._tau

    def forward(
        self,
        layer: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: Any,
        output: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if (
            self.sparse_enabled
            and not self._precompiled
            and kv_cache.numel()
            and not torch.cuda.is_current_stream_capturing()
        ):
            self._precompile(query, kv_cache)  # the first call with a cache: vLLM's warm-up, before any request
        step: CudaStepPlan | None = getattr(attn_metadata, "xattn_step", None)
        if not self.sparse_enabled or step is None or torch.cuda.is_current_stream_capturing():
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        block = self.xattn.block_size
        # FLASH_ATTN cache (0.26 - 0.33, pinned in requirements): [pages, Hkv, page, 2D] -> K, V views
        # [pages, page, Hkv, D].
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        if self._sparse_kernel(int(key_cache.shape[1])) == "triton" and key_cache.shape[1] % block:
            warn_once(
                "page_size",
                "xattn: vLLM's KV block size %d is not a multiple of the XAttention block %d, so the sparse "
                "kernel looks up every key row in the block table (slower, bench/results/vllm_ttft/notes.md); "
                "start vLLM with --block-size %d",
                key_cache.shape[1], block, block,
            )
        self._layer(layer)
        timings = self._clock.done()
        for (bucket, path, work, idle_start), ms in timings:
            self._gate.record(bucket, path, ms, work)
            STATS.add_span(self._layer_index, bucket_tokens(bucket), path, idle_start)
        if timings:
            STATS.path_costs[self._layer_index] = self._gate.costs()
        path, why = self._gate.path(step.bucket)
        self._gate.started(step.bucket, path)
        span = self._clock.start() if self._gate.time_paths and self._gate.deciding else None
        idle_start = span is not None and self._clock.idle(span)
        if path == DENSE:  # no estimate: the layer's history says dense costs less here
            if why == "density":
                STATS.history_dense_row_layers += len(step.candidates)
            else:
                STATS.timed_dense_row_layers += len(step.candidates)
            super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
            n_dense, on_device = len(step.candidates), 0
        else:
            n_dense, on_device = self._forward_xattn(layer, step, key_cache, value_cache, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)  # fmt: skip
        if span is not None:
            self._clock.stop(span, (step.bucket, path, step.work, idle_start))
        self._count_step(step, n_dense, on_device=on_device)
        return output

    def _forward_xattn(
        self, layer: Any, step: CudaStepPlan, key_cache: torch.Tensor, value_cache: torch.Tensor, query: torch.Tensor,
        key: torch.Tensor, value: torch.Tensor, kv_cache: torch.Tensor, attn_metadata: Any, output: torch.Tensor,
        *args: Any, **kwargs: Any,
    ) -> tuple[int, int]:
        """Estimate, decide per row and attend; returns (rows run dense, rows decided on the device)."""
        block, bucket = self.xattn.block_size, step.bucket
        q = query.view(query.shape[0], self.num_heads, self.head_size)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        kv = (key_cache, value_cache, attn_metadata.block_table)
        tau = self._threshold(layer, query.device)
        if self._gate.on_device(bucket) and self._full_tables_fit(step, int(key_cache.shape[1])):
            # well under the break-even lately: decide on the device, no sync
            self._forward_decided_on_device(layer, q, kv, step, tau, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)  # fmt: skip
            return 0, len(step.candidates)
        # 1. probe: estimate only the last query blocks of long rows; a row already above the break-even
        # there runs dense without the full estimate (its cost is then ~probe / query blocks of it).
        probe_len = self.xattn.probe_blocks * block if self._gate.probe(bucket) else 0
        cands = step.candidates
        probed = [s for s in cands if probe_len and s.q_len > 2 * probe_len]
        dense_rows: list[int] = []
        if probed:
            tails = [dataclasses.replace(s, q_start=s.q_start + s.q_len - probe_len, q_len=probe_len) for s in probed]
            decided = self._decide(layer, q, kv, tails, tau, bucket)[1]
            dense_rows = [s.row for s, sp in zip(probed, decided, strict=True) if not sp]
            cands = [s for s in cands if s.row not in dense_rows]
        # 2. full estimate + selection of the remaining candidates; the density decides per row.
        sels, sparse, widths = self._decide(layer, q, kv, cands, tau, bucket) if cands else ([], [], None)
        dense_rows += [s.row for s, sp in zip(cands, sparse, strict=True) if not sp]
        # 3. vLLM's FlashAttention on the dense rows only (the whole batch: no copy).
        dense_reqs = tuple(sorted((*step.always_dense, *dense_rows)))
        if len(dense_reqs) == len(step.seq_lens):
            super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        elif dense_reqs:
            rows, sub = step.dense_subset(dense_reqs)
            sub_out = torch.empty((rows.numel(), self.num_heads, self.head_size), dtype=out.dtype, device=out.device)
            super().forward(layer, q[rows], key, value, kv_cache, sub, sub_out, *args, **kwargs)
            out[rows] = sub_out
        # 4. the sparse kernel on the sparse rows.
        chosen = [i for i, sp in enumerate(sparse) if sp]
        if chosen:
            seqs, chosen_sels = [cands[i] for i in chosen], [sels[i] for i in chosen]
            if self._sparse_kind == "fa3":
                self._fa3_attend(
                    q, *kv, seqs, chosen_sels, block_size=block, scale=self.scale, out=out,
                    widths=None if widths is None else [widths[i] for i in chosen],
                    fa_version=self.vllm_flash_attn_version,
                )
            else:
                self._kernels.paged_attend(q, *kv, seqs, chosen_sels, block_size=block, scale=self.scale, out=out)
        return len(step.candidates) - len(chosen), 0

    def _full_tables_fit(self, step: CudaStepPlan, page_size: int) -> bool:
        """Deciding on the device gives the fa3 kernel's page tables every key block of a row (no host-read
        width to bound them): allowed while they stay under ``DEVICE_TABLE_BYTES`` (with 128-token pages they
        do up to long contexts; with 16-token pages a 16K chunk of a 32-head model at 128K would need 128 MiB
        per layer), else the host decides."""
        if self._sparse_kind != "fa3":
            return True
        block = self.xattn.block_size
        entries = 0
        for s in step.candidates:  # (query blocks) x (key blocks) of each row
            n_kb = -(-s.k_len // block)
            entries += n_kb * (n_kb - (s.k_len - s.q_len) // block)
        return self.num_heads * entries * (block // page_size) * 4 <= DEVICE_TABLE_BYTES

    def _forward_decided_on_device(
        self, layer: Any, q: torch.Tensor, kv: tuple, step: CudaStepPlan, tau: torch.Tensor, *dense_args: Any, **kwargs: Any
    ) -> None:
        """Every candidate estimated; each row's dense-or-sparse decision stays a bool on the device (same rule
        as the host's: kept / causal <= dense_above); FlashAttention runs first with the sparse rows' keys
        emptied, then the sparse kernel with the dense rows' counts emptied, each row keeping its own kernel's
        output. ``dense_args``: FlashAttentionImpl.forward's arguments after ``layer``."""
        k, block, seqs = self._kernels, self.xattn.block_size, step.candidates
        sels = k.paged_select(
            q, *kv, seqs, block_size=block, stride=self.xattn.stride, threshold=tau, scale=self.scale,
            fp8=self.xattn.estimate_fp8,
        )
        causal = [self.num_heads * k.causal_blocks(s, block) for s in seqs]
        counts = [sel.count.sum() for sel in sels]
        kept = torch.stack(counts) if len(counts) > 1 else counts[0].view(1)
        sparse = kept <= step.most_kept(self.dense_above, causal, kept.device)  # [rows] bool, on the device
        DEVICE_COUNTS.add(self._layer(layer), kept, sum(causal), sparse_rows=sparse, rows=len(seqs), gate=self._gate,
                          bucket=step.bucket)  # fmt: skip
        query, key, value, kv_cache, _step_meta, output, *rest = dense_args
        super().forward(layer, query, key, value, kv_cache, step.without_keys(sparse), output, *rest, **kwargs)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        keep = list(sparse.unbind()) if len(seqs) > 1 else [sparse[0]]
        emptied = [dataclasses.replace(sel, count=torch.where(sp, sel.count, 0)) for sel, sp in zip(sels, keep, strict=True)]  # fmt: skip
        if self._sparse_kind == "fa3":
            self._fa3_attend(
                q, *kv, seqs, emptied, block_size=block, scale=self.scale, out=out,
                fa_version=self.vllm_flash_attn_version, keep=keep,
            )
            return
        tmp = torch.empty_like(out)
        self._kernels.paged_attend(q, *kv, seqs, emptied, block_size=block, scale=self.scale, out=tmp)
        for s, sp in zip(seqs, keep, strict=True):
            rows = slice(s.q_start, s.q_start + s.q_len)
            out[rows] = torch.where(sp, tmp[rows], out[rows])

    def _precompile(self, query: torch.Tensor, kv_cache: torch.Tensor) -> None:
        """Compile every XAttention kernel for this layer's shapes and rows up to ``max_model_len`` (once per
        process and shape: Triton caches them), so no request pays a compile (``kernels.warmup``)."""
        self._precompiled = True
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        page = int(key_cache.shape[1])
        kind = self._sparse_kernel(page)
        key = (self.num_heads, self.num_kv_heads, self.head_size, query.dtype, tuple(kv_cache.stride()[1:]), page,
               self.xattn.block_size, self.xattn.stride, self.xattn.estimate_fp8, kind, self._max_len)
        if key in _PRECOMPILED or self._max_len < self.xattn.min_sparse_len:
            return
        _PRECOMPILED.add(key)
        t0 = time.perf_counter()
        counts = self._kernels.precompile(
            query.view(-1, self.num_heads, self.head_size), key_cache, value_cache,
            block_size=self.xattn.block_size, stride=self.xattn.stride, threshold=0.9, scale=self.scale,
            fp8=self.xattn.estimate_fp8, attend=kind == "triton", min_len=self.xattn.min_sparse_len,
            max_len=self._max_len, page_tables=kind == "fa3",
        )
        warn_once("precompile", "xattn: kernels compiled for rows of %d-%d tokens (%d key-block sizes) in %.1f s",
                  self.xattn.min_sparse_len, self._max_len, len(counts), time.perf_counter() - t0)

    def _layer(self, layer: Any) -> int:
        if self._layer_index is None:
            self._layer_index = extract_layer_index(layer.layer_name)
            self._gate.layer = self._layer_index  # staggers its re-timing calls
            DEVICE_COUNTS.last_layer = max(DEVICE_COUNTS.last_layer, self._layer_index)
        return self._layer_index

    def _sparse_kernel(self, page_size: int) -> str:
        """``fa3`` or ``triton`` for this layer (fixed at the first call; ``auto`` says its choice once)."""
        if self._sparse_kind is None:
            reason = pages_unsupported(page_size, self.xattn.block_size)
            kind = self.xattn.sparse_kernel
            if kind == "auto":
                kind, why = auto_sparse_kernel(torch.cuda.get_device_name(), self.head_size, page_size, self.xattn.block_size)
                warn_once("sparse_kernel", "xattn: sparse_kernel auto: sparse blocks run on the %s kernel: %s", kind, why)
                self._set_dense_above(kind)
            elif kind == "fa3" and reason:  # the builder refused this at start-up already
                raise XAttentionStartupError(f"--xattn-sparse-kernel fa3: {reason}")
            if kind == "fa3":
                from attention_backend.vllm.fa3_sparse import fa3_attend  # CUDA builds of vLLM only

                self._fa3_attend = fa3_attend
            self._sparse_kind = kind
        return self._sparse_kind

    def _decide(
        self, layer: Any, q: torch.Tensor, kv: tuple, seqs: list[Any], tau: torch.Tensor, bucket: int
    ) -> tuple[list[Any], list[bool], list[int] | None]:
        """Estimate + select ``seqs``; one host sync for the kept counts (and each row's most kept blocks of any
        head and query block: ``widths``, None without the sync); sparse = density <= dense_above."""
        k, block = self._kernels, self.xattn.block_size
        sels = k.paged_select(
            q, *kv, seqs, block_size=block, stride=self.xattn.stride, threshold=tau, scale=self.scale,
            fp8=self.xattn.estimate_fp8,
        )
        causal = [self.num_heads * k.causal_blocks(s, block) for s in seqs]
        if self.dense_above >= 1.0:  # every row runs sparse: no decision, no sync
            DEVICE_COUNTS.add(self._layer(layer), torch.stack([s.count.sum() for s in sels]).sum(), sum(causal))
            return sels, [True] * len(seqs), None
        both = torch.stack([torch.stack([s.count.sum(), s.count.max().long()]) for s in sels]).tolist()  # the sync
        kept, widths = [b[0] for b in both], [b[1] for b in both]
        kept_sum, causal_sum = sum(kept), sum(causal)
        STATS.kept_blocks += kept_sum
        STATS.causal_blocks += causal_sum
        STATS.add_layer(self._layer(layer), kept_sum, causal_sum)
        self._gate.observe(kept_sum, causal_sum, bucket)
        return sels, [a / b <= self.dense_above for a, b in zip(kept, causal, strict=True)], widths

    def _count_step(self, step: CudaStepPlan, n_dense: int, on_device: int = 0) -> None:
        """Per-layer decisions into the process counters (``on_device`` of them are counted at the step's
        flush); per-step counts once; the rule logged once."""
        n_sparse = len(step.candidates) - n_dense - on_device
        STATS.sparse_row_layers += n_sparse
        STATS.dense_row_layers += n_dense
        if self._layer_index == DEVICE_COUNTS.last_layer:  # the step's last XAttention layer
            DEVICE_COUNTS.flush()
            publish_stats({"dense_above": self.dense_above})
        if step.counted:
            return
        step.counted = True
        STATS.sparse_prefills += len(step.candidates)
        STATS.sparse_tokens += sum(s.q_len for s in step.candidates)
        STATS.dense_small_prefills += step.small
        STATS.dense_short_prefills += (
            sum(1 for r in step.always_dense if step.qsl[r + 1] - step.qsl[r] >= 2) - step.small
        )
        warn_once(
            "rule",
            "xattn: prefill rows with context >= %d tokens are estimated per layer (first their last %d query "
            "blocks); a row whose estimated density is above %.3f (%s) runs vLLM's FlashAttention instead of "
            "the sparse kernel; per context length (half octaves), a layer whose latest estimate is >= %.1fx that "
            "runs it with no estimate, re-estimated every %d calls, and one under %.1fx decides its rows on the "
            "device (no host sync); %s; sparse rows run on %s; counts in the attention.stats marker "
            "(sparse_row_layers / dense_row_layers / history_dense_row_layers / timed_dense_row_layers, path_costs)",
            self.xattn.min_sparse_len, self.xattn.probe_blocks, self.dense_above, self.dense_above_source,
            self._gate.dense_margin, self._gate.reprobe_every, self._gate.device_below,
            f"each layer times dense (no estimate) and XAttention per context length on the GPU and runs the cheaper, "
            f"re-timing the other every {self._gate.retime_every} calls ({self.time_paths_source})"
            if self._gate.time_paths else f"paths not timed ({self.time_paths_source})",
            "vLLM's FlashAttention 3 over per-block page tables" if self._sparse_kind == "fa3" else "the Triton kernel",
        )


class XAttentionCudaBackend(FlashAttentionBackend):
    """vLLM's FLASH_ATTN backend with our builder and impl; ``get_name()`` stays ``FLASH_ATTN``."""

    @staticmethod
    def get_impl_cls() -> type[XAttentionCudaImpl]:
        return XAttentionCudaImpl

    @staticmethod
    def get_builder_cls() -> type[XAttentionCudaMetadataBuilder]:
        return XAttentionCudaMetadataBuilder
