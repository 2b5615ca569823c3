"""The prefix-cache plugin refuses a vLLM that lacks what it patches: ``register()`` raises before
patching, naming the installed version and the missing symbol (vLLM would otherwise run without it)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.vllm.contract import Requirement, VllmIncompatible  # noqa: E402
from server.engine.prefix_cache import vllm_adapter  # noqa: E402


def test_register_raises_naming_version_and_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.core.block_pool import BlockPool

    monkeypatch.delenv("XEDGE_STATUS_DIR", raising=False)
    missing = Requirement("method", "vllm.v1.core.block_pool", "BlockPool.pop_victims", ("self", "n"))
    monkeypatch.setattr(vllm_adapter, "REQUIREMENTS", (*vllm_adapter.REQUIREMENTS, missing))
    patched_before = getattr(BlockPool, "_xedge_policy_name", None)
    with pytest.raises(VllmIncompatible, match=r"installed vLLM \d+\.\d+") as err:
        vllm_adapter.register()
    assert "vllm.v1.core.block_pool.BlockPool.pop_victims(self, n, ...)" in str(err.value)
    assert getattr(BlockPool, "_xedge_policy_name", None) == patched_before


def test_register_accepts_the_installed_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XEDGE_STATUS_DIR", raising=False)
    vllm_adapter.register()
    from vllm.v1.core.block_pool import BlockPool

    assert getattr(BlockPool, "_xedge_policy_name", None) is not None
