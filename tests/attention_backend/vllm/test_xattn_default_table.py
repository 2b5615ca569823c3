"""``config_from_vllm`` takes the shipped table of the served model by default, from vLLM's model config;
the user's threshold overrides it. (The matching rules themselves: tests/attention_backend/test_xattn_shipped_tables.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.config import XAttentionConfig  # noqa: E402
from attention_backend.shipped_tables import find_shipped_table  # noqa: E402
from attention_backend.vllm import common  # noqa: E402

SMOLLM2 = SimpleNamespace(
    model_type="llama", num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
    hidden_size=576, intermediate_size=1536, vocab_size=49152,
)  # fmt: skip


def _vllm_config(section: dict | None, hf_text_config) -> SimpleNamespace:
    return SimpleNamespace(
        additional_config={"xattn": section} if section is not None else {},
        model_config=SimpleNamespace(hf_config=hf_text_config, hf_text_config=hf_text_config),
    )


def test_served_model_with_a_shipped_table_uses_it(caplog: pytest.LogCaptureFixture) -> None:
    shipped = find_shipped_table(SMOLLM2)
    assert shipped is not None
    common.warn_once.cache_clear()  # logged once per process: make this the first time
    with caplog.at_level("WARNING", logger="attention_backend.vllm"):
        cfg = common.config_from_vllm(_vllm_config(None, SMOLLM2))
        common.config_from_vllm(_vllm_config(None, SMOLLM2))  # the next layer: not logged again
    assert cfg.threshold == shipped.threshold and cfg.stride == shipped.stride
    lines = [r.getMessage() for r in caplog.records if shipped.path.name in r.getMessage()]
    assert len(lines) == 1 and "using shipped threshold table" in lines[0], lines


def test_explicit_threshold_overrides_and_other_models_get_none() -> None:
    assert common.config_from_vllm(_vllm_config({"threshold": 0.7}, SMOLLM2)).threshold == 0.7
    other = SimpleNamespace(**{**vars(SMOLLM2), "num_hidden_layers": 12})
    default = XAttentionConfig()
    assert common.config_from_vllm(_vllm_config({}, other)) == default
    assert common.config_from_vllm(SimpleNamespace(additional_config=None, model_config=None)) == default


def test_table_with_another_models_layer_count_stops_at_start_up(tmp_path) -> None:
    """A table of fewer layers used to fail at the first long prefill of a later layer; one of more layers was
    applied silently (its first rows)."""
    import json

    for layers in (2, 31):
        path = tmp_path / f"t{layers}.json"
        path.write_text(json.dumps({"threshold": [[0.9] * 9] * layers}))
        with pytest.raises(ValueError, match=rf"^--xattn-threshold-table: expected 30 rows .* got {layers}"):
            common.config_from_vllm(_vllm_config({"threshold_table": str(path)}, SMOLLM2))
        with pytest.raises(ValueError, match=rf"^--xattn-threshold-table: expected 30 rows .* got {layers}"):
            common.config_from_vllm(_vllm_config({"threshold": [[0.9] * 9] * layers}, SMOLLM2))
    table = [[0.9] * 9] * 30
    assert common.config_from_vllm(_vllm_config({"threshold": table}, SMOLLM2)).thresholds(9, layer=29) == [0.9] * 9


def test_an_xattn_section_that_is_not_a_mapping_stops_with_one_line() -> None:
    """``--additional-config '{"xattn": 0.9}'`` used to stop with a TypeError traceback from dict()."""
    vllm_config = SimpleNamespace(additional_config={"xattn": 0.9}, model_config=None)
    with pytest.raises(ValueError, match=r"^additional_config\['xattn'\]: expected a mapping of settings, got float 0.9"):
        common.config_from_vllm(vllm_config)
