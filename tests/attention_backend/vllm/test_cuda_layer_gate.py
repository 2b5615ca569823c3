"""The CUDA impl's per-layer path on any host, with a fake kernels module and vLLM's FlashAttention replaced
by a recorder: a layer whose estimate is far above the break-even stops being estimated (FA3 runs alone) and
is re-estimated on every ``reprobe_every``-th call; one under the margin is estimated on every call."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

import torch  # noqa: E402

from attention_backend.config import XAttentionConfig  # noqa: E402
from attention_backend.layer_gate import LayerGate, length_bucket  # noqa: E402
from attention_backend.vllm import cuda, cuda_step  # noqa: E402
from attention_backend.vllm.common import STATS  # noqa: E402

HEADS, D, BLOCK = 4, 64, 128
BUCKET = length_bucket(4096)  # every row here has 4,096 tokens of context


class FakeKernels:
    """paged_select keeps ``kept_per_head`` of the ``causal`` blocks of every head; paged_attend records."""

    def __init__(self, kept_per_head: int, causal: int = 25) -> None:
        self.kept, self.causal = kept_per_head, causal
        self.selects = 0
        self.attends = 0
        self.precompiled: list[dict] = []

    def precompile(self, query, key_cache, value_cache, **kw):
        self.precompiled.append({"q": tuple(query.shape), "page": key_cache.shape[1], **kw})
        return [8, 16]

    def paged_select(self, q, key_cache, value_cache, block_table, seqs, **kw):
        self.selects += 1
        return [SimpleNamespace(count=torch.full((HEADS, 2), self.kept // 2)) for _ in seqs]

    def causal_blocks(self, seq, block):
        return self.causal

    def paged_attend(self, *args, **kw):
        self.attends += 1


class FakeClock:
    """PathClock without CUDA: spans finish at once; their time is ``ms[path]`` (None: the span never
    finishes, as on a GPU still busy with it)."""

    def __init__(self, ms: dict[str, float | None] | None = None) -> None:
        self.ms = ms or {}
        self.spans: list[tuple] = []
        self._done: list[tuple] = []

    def start(self):
        return object()

    @staticmethod
    def idle(span) -> bool:
        return True  # spans here begin on an idle "GPU"

    def stop(self, span, key):
        self.spans.append(key)
        if self.ms.get(key[1]) is not None:
            self._done.append((key, self.ms[key[1]]))

    def done(self):
        out, self._done = self._done, []
        return out


def _impl(
    monkeypatch, kernels: FakeKernels, dense_above: float, layer: int, device_below: float = 0.0,
    clock: FakeClock | None = None, dense_margin: float = XAttentionConfig.dense_margin,
):
    """The impl of one layer; ``device_below`` 0 (the host decides every row) unless a test says otherwise;
    paths timed only with a ``clock`` (else the density rules alone decide)."""
    impl = object.__new__(cuda.XAttentionCudaImpl)
    impl.sparse_enabled = True
    impl.xattn = XAttentionConfig(threshold=0.9, stride=16, min_sparse_len=1024)
    impl.num_heads, impl.num_kv_heads, impl.head_size, impl.scale = HEADS, 1, D, D**-0.5
    impl.dense_above, impl.dense_above_source = dense_above, "test"
    impl.time_paths_source = "test"
    impl._gate = LayerGate(dense_above, reprobe_every=4, device_below=device_below, time_paths=clock is not None,
                           layer=layer, dense_margin=dense_margin)  # fmt: skip
    impl._clock = clock or FakeClock()
    impl._kernels = kernels
    impl._tau = torch.full((HEADS,), 0.9)
    impl._layer_index = layer
    impl._sparse_kind = "triton"
    impl._precompiled, impl._max_len = False, 8192
    monkeypatch.setattr(cuda, "_PRECOMPILED", set())
    calls = []
    monkeypatch.setattr(cuda.FlashAttentionImpl, "forward", lambda self, *a, **k: calls.append(a) or a[-1])
    monkeypatch.setattr(cuda, "publish_stats", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # a CPU build has no CUDA
    return impl, calls


TOKENS_ONE = 256  # _forward's row: 256 new tokens (not probed: q_len <= 2 x probe)


def _forward(impl, k_len=4096):
    tokens = TOKENS_ONE
    row = SimpleNamespace(row=0, q_start=0, q_len=tokens, k_len=k_len)
    step = cuda_step.CudaStepPlan(meta=None, qsl=[0, tokens], seq_lens=[k_len], candidates=[row], always_dense=())
    meta = SimpleNamespace(xattn_step=step, block_table=torch.zeros(1, 32, dtype=torch.int32))
    q = torch.zeros(tokens, HEADS * D)
    kv_cache = torch.zeros(32, 1, BLOCK, 2 * D)
    out = torch.zeros_like(q)
    layer = SimpleNamespace(layer_name="model.layers.5.self_attn.attn")
    return impl.forward(layer, q, q, q, kv_cache, meta, out)


def test_a_layer_far_above_the_break_even_runs_dense_without_estimates_but_is_reestimated(monkeypatch):
    kernels = FakeKernels(kept_per_head=18)  # density 0.72 >= 1.5 x 0.25
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5)
    before = STATS.history_dense_row_layers
    for _ in range(9):
        _forward(impl)
    # call 1 estimates; then every 4th of the skipping calls re-estimates (calls 5 and 9)
    assert kernels.selects == 3
    assert len(dense_calls) == 9 and kernels.attends == 0
    assert STATS.history_dense_row_layers - before == 6


def test_a_layer_near_the_break_even_is_estimated_every_call_and_runs_sparse_under_it(monkeypatch):
    kernels = FakeKernels(kept_per_head=5)  # density 0.2 <= 0.25: sparse, every call estimated
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, dense_margin=1.5)
    for _ in range(5):
        _forward(impl)
    assert kernels.selects == 5 and kernels.attends == 5 and dense_calls == []
    kernels.kept = 8  # 0.32: dense, but under 1.5 x the break-even: still estimated every call
    for _ in range(5):
        _forward(impl)
    assert kernels.selects == 10 and len(dense_calls) == 5


def test_by_default_a_layer_whose_estimate_came_out_dense_stops_estimating_until_its_reprobe(monkeypatch):
    kernels = FakeKernels(kept_per_head=5)  # density 0.2 <= 0.25: sparse, every call estimated
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5)
    for _ in range(3):
        _forward(impl)
    assert kernels.selects == 3 and kernels.attends == 3 and dense_calls == []
    kernels.kept = 8  # 0.32, just above the break-even: the default margin (1.0) skips the next estimates
    for _ in range(5):
        _forward(impl)
    # call 4 estimates (dense); calls 5-7 skip, call 8 is the 4th skipping call: re-estimated
    assert kernels.selects == 5 and kernels.attends == 3 and len(dense_calls) == 5


def test_nothing_is_skipped_when_every_row_runs_sparse(monkeypatch):
    kernels = FakeKernels(kept_per_head=25)  # density 1.0, but dense_above 1: every row sparse, no decision
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=1.0, layer=5)
    monkeypatch.setattr(cuda.DEVICE_COUNTS, "add", lambda *a: None)
    for _ in range(5):
        _forward(impl)
    assert kernels.selects == 5 and kernels.attends == 5 and dense_calls == []


def test_sparse_rows_go_to_fa3_with_their_widest_kept_row(monkeypatch):
    kernels = FakeKernels(kept_per_head=6)  # density 0.24 <= 0.25: sparse
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5)
    impl._sparse_kind, impl.vllm_flash_attn_version = "fa3", 3
    fa3 = []
    impl._fa3_attend = lambda *a, **k: fa3.append((a[4], k["widths"], k["fa_version"]))
    _forward(impl)
    assert kernels.attends == 0 and dense_calls == []
    assert [(len(seqs), widths, version) for seqs, widths, version in fa3] == [(1, [3], 3)]


def test_the_first_call_with_a_cache_precompiles_once_per_process_and_shape(monkeypatch):
    """vLLM's warm-up is the first call with a KV cache: the kernels compile there for rows of min_sparse_len
    to max_model_len tokens, once per layer shape (a second layer of the same shape finds them compiled);
    never during CUDA graph capture."""
    kernels = FakeKernels(kept_per_head=5)
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    _forward(impl)
    assert kernels.precompiled == []
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    for _ in range(3):
        _forward(impl)
    assert len(kernels.precompiled) == 1
    call = kernels.precompiled[0]
    assert (call["min_len"], call["max_len"], call["page"], call["attend"]) == (1024, 8192, BLOCK, True)
    assert call["q"][1:] == (HEADS, D) and call["stride"] == 16 and call["block_size"] == BLOCK
    other = object.__new__(cuda.XAttentionCudaImpl)
    other.__dict__.update({k: v for k, v in impl.__dict__.items() if k != "_gate"}, _precompiled=False)
    other._gate = LayerGate(0.25, reprobe_every=4, time_paths=False)
    _forward(other)
    assert len(kernels.precompiled) == 1 and other._precompiled


@dataclass(frozen=True)
class _Selection:
    count: torch.Tensor


@dataclass
class _Meta:
    """The fields of FlashAttentionMetadata the device-decided path replaces."""

    seq_lens: torch.Tensor
    scheduler_metadata: object = "planned"
    max_num_splits: int = 8
    use_cascade: bool = False


class RowKernels(FakeKernels):
    """Row i keeps ``kept[i]`` of 25 blocks per head; paged_attend writes 7 into the rows it computed (0 where
    the count is 0, as the Triton kernel writes 0 for a row with no kept blocks)."""

    def __init__(self, kept: list[int]) -> None:
        super().__init__(kept_per_head=0)
        self.kept_rows = kept

    def paged_select(self, q, key_cache, value_cache, block_table, seqs, **kw):
        self.selects += 1
        return [_Selection(torch.full((HEADS, 2), n, dtype=torch.int32) // 2) for n in self.kept_rows[: len(seqs)]]

    def paged_attend(self, q, key_cache, value_cache, block_table, seqs, sels, *, out, **kw):
        self.attends += 1
        for s, sel in zip(seqs, sels, strict=True):
            out[s.q_start : s.q_start + s.q_len] = 7.0 if int(sel.count.sum()) else 0.0


TOKENS = 256


def _two_rows(impl, tokens=TOKENS):
    rows = [SimpleNamespace(row=i, q_start=i * tokens, q_len=tokens, k_len=4096) for i in range(2)]
    meta = _Meta(seq_lens=torch.tensor([4096, 4096], dtype=torch.int32))
    step = cuda_step.CudaStepPlan(meta=meta, qsl=[0, tokens, 2 * tokens], seq_lens=[4096, 4096], candidates=rows,
                             always_dense=())  # fmt: skip
    meta.xattn_step, meta.block_table = step, torch.zeros(2, 32, dtype=torch.int32)
    q = torch.zeros(2 * tokens, HEADS * D)
    out = torch.full_like(q, -1.0)
    layer = SimpleNamespace(layer_name="model.layers.5.self_attn.attn")
    impl.forward(layer, q, q, q, torch.zeros(32, 1, BLOCK, 2 * D), meta, out)
    return out.view(2, tokens, HEADS * D)


def _dense_writer(monkeypatch):
    """vLLM's FlashAttention, recorded: writes 1 into each row with keys, 0 into a row with key length 0."""
    seen = []

    def forward(self, layer, query, key, value, kv_cache, meta, output, *a, **k):
        seen.append(meta)
        for r, n in enumerate(meta.seq_lens.tolist()):
            output[r * TOKENS : (r + 1) * TOKENS] = 1.0 if n else 0.0
        return output

    monkeypatch.setattr(cuda.FlashAttentionImpl, "forward", forward)
    return seen


