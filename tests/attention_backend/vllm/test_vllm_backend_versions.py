"""The attention plugin's version handling: ``register()`` refuses a vLLM that lacks what the backend
uses (version and symbol named); both platform adapters import on the installed vLLM."""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.vllm import common, plugin  # noqa: E402
from attention_backend.vllm.contract import Requirement, VllmIncompatible  # noqa: E402


def test_register_raises_naming_version_and_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Requirement("attr", "vllm.v1.attention.backends.cpu_attn", "CPUAttentionMetadata.xattn_plan")
    monkeypatch.setattr(common, "REQUIREMENTS", (*common.REQUIREMENTS, missing))
    common.vllm_report.cache_clear()
    try:
        with pytest.raises(VllmIncompatible, match=r"installed vLLM \d+\.\d+") as err:
            plugin.register()
        assert "CPUAttentionMetadata.xattn_plan" in str(err.value)
    finally:
        common.vllm_report.cache_clear()


@pytest.mark.parametrize("path", [plugin.CPU_BACKEND_PATH, plugin.CUDA_BACKEND_PATH])
def test_registered_class_paths_import(path: str) -> None:
    module, _, name = path.rpartition(".")
    backend = getattr(importlib.import_module(module), name)
    assert backend.get_name() in ("CPU_ATTN", "FLASH_ATTN")
    assert backend.get_builder_cls().__module__ == module
    assert backend.get_impl_cls().__module__ == module
