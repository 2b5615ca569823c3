from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.research.cache_sim.trace import TraceFormatError, read_trace


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_mooncake_keys_and_turn_categories(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]},
        {"timestamp": 1500, "input_length": 1600, "output_length": 5, "hash_ids": [0, 1, 2, 3]},
        {"timestamp": 2000, "input_length": 600, "output_length": 5, "hash_ids": [0, 9]},
    ]
    trace = read_trace(_write(tmp_path / "t.jsonl", rows))
    assert trace.format == "mooncake" and trace.block_tokens == 512
    assert trace.times_s == [0.0, 1.5, 2.0]
    assert trace.blocks[1][:3] == trace.blocks[0]
    assert trace.blocks[2][0] == trace.blocks[0][0] and trace.blocks[2][1] not in trace.blocks[0]
    assert [m.category for m in trace.metas] == ["turn1", "turn2", "turn1"]


def test_bailian_keys_are_prefix_paths(tmp_path: Path) -> None:
    """Bailian hash ids are per block, not chained: the same id after a different prefix is new content."""
    base = {"chat_id": 1, "parent_chat_id": -1, "output_length": 3, "type": "text", "turn": 1}
    rows = [
        {**base, "timestamp": 0.0, "input_length": 32, "hash_ids": [5, 6]},
        {**base, "chat_id": 2, "timestamp": 1.0, "input_length": 32, "hash_ids": [7, 6]},
        {
            **base,
            "chat_id": 3,
            "parent_chat_id": 1,
            "turn": 2,
            "timestamp": 2.0,
            "input_length": 40,
            "hash_ids": [5, 6, 8],
        },
    ]
    trace = read_trace(_write(tmp_path / "b.jsonl", rows))
    assert trace.format == "bailian" and trace.block_tokens == 16
    assert trace.blocks[0][1] != trace.blocks[1][1]
    assert trace.blocks[2][:2] == trace.blocks[0]
    assert [m.category for m in trace.metas] == ["text-turn1", "text-turn1", "text-turn2"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "t.jsonl:2: not JSON"),
        ({"timestamp": 5, "input_length": 10}, "t.jsonl:2: missing fields"),
        (
            {"timestamp": 5, "input_length": 10, "output_length": 1, "hash_ids": [1, 2]},
            "t.jsonl:2: 2 hash_ids",
        ),
        ({"timestamp": 5, "input_length": -1, "output_length": 1, "hash_ids": []}, "t.jsonl:2: input_length"),
        ({"timestamp": 5, "input_length": 10, "output_length": 1, "hash_ids": ["a"]}, "t.jsonl:2: hash_ids"),
        ({"timestamp": -1, "input_length": 10, "output_length": 1, "hash_ids": [1]}, "t.jsonl:2: timestamp"),
        ({"timestamp": float("nan"), "input_length": 10, "output_length": 1, "hash_ids": [1]}, "t.jsonl:2: timestamp"),
        ('{"timestamp": 1e400, "input_length": 10, "output_length": 1, "hash_ids": [1]}', "t.jsonl:2: timestamp"),
    ],
)
def test_malformed_line_reports_its_number(tmp_path: Path, bad: object, message: str) -> None:
    good = {"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}
    with pytest.raises(TraceFormatError, match=message):
        read_trace(_write(tmp_path / "t.jsonl", [good, bad, good]))


def test_time_going_backwards_is_refused(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 10, "input_length": 10, "output_length": 1, "hash_ids": [1]},
        {"timestamp": 5, "input_length": 10, "output_length": 1, "hash_ids": [1]},
    ]
    with pytest.raises(TraceFormatError, match="t.jsonl:2: timestamp goes back"):
        read_trace(_write(tmp_path / "t.jsonl", rows))


def test_empty_trace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="no requests"):
        read_trace(_write(tmp_path / "t.jsonl", []))