def test_rows_decided_on_the_device_each_take_their_own_kernels_output(monkeypatch):
    """Well under the break-even lately, a layer decides on the device: no host read of the counts in the layer,
    FlashAttention runs on the whole batch with the sparse row's keys emptied, the sparse kernel with the dense
    row's counts emptied; the counters and the gate hear of it at the step's flush."""
    kernels = RowKernels(kept=[4, 4])  # density 0.16 < 0.8 x 0.25
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, device_below=0.8)
    seen = _dense_writer(monkeypatch)
    counts = cuda_step.DeviceCounts()
    counts.last_layer = 5
    monkeypatch.setattr(cuda, "DEVICE_COUNTS", counts)
    _two_rows(impl)  # the first call: no estimate yet, decided on the host (sync), both sparse
    assert impl._gate.on_device(BUCKET) and seen == []
    kernels.kept_rows = [4, 10]  # row 1 is now at 0.4 > 0.25: dense
    before = (STATS.sparse_row_layers, STATS.dense_row_layers)
    out = _two_rows(impl)
    assert (out[0] == 7.0).all() and (out[1] == 1.0).all()
    (meta,) = seen
    assert meta.seq_lens.tolist() == [0, 4096] and meta.scheduler_metadata is None and meta.max_num_splits == 0
    assert (STATS.sparse_row_layers - before[0], STATS.dense_row_layers - before[1]) == (1, 1)
    assert impl._gate.density(BUCKET) == pytest.approx((16 + 40) / 200)  # told at the flush: 0.28 >= 0.8 x 0.25
    assert not impl._gate.on_device(BUCKET)
    kernels.kept_rows = [10, 10]  # decided on the host again (both dense: FlashAttention on the whole batch)
    out = _two_rows(impl)
    assert (out == 1.0).all() and seen[-1].seq_lens.tolist() == [4096, 4096]


