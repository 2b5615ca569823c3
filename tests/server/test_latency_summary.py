"""The latency summaries and ratios of bench/routing_latency.py (server/evaluation/latency.py)."""

from __future__ import annotations

import math

import pytest

from server.evaluation.latency import LatencySummary, ratio, summaries_by, summarise


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
