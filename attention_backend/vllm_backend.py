"""The vLLM adapter: the only module of ``attention_backend`` that imports vLLM.

``register()`` is the ``vllm.general_plugins`` entry point ``xedge_attention``. vLLM calls it in every
process it starts (API server, EngineCore, worker). On CPU it replaces vLLM's ``CPU_ATTN`` backend with
``XAttentionCPUBackend``, a subclass that keeps the name ``CPU_ATTN`` (a new name would need its own
enum entry) and whose impl delegates to vLLM's own CPU kernels. On CUDA the Triton kernels of
``attention_backend.kernels`` are not wired yet, so ``register()`` raises NotImplementedError there.

Differences between the supported vLLM versions (0.26 - 0.33) are handled here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

from vllm.platforms import current_platform
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend, CPUAttentionBackendImpl

from attention_backend.status import write_marker

try:  # vLLM >= 0.11 keeps the registry under v1/
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend
except ImportError:  # pragma: no cover - older layout
    from vllm.attention.backends.registry import (  # type: ignore[no-redef]
        AttentionBackendEnum,
        register_backend,
    )

logger = logging.getLogger(__name__)

CPU_BACKEND_PATH = f"{__name__}.XAttentionCPUBackend"


def register() -> None:
    """vLLM general-plugin entry point: put our attention backend in vLLM's path (idempotent)."""
    if current_platform.is_cpu():
        register_backend(AttentionBackendEnum.CPU_ATTN, CPU_BACKEND_PATH)
        write_marker("attention", "registered", {"backend": "CPU_ATTN", "class_path": CPU_BACKEND_PATH})
        return
    if current_platform.is_cuda():
        raise NotImplementedError(
            "xedge XAttention on CUDA is not wired yet: the Triton kernels (attention_backend/kernels) "
            "and their vLLM backend registration are missing; run on CPU or disable the plugin with "
            "VLLM_PLUGINS excluding 'xedge_attention'"
        )
    raise NotImplementedError(
        f"xedge XAttention supports the CPU and CUDA platforms only, got {current_platform.device_name!r}"
    )


class XAttentionCPUBackendImpl(CPUAttentionBackendImpl):
    """vLLM's CPU attention impl with XAttention for long prefills (dense decode via ``super()``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        write_marker(
            "attention",
            "impl",
            {
                "class": type(self).__name__,
                "num_heads": self.num_heads,
                "num_kv_heads": self.num_kv_heads,
                "head_size": self.head_size,
            },
        )


class XAttentionCPUBackend(CPUAttentionBackend):
    """vLLM's CPU backend with our impl; ``get_name()`` stays ``CPU_ATTN`` (inherited)."""

    @staticmethod
    def get_impl_cls() -> type[XAttentionCPUBackendImpl]:
        return XAttentionCPUBackendImpl