def test_fa3_rows_decided_on_the_device_get_emptied_counts_and_keep_flags(monkeypatch):
    kernels = RowKernels(kept=[4, 4])
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, device_below=0.8)
    impl._sparse_kind, impl.vllm_flash_attn_version = "fa3", 3
    fa3 = []
    impl._fa3_attend = lambda *a, **k: fa3.append(([int(s.count.sum()) for s in a[5]], [bool(x) for x in k["keep"]]))
    _dense_writer(monkeypatch)
    monkeypatch.setattr(cuda, "DEVICE_COUNTS", cuda_step.DeviceCounts())
    impl._gate.observe(16, 100, BUCKET)
    kernels.kept_rows = [4, 10]
    _two_rows(impl)
    assert fa3 == [([16, 0], [True, False])]  # row 0 keeps its 16 blocks, row 1 (dense) none


def test_device_decisions_match_the_hosts_rule_exactly():
    for dense_above in (0.25, 0.58, 0.78, 0.1, 1 / 3):
        for causal in (1, 3, 7, 100, 4096, 12345):
            most = cuda_step._most_kept(dense_above, causal)
            assert most / causal <= dense_above < (most + 1) / causal


def test_device_decide_below_zero_keeps_every_decision_on_the_host():
    gate = LayerGate(dense_above=0.5, device_below=0.0)
    gate.observe(1, 100)
    assert not gate.on_device()
    with pytest.raises(ValueError, match="device_decide_below"):
        XAttentionConfig(device_decide_below=1.5)


