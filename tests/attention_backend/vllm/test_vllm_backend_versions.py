"""The attention plugin's version handling: ``register()`` refuses a vLLM that lacks what the backend
uses (version and symbol named), and the CPU kernel ISA is found where each vLLM keeps it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.vllm import backend as vllm_backend  # noqa: E402
from attention_backend.vllm.contract import Requirement, VllmIncompatible  # noqa: E402


def test_register_raises_naming_version_and_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Requirement("attr", "vllm.v1.attention.backends.cpu_attn", "CPUAttentionMetadata.xattn_plan")
    monkeypatch.setattr(vllm_backend, "REQUIREMENTS", (*vllm_backend.REQUIREMENTS, missing))
    vllm_backend._vllm.cache_clear()
    try:
        with pytest.raises(VllmIncompatible, match=r"installed vLLM \d+\.\d+") as err:
            vllm_backend.register()
        assert "CPUAttentionMetadata.xattn_plan" in str(err.value)
    finally:
        vllm_backend._vllm.cache_clear()


def test_cpu_isa_comes_from_the_impl_up_to_0_28_and_the_layer_after() -> None:
    assert vllm_backend._cpu_isa(SimpleNamespace(isa="vec"), SimpleNamespace()) == "vec"  # vLLM <= 0.28
    assert vllm_backend._cpu_isa(SimpleNamespace(), SimpleNamespace(isa="amx")) == "amx"  # vLLM >= 0.29
    with pytest.raises(VllmIncompatible, match="neither the CPU attention impl nor its layer has an ISA"):
        vllm_backend._cpu_isa(SimpleNamespace(), SimpleNamespace())
