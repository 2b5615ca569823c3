"""The latency summaries and ratios of bench/routing_latency.py (server/research/routing_eval/latency.py)."""

from __future__ import annotations

import math

import pytest

from server.research.routing_eval.latency import (
    LatencySummary,
    ratio,
    same_work_ratio,
    summaries_by,
    summarise,
)


def test_summary_is_median_min_max() -> None:
    assert summarise([30.0, 10.0, 20.0]) == LatencySummary(3, 20.0, 10.0, 30.0)
    assert summarise([40.0, 10.0, 20.0, 30.0]) == LatencySummary(4, 25.0, 10.0, 40.0)
    assert summarise([7.5]) == LatencySummary(1, 7.5, 7.5, 7.5)


@pytest.mark.parametrize("bad", [[], [1.0, -0.1], [1.0, math.nan], [math.inf]])
def test_summary_refuses_empty_and_impossible_times(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="no samples|finite and >= 0"):
        summarise(bad)


def test_ratio_of_medians_and_minima() -> None:
    bf16, fp32 = LatencySummary(5, 2400.0, 2300.0, 2500.0), LatencySummary(5, 400.0, 460.0, 500.0)
    assert ratio(bf16, fp32) == pytest.approx({"p50": 6.0, "min": 5.0})
    with pytest.raises(ValueError, match="zero"):
        ratio(bf16, LatencySummary(1, 0.0, 0.0, 0.0))


def test_summaries_group_by_dtype_and_kind_and_leave_out_warmup() -> None:
    samples = [
        {"dtype": "float32", "kind": "cold", "ms": 5000.0, "warmup": True},
        {"dtype": "float32", "kind": "cold", "ms": 400.0, "warmup": False},
        {"dtype": "float32", "kind": "cold", "ms": 420.0, "warmup": False},
        {"dtype": "float32", "kind": "warm", "ms": 90.0, "warmup": False},
        {"dtype": "bfloat16", "kind": "cold", "ms": 2400.0, "warmup": False},
    ]
    got = summaries_by(samples)
    assert list(got) == ["float32", "bfloat16"] and list(got["float32"]) == ["cold", "warm"]
    assert got["float32"]["cold"] == LatencySummary(2, 410.0, 400.0, 420.0)
    assert got["bfloat16"]["cold"].n == 1


def test_a_finer_key_splits_a_kind() -> None:
    samples = [
        {"dtype": "float32", "kind": "verify", "accepted": 0, "ms": 400.0, "warmup": False},
        {"dtype": "float32", "kind": "verify", "accepted": 4, "ms": 900.0, "warmup": False},
        {"dtype": "float32", "kind": "verify", "accepted": 4, "ms": 1000.0, "warmup": False},
    ]
    got = summaries_by(samples, key=lambda s: f"{s['kind']} accepted={s['accepted']}")["float32"]
    assert got == {"verify accepted=0": LatencySummary(1, 400.0, 400.0, 400.0),
                   "verify accepted=4": LatencySummary(2, 950.0, 900.0, 1000.0)}  # fmt: skip


def _calls(ms: list[float], out: list[int]) -> list[dict]:
    return [{"ms": m, "usage": {"completion_tokens": o}} for m, o in zip(ms, out, strict=True)]


def test_a_ratio_needs_the_same_work_in_every_call() -> None:
    work = lambda s: s["usage"]["completion_tokens"]  # noqa: E731
    same = same_work_ratio(_calls([300.0, 200.0], [5, 5]), _calls([100.0, 100.0], [5, 5]), work)
    assert same == pytest.approx({"p50": 2.5, "min": 2.0})
    mixed = same_work_ratio(_calls([300.0, 900.0], [2, 5]), _calls([100.0, 100.0], [5, 5]), work)
    assert "not_comparable" in mixed and "p50" not in mixed
    other = same_work_ratio(_calls([300.0], [4]), _calls([100.0], [5]), work)
    assert "not_comparable" in other
    assert "missing" in same_work_ratio([], _calls([100.0], [5]), work)