def test_a_decode_row_beside_device_decided_rows_keeps_its_keys(monkeypatch):
    """Candidates that are not the whole batch (a decode row first): only their key lengths are touched."""
    kernels = RowKernels(kept=[4, 10])
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, device_below=0.8)
    monkeypatch.setattr(cuda, "DEVICE_COUNTS", cuda_step.DeviceCounts())
    impl._gate.observe(16, 100, BUCKET)
    seen = []
    monkeypatch.setattr(cuda.FlashAttentionImpl, "forward", lambda self, *a, **k: seen.append(a[5]) or a[-1])
    rows = [SimpleNamespace(row=i, q_start=1 + (i - 1) * TOKENS, q_len=TOKENS, k_len=4096) for i in (1, 2)]
    meta = _Meta(seq_lens=torch.tensor([77, 4096, 4096], dtype=torch.int32))
    step = cuda_step.CudaStepPlan(meta=meta, qsl=[0, 1, 1 + TOKENS, 1 + 2 * TOKENS], seq_lens=[77, 4096, 4096],
                             candidates=rows, always_dense=(0,))  # fmt: skip
    meta.xattn_step, meta.block_table = step, torch.zeros(3, 32, dtype=torch.int32)
    q = torch.zeros(1 + 2 * TOKENS, HEADS * D)
    layer = SimpleNamespace(layer_name="model.layers.5.self_attn.attn")
    impl.forward(layer, q, q, q, torch.zeros(32, 1, BLOCK, 2 * D), meta, torch.zeros_like(q))
    assert seen[0].seq_lens.tolist() == [77, 0, 4096] and meta.seq_lens.tolist() == [77, 4096, 4096]


def test_fa3_tables_too_large_for_the_device_path_go_back_to_the_host(monkeypatch):
    """Deciding on the device builds full-width page tables; over DEVICE_TABLE_BYTES the host decides (and
    bounds the tables by the widest kept row it read)."""
    kernels = RowKernels(kept=[4, 4])
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, device_below=0.8)
    impl._sparse_kind, impl.vllm_flash_attn_version = "fa3", 3
    calls = []
    impl._fa3_attend = lambda *a, **k: calls.append(("keep" in k, k.get("widths")))
    _dense_writer(monkeypatch)
    monkeypatch.setattr(cuda, "DEVICE_COUNTS", cuda_step.DeviceCounts())
    impl._gate.observe(16, 100, BUCKET)
    # two rows of 2 query blocks x 32 key blocks, 4 heads, one page per block: 2 KiB of tables
    monkeypatch.setattr(cuda, "DEVICE_TABLE_BYTES", 2048)
    _two_rows(impl)
    monkeypatch.setattr(cuda, "DEVICE_TABLE_BYTES", 2047)
    _two_rows(impl)
    assert calls == [(True, None), (False, [2, 2])]


