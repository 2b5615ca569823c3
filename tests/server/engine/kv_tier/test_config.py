"""Turning the host KV tier on: the flag, the settings, vLLM's ``--kv-transfer-config``, and bad sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.engine.kv_tier.config import CONNECTOR_MODULE, CONNECTOR_NAME, HostKVTierError, host_blocks
from server.launch.vllm_cmd import vllm_argv
from server.settings import StackSettings


def _argv(tmp_path: Path, **kw: object) -> list[str]:
    settings = StackSettings(port=0, vllm_port=0, device="cpu", run_dir=tmp_path, **kw)  # type: ignore[arg-type]
    return vllm_argv(settings, tmp_path, 8000, "cpu")


def test_the_tier_is_off_by_default(tmp_path: Path) -> None:
    assert "--kv-transfer-config" not in _argv(tmp_path)


def test_the_flag_names_our_connector_with_its_size(tmp_path: Path) -> None:
    argv = _argv(tmp_path, kv_host_tier_blocks=512)
    cfg = json.loads(argv[argv.index("--kv-transfer-config") + 1])
    assert cfg["kv_connector"] == CONNECTOR_NAME and cfg["kv_connector_module_path"] == CONNECTOR_MODULE
    assert cfg["kv_connector_extra_config"] == {"host_blocks": 512}
    assert cfg["kv_load_failure_policy"] == "recompute"  # a failed load is recomputed, never a failed request


def test_a_negative_size_is_refused_before_vllm_starts() -> None:
    with pytest.raises(ValidationError, match="kv_host_tier_blocks"):
        StackSettings(kv_host_tier_blocks=-1)


@pytest.mark.parametrize("extra", [None, {}, {"host_blocks": 0}, {"host_blocks": "64"}, {"host_blocks": True}])
def test_the_connector_names_a_bad_size(extra: dict | None) -> None:
    with pytest.raises(HostKVTierError, match="host_blocks"):
        host_blocks(extra)
