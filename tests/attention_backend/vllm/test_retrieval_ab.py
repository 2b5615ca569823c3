"""``bench/xattn_retrieval.py run --ab``, the in-process A/B behind must-have 1's TTFT ratios, on any host: a
stand-in engine that records which way each prompt ran (the real switch flips the real impl class), so the
order, the files and the per-length counters are checked without a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.vllm import cuda  # noqa: E402
from attention_backend.vllm.common import STATS  # noqa: E402

BENCH = Path(__file__).resolve().parents[3] / "bench" / "xattn_retrieval.py"
LENS = (8000, 16000)
MS = {True: 0.008, False: 0.010}  # what a prompt takes with XAttention on / off in the stand-in


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


class Engine:
    """``vllm.LLM`` stand-in: one real ``XAttentionCudaImpl`` (not initialised) behind ``collective_rpc``."""

    def __init__(self, clock: Clock, **kw) -> None:
        self.clock, self.ran = clock, []
        self.impl = object.__new__(cuda.XAttentionCudaImpl)
        self.impl.sparse_enabled, self.impl.dense_reasons = True, []
        self.impl.xattn = SimpleNamespace(enabled=True)
        layers = {"model.layers.0.self_attn.attn": SimpleNamespace(impl=self.impl), "model.norm": SimpleNamespace()}
        self.worker = SimpleNamespace(
            vllm_config=SimpleNamespace(compilation_config=SimpleNamespace(static_forward_context=layers))
        )

    def collective_rpc(self, method, args=()):
        return [method(self.worker, *args)]

    def generate(self, prompts, params, use_tqdm=False):
        on = self.impl.sparse_enabled
        self.ran.append((prompts[0]["prompt_token_ids"][0], on))
        STATS.dense_small_prefills += 1  # the builder plans (and counts) with XAttention off too
        if on:
            STATS.sparse_row_layers += 1
        self.clock.now += MS[on]
        return []


@pytest.fixture
def bench(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("xattn_retrieval_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clock, engines = Clock(), []
    vllm_stub = types.ModuleType("vllm")
    vllm_stub.LLM = lambda **kw: engines.append(Engine(clock, **kw)) or engines[-1]
    vllm_stub.SamplingParams = lambda **kw: kw
    inputs_stub = types.ModuleType("vllm.inputs")
    inputs_stub.TokensPrompt = lambda **kw: kw
    plugin_stub = types.ModuleType("attention_backend.vllm.plugin")
    plugin_stub.register = lambda: None
    monkeypatch.setitem(sys.modules, "vllm", vllm_stub)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs_stub)
    monkeypatch.setitem(sys.modules, "attention_backend.vllm.plugin", plugin_stub)
    monkeypatch.setattr(sys.modules["attention_backend.vllm"], "plugin", plugin_stub, raising=False)
    monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(module, "_sm_clock_mhz", lambda: 1980)
    monkeypatch.setattr(STATS, "sparse_row_layers", 0)
    monkeypatch.setattr(STATS, "dense_small_prefills", 0)
    items = [{"length": n, "prompt_token_ids": [i, 7], "task": "single", "depth": 0.05, "answers": ["x"]}
             for n in LENS for i in range(8)]  # fmt: skip
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"lens": list(LENS), "items": items, "model": "m"}))
    args = SimpleNamespace(
        suite=str(suite), backend="xattn", stride=16, min_len=4096, tau=None, dense_above=None, sparse_kernel=None,
        estimate_fp8=False, device_decide_below=None, dense_margin=None, time_paths=None, min_sparse_ms=None,
        model="m", label="xattn A/B", eager=False, warmup=2, warmup_s=0.0, ab=True, timed=None, ttft_only=True,
        out=str(tmp_path / "x.json"),
    )  # fmt: skip
    return module, args, engines


def test_ab_times_every_prompt_both_ways_in_one_engine_and_writes_both_sides(bench, tmp_path):
    module, args, engines = bench
    module.run(args)
    (engine,) = engines  # one engine: no process difference can enter the ratio
    xattn = json.loads((tmp_path / "x.json").read_text())
    dense = json.loads((tmp_path / "x_abdense.json").read_text())
    for n in LENS:
        assert xattn["ttft_s"][str(n)] == pytest.approx([MS[True]] * 5)  # five timed prompts by default with --ab
        assert dense["ttft_s"][str(n)] == pytest.approx([MS[False]] * 5)
        counts = xattn["xattn_counts_timed"][str(n)]  # what the XAttention legs moved, not the dense legs
        assert (counts["sparse_row_layers"], counts["dense_small_prefills"]) == (5, 5)
    assert dense["backend"] == "FLASH_ATTN" and "XAttention off" in dense["label"] and dense["xattn"] == {}
    # the timed legs of the first length: each prompt off and on, B-A then A-B by turns, so the four pairs the
    # median keeps (all but the first) run each order twice
    timed = [r for r in engine.ran if r[0] < 5][-10:]
    assert [on for _, on in timed] == [False, True, True, False] * 2 + [False, True]
    assert [p for p, _ in timed] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert engine.impl.sparse_enabled is True  # left on
    module.compare([str(tmp_path / "x_abdense.json"), str(tmp_path / "x.json")], str(tmp_path / "cmp"))
    summary = json.loads((tmp_path / "cmp.json").read_text())
    ratios = {row["label"]: row["ratio_vs_dense"] for row in summary["runs"]}
    assert ratios["xattn A/B"]["8000"] == pytest.approx(MS[False] / MS[True])


def test_ab_needs_the_xattn_backend_and_two_timed_prompts(bench):
    module, args, _ = bench
    args.backend = "FLASH_ATTN"
    with pytest.raises(SystemExit, match="--ab: needs --backend xattn"):
        module.run(args)
    args.backend, args.timed = "xattn", 1
    with pytest.raises(SystemExit, match="--timed: expected >= 2"):
        module.run(args)