def test_a_layer_where_xattention_measures_slower_runs_dense_and_retimes_it(monkeypatch):
    """Sparse rows (density 0.2, under the break-even) whose path measures slower than dense: after one call
    of each path, the layer runs dense with no estimate, and XAttention again only on the re-timing calls."""
    kernels = FakeKernels(kept_per_head=5)
    clock = FakeClock({"xattn": 1.2, "dense": 1.0})  # within 1.5x: re-timed every retime_every calls
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, clock=clock)
    impl._gate.retime_every = 4
    before = STATS.timed_dense_row_layers
    idle_before = {k: list(v) for k, v in STATS.path_idle_starts.get(5, {}).get(4096, {}).items()}
    for _ in range(10):
        _forward(impl)
    paths = [key[1] for key in clock.spans]
    # calls 1-4: each path twice (XAttention first: the estimate); then the cheaper (dense), XAttention on the
    # calls where (calls + layer 5) % 4 == 0: call 7
    assert paths == ["xattn", "dense", "xattn", "dense", "dense", "dense", "xattn", "dense", "dense", "dense"]
    assert kernels.selects == 3 and kernels.attends == 3 and len(dense_calls) == 7
    assert STATS.timed_dense_row_layers - before == 7
    assert all(key[0] == BUCKET and key[2] == pytest.approx(TOKENS_ONE * (2 * 4096 - TOKENS_ONE + 1) / 2) for key in clock.spans)
    assert STATS.path_costs[5][4096]["dense"] < STATS.path_costs[5][4096]["xattn"]
    idle = STATS.path_idle_starts[5][4096]  # each read span counted once, per path, with its idle start
    assert idle["xattn"][1] - idle_before.get("xattn", [0, 0])[1] == 3
    assert idle["dense"][1] - idle_before.get("dense", [0, 0])[1] == 6  # the 10th call's span is read at an 11th
    assert all(row[0] == row[1] for row in idle.values())  # FakeClock: every span begins on an idle stream


def test_a_layer_where_xattention_measures_faster_keeps_it_and_retimes_dense(monkeypatch):
    kernels = FakeKernels(kept_per_head=5)
    clock = FakeClock({"xattn": 0.8, "dense": 1.0})  # within 1.5x: re-timed every retime_every calls
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, clock=clock)
    impl._gate.retime_every = 4
    for _ in range(8):
        _forward(impl)
    assert [key[1] for key in clock.spans] == ["xattn", "dense", "xattn", "dense", "xattn", "xattn", "dense", "xattn"]
    assert kernels.attends == 5


def test_until_both_paths_are_timed_the_density_rules_decide(monkeypatch):
    """Timings still on the GPU (never finished here): after its one dense call, the layer estimates."""
    kernels = FakeKernels(kept_per_head=5)
    clock = FakeClock({"xattn": None, "dense": None})
    impl, dense_calls = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, clock=clock)
    for _ in range(5):
        _forward(impl)
    assert [key[1] for key in clock.spans] == ["xattn", "dense", "xattn", "xattn", "xattn"]


def test_lengths_are_timed_apart(monkeypatch):
    """A context in another half octave starts with nothing timed: its own first calls, its own costs."""
    kernels = FakeKernels(kept_per_head=5)
    clock = FakeClock({"xattn": 1.2, "dense": 1.0})
    impl, _ = _impl(monkeypatch, kernels, dense_above=0.25, layer=5, clock=clock)
    for _ in range(3):
        _forward(impl)
    _forward(impl, k_len=16384)
    assert [key[1] for key in clock.spans] == ["xattn", "dense", "xattn", "xattn"]
    assert clock.spans[-1][0] == length_bucket(16384) != BUCKET


def test_dense_margin_reaches_every_layers_gate(monkeypatch):
    """``dense_margin`` from the config (additional_config) is the margin each layer's gate skips estimates at."""
    impl = object.__new__(cuda.XAttentionCudaImpl)
    impl.xattn = XAttentionConfig(dense_above=0.5, dense_margin=1.1, time_paths=False)
    impl.head_size, impl._layer_index = D, 3
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "test card")
    impl._set_dense_above("fa3")
    assert (impl._gate.dense_above, impl._gate.dense_margin) == (0.5, 1.1)
    impl._gate.observe(56, 100)  # 0.56 >= 1.1 x 0.5: the next calls skip the estimate
    assert impl._gate.skip_estimate()
    with pytest.raises(ValueError, match="dense_margin"):
        XAttentionConfig(dense_margin=0.9)
