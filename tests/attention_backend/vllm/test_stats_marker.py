"""The stats marker is written once per planned engine step: with markers off (no ``XEDGE_STATUS_DIR``)
nothing is built, with them on the file holds the counters."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.vllm import common  # noqa: E402
from client_edge.protocol.status_marker import STATUS_DIR_ENV, read_markers  # noqa: E402


def test_stats_are_not_built_without_a_status_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATUS_DIR_ENV, raising=False)

    def fail() -> dict:
        raise AssertionError("the counters were serialised with markers off")

    monkeypatch.setattr(common.STATS, "as_dict", fail)
    common.publish_stats({"dense_above": 0.5})


def test_stats_marker_holds_the_counters(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(STATUS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(common.STATS, "sparse_prefills", 7)
    common.publish_stats({"dense_above": 0.5})
    (marker,) = read_markers(tmp_path, "attention.stats.*.json")
    assert marker.detail["sparse_prefills"] == 7 and marker.detail["dense_above"] == 0.5
    assert json.loads(marker.path.read_text())["event"] == "stats"
