"""Shipped per-head threshold tables: the model key, the default when the user gives no threshold, the
user's threshold / stride overriding it, and no table for a model of another shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from attention_backend import XAttentionConfig
from attention_backend.shipped_tables import (
    TABLES_DIR,
    find_shipped_table,
    load_shipped_table,
    model_key,
    with_shipped_table,
)

SMOL = {
    "model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 3, "num_key_value_heads": 1,
    "head_dim": 64, "hidden_size": 192, "intermediate_size": 512, "vocab_size": 1000,
    "max_position_embeddings": 8192, "_name_or_path": "/somewhere/smol",
}  # fmt: skip
TABLE = [[0.5, 0.6, 0.7], [0.8, 0.9, 1.0]]


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    entry = {"model_key": model_key(SMOL), "threshold": TABLE, "target": 0.95, "stride": 16, "block_size": 128}
    (tmp_path / "smol.json").write_text(json.dumps(entry))
    other = {**entry, "model_key": "gemma3_text/L18/H4/KV1/D256/E640/I2048/V262144", "threshold": [[1.0] * 4] * 18}
    (tmp_path / "gemma.json").write_text(json.dumps(other))
    return tmp_path


def _resolve(section: dict, config, tables: Path) -> tuple[XAttentionConfig, list[str]]:
    lines: list[str] = []
    return XAttentionConfig.from_dict(with_shipped_table(section, config, tables_dir=tables, log=lines.append)), lines


def test_key_is_the_shape_not_the_path_or_the_rope() -> None:
    moved = {**SMOL, "_name_or_path": "/elsewhere/renamed", "max_position_embeddings": 32768, "rope_scaling": {"factor": 4}}
    assert model_key(SMOL) == model_key(moved) == "llama/L2/H3/KV1/D64/E192/I512/V1000"
    assert model_key(SimpleNamespace(**SMOL)) == model_key(SMOL)  # an HF config object (vLLM's hf_text_config)
    assert model_key({**SMOL, "num_attention_heads": 6}) != model_key(SMOL)
    no_head_dim = {k: v for k, v in SMOL.items() if k != "head_dim"}
    assert model_key(no_head_dim) == model_key(SMOL)  # head_dim = hidden / heads when absent
    with pytest.raises(ValueError, match="vocab_size"):
        model_key({k: v for k, v in SMOL.items() if k != "vocab_size"})


def test_matching_model_gets_its_table_and_its_stride_by_default(tables: Path) -> None:
    cfg, lines = _resolve({"min_sparse_len": 1024}, SMOL, tables)
    assert cfg.has_table and cfg.thresholds(3, layer=1) == [0.8, 0.9, 1.0]
    assert cfg.stride == 16 and cfg.block_size == 128 and cfg.min_sparse_len == 1024
    assert len(lines) == 1 and "using shipped threshold table smol.json" in lines[0] and "llama/L2/H3" in lines[0]


@pytest.mark.parametrize(
    ("section", "expected"),
    [({"threshold": 0.8}, 0.8), ({"threshold": [[0.3] * 3] * 2}, ((0.3,) * 3,) * 2), ({"threshold": 0.8, "stride": 8}, 0.8)],
)
def test_explicit_threshold_wins(tables: Path, section: dict, expected) -> None:
    cfg, lines = _resolve(section, SMOL, tables)
    assert cfg.threshold == expected and "explicitly" in lines[0]


def test_threshold_table_file_wins(tables: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"threshold": [[0.2] * 3] * 2}))
    cfg, _ = _resolve({"threshold_table": str(path)}, SMOL, tables)
    assert cfg.thresholds(3, layer=0) == [0.2] * 3


def test_a_stride_other_than_the_tables_keeps_the_scalar_default(tables: Path) -> None:
    cfg, lines = _resolve({"stride": 8}, SMOL, tables)
    assert not cfg.has_table and cfg.threshold == XAttentionConfig().threshold and cfg.stride == 8
    assert "calibrated with stride=16, stride=8 was set: table not used" in lines[0]
    cfg, _ = _resolve({"stride": 16}, SMOL, tables)  # the table's own stride, given explicitly: used
    assert cfg.has_table


def test_mismatching_or_unknown_model_gets_no_table(tables: Path) -> None:
    default = XAttentionConfig()
    for config in ({**SMOL, "num_hidden_layers": 3}, {**SMOL, "vocab_size": 1001}):
        cfg, lines = _resolve({}, config, tables)
        assert cfg == default and "no shipped threshold table for model" in lines[0]
    cfg, lines = _resolve({}, None, tables)
    assert cfg == default and "no model config" in lines[0]
    cfg, lines = _resolve({}, SimpleNamespace(model_type="llama"), tables)
    assert cfg == default and "num_hidden_layers" in lines[0]


def test_disabled_config_is_left_alone(tables: Path) -> None:
    cfg, lines = _resolve({"enabled": False}, SMOL, tables)
    assert not cfg.has_table and not cfg.enabled and lines == []


def test_shipped_tables_are_valid_and_fit_their_model() -> None:
    paths = sorted(TABLES_DIR.glob("*.json"))
    assert paths, f"no shipped tables in {TABLES_DIR}"
    keys = set()
    for path in paths:
        table = load_shipped_table(path)
        shape = re.fullmatch(r"[a-z0-9_]+/L(\d+)/H(\d+)/KV\d+/D\d+/E\d+/I\d+/V\d+", table.model_key)
        assert shape, f"{path.name}: model_key {table.model_key!r}"
        assert len(table.threshold) == int(shape[1]), path.name
        assert {len(row) for row in table.threshold} == {int(shape[2])}, path.name
        assert 0.0 < table.target <= 1.0 and table.block_size % table.stride == 0
        XAttentionConfig(threshold=table.threshold, stride=table.stride, block_size=table.block_size)
        assert table.model_key not in keys, f"two shipped tables for {table.model_key}"
        keys.add(table.model_key)


def test_packaged_smollm2_config_finds_its_shipped_table() -> None:
    # config.json of the packaged SmolLM2-135M-Instruct as server.models.store converts it (shape fields)
    smollm2 = {
        "model_type": "llama", "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "hidden_size": 576, "intermediate_size": 1536, "vocab_size": 49152,
    }  # fmt: skip
    table = find_shipped_table(smollm2)
    assert table is not None and table.path.name == "smollm2-135m-instruct.json"


def test_packaged_gemma3_config_finds_its_table_with_the_sliding_layers_dense() -> None:
    gemma = {
        "model_type": "gemma3_text", "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 256, "hidden_size": 640, "intermediate_size": 2048, "vocab_size": 262144,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
    }  # fmt: skip
    table = find_shipped_table(gemma)
    assert table is not None and table.path.name == "gemma-3-270m.json"
    full = {5, 11, 17}
    assert all(row == (1.0,) * 4 for i, row in enumerate(table.threshold) if i not in full)
    assert all(min(table.threshold[i]) < 1.0 for i in full)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"threshold": TABLE[:1]}, r"expected 2 rows of 3 query heads .* got 1 rows of \[3\]"),
        ({"threshold": [[0.5, 0.6], [0.8, 0.9]]}, r"expected 2 rows of 3 query heads .* got 2 rows of \[2\]"),
        ({"threshold": [[0.5, 0.6, float("nan")], [0.8, 0.9, 1.0]]}, r"threshold\[0\]\[2\]: expected tau in \(0, 1\], got nan"),
        ({"threshold": [[0.5, 0.6, 0.7], [0.8, 0.9, 1.5]]}, r"threshold\[1\]\[2\]: expected tau in \(0, 1\]"),
        ({"model_key": "llama"}, "model_key: expected type/L<layers>/H<heads>"),
    ],
)
def test_shipped_table_not_fitting_its_model_key_is_refused_naming_the_file(tables: Path, change: dict, match: str) -> None:
    """A shipped table's rows are checked against the shape in its own model_key (the model it is applied to
    has that key), and a broken file names itself; before, a row count off was applied as is."""
    path = tables / "smol.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ValueError, match=rf"^shipped xattn table {re.escape(str(path))}: .*{match}"):
        find_shipped_table(SMOL, tables)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"^shipped xattn table {re.escape(str(path))}: .*Expecting property name"):
        load_shipped_table(path)
