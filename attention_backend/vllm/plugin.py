"""The ``vllm.general_plugins`` entry point ``xedge_attention``: put our backend in vLLM's path.

vLLM calls :func:`register` in every process it starts (API server, EngineCore, worker). On CPU it
replaces vLLM's ``CPU_ATTN`` backend with ``attention_backend.vllm.cpu.XAttentionCPUBackend``, on CUDA
``FLASH_ATTN`` (FlashAttention 3 on Hopper) with ``attention_backend.vllm.cuda.XAttentionCudaBackend``;
both keep vLLM's backend name (a new name would need its own enum entry). vLLM imports the class from
that path when it builds the model, so a CPU host never imports the CUDA adapter.

Differences between the supported vLLM versions (0.26 - 0.33, docs/vllm_versions.md) are handled in the
two adapters and nowhere else. :func:`register` first checks the installed vLLM against
``requirements.REQUIREMENTS`` (raising ``VllmIncompatible`` with the version and missing symbols).
"""

from __future__ import annotations

from vllm.platforms import current_platform

from attention_backend.vllm.common import vllm_report
from client_edge.protocol.status_marker import write_marker

try:  # vLLM >= 0.11 keeps the registry under v1/
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend
except ImportError:  # pragma: no cover - older layout
    from vllm.attention.backends.registry import (  # type: ignore[no-redef]
        AttentionBackendEnum,
        register_backend,
    )

CPU_BACKEND_PATH = "attention_backend.vllm.cpu.XAttentionCPUBackend"
CUDA_BACKEND_PATH = "attention_backend.vllm.cuda.XAttentionCudaBackend"


def register() -> None:
    """Register our backend for this platform (idempotent).

    Raises ``VllmIncompatible`` (nothing registered) when the installed vLLM lacks what we need."""
    vllm_report()
    if current_platform.is_cpu():
        register_backend(AttentionBackendEnum.CPU_ATTN, CPU_BACKEND_PATH)
        write_marker("attention", "registered", {"backend": "CPU_ATTN", "class_path": CPU_BACKEND_PATH})
        return
    if current_platform.is_cuda():
        register_backend(AttentionBackendEnum.FLASH_ATTN, CUDA_BACKEND_PATH)
        write_marker("attention", "registered", {"backend": "FLASH_ATTN", "class_path": CUDA_BACKEND_PATH})
        return
    raise NotImplementedError(
        f"xedge XAttention supports the CPU and CUDA platforms only, got {current_platform.device_name!r}"
    )
