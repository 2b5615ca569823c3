"""``xedge bench prefix-cache`` end to end on small traces: table, JSON, plot, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from server.commands import bench_prefix_cache


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    bench = typer.Typer()
    root.add_typer(bench, name="bench")
    bench_prefix_cache.register(root)
    return root


def _trace(path: Path) -> Path:
    rows = []
    for i in range(40):
        conv = i % 5
        rows.append(
            {
                "timestamp": 1000 * i,
                "input_length": 512 * (2 + i // 5),
                "output_length": 10,
                "hash_ids": [0] + [1000 * conv + j for j in range(1 + i // 5)],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bench_writes_table_json_and_plot(app: typer.Typer, tmp_path: Path) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "prefix-cache",
            "--trace",
            str(_trace(tmp_path / "t.jsonl")),
            "--capacity-tokens",
            "4096,8k",
            "--policy",
            "lru,workload,belady",
            "--out",
            str(out),
            "--plot",
            str(plot),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "share of the lru -> belady gap closed" in result.output
    data = json.loads(out.read_text())
    assert data["capacities_tokens"] == [4096, 8000]
    assert {r["policy"] for r in data["results"]} == {"lru", "workload", "belady"}
    assert set(data["lru_to_belady_gap_closed"]) == {"workload"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--policy", "lru,lfu"],
            "unknown prefix-cache policy 'lfu'; valid: belady, density, guarded, lru, s3fifo, session, session-due, workload",
        ),
        (["--capacity-tokens", "1M,0"], "capacity '0' must be positive"),
        (["--capacity-tokens", "1.5M"], "capacity '1.5M' is not a positive integer"),
        (["--capacity-tokens", "-5"], "capacity '-5' is not a positive integer"),
        (["--capacity-tokens", "100"], "below one 512-token block"),
    ],
)
def test_bad_arguments_are_refused(app: typer.Typer, tmp_path: Path, args: list[str], message: str) -> None:
    trace = _trace(tmp_path / "t.jsonl")
    result = CliRunner().invoke(app, ["bench", "prefix-cache", "--trace", str(trace), "--jobs", "1", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_malformed_trace_names_the_line(app: typer.Typer, tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.jsonl")
    lines = trace.read_text().splitlines()
    lines[6] = '{"timestamp": 6000, "input_length": 512}'
    trace.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["bench", "prefix-cache", "--trace", str(trace), "--jobs", "1"])
    assert result.exit_code == 2
    assert "t.jsonl:7: missing fields" in result.output
