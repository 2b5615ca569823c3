"""Settings of `xedge serve` (and of the stack the tests and the demo start): env vars `XEDGE_*` or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """One xedge stack: a vLLM OpenAI server with our plugins, and the router in front of it.

    `model`: a local HF model directory; None = the packaged SmolLM2-135M-Instruct.
    `vllm_port`: 0 picks a free loopback port. `device`: auto = CUDA if torch sees a GPU, else CPU.
    `kv_cache_gib`: the KV cache size on CPU (vLLM's `--kv-cache-memory-bytes`); on GPU vLLM sizes it.
    `xattn`: the additional_config block for the attention backend (built by `attention_backend`).
    `dtype`: vLLM's `--dtype`; None = float32 on CPU (vLLM's `auto` runs a float32 checkpoint in bfloat16,
    which AVX2 CPUs compute far slower in prefill: measured in bench/results/routing_latency/) and
    vLLM's own choice on CUDA.
    `sampling_verify`: load xedge's verify logits processor into vLLM (`--logits-processors`), which the
    router's verify of sampling sessions needs (without it that verify answers 400). None = on for CPU
    (vLLM's CPU runner is V1 anyway) and off on CUDA: vLLM 0.26+ gives up its V2 model runner whenever a
    custom logits processor is configured (the measured cost: bench/results/verify/vllm_runner_cost.json).
    `vllm_api_key`: the key of vLLM's local port (the router sends it); None = a random one per stack.
    `cache_salt_secret`: the secret of the tenants' prefix-cache salts; None = a random one per stack.
    `kv_host_tier_blocks`: a second KV tier of this many blocks in host memory behind vLLM's cache
    (`server.engine.kv_tier`: computed blocks are copied out, evicted prefixes load back); 0 = off.
    `allow_open`: let `xedge serve` listen beyond loopback without router API keys (XEDGE_ROUTER_API_KEYS),
    i.e. trust every caller and take the tenant from a header; refused unless set.
    """

    # hide_input_in_errors: a malformed secret (vllm_api_key, cache_salt_secret) must not be echoed into errors.
    # env_ignore_empty: `XEDGE_MODEL=` (a sourced deploy/.env) means unset, as in compose, not the current directory.
    model_config = SettingsConfigDict(env_prefix="XEDGE_", frozen=True, extra="ignore", hide_input_in_errors=True,
                                      env_ignore_empty=True)

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=0, le=65535)
    vllm_port: int = Field(0, ge=0, le=65535)
    model: str | None = None
    served_model_name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prefix_cache_policy: str = "lru"
    kv_cache_gib: float = Field(1.0, gt=0, le=2**20, allow_inf_nan=False)  # at most 1 PiB: a byte count vLLM takes
    kv_host_tier_blocks: int = Field(0, ge=0)
    max_model_len: int | None = Field(None, gt=0)
    block_size: int | None = Field(None, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    num_blocks_override: int | None = Field(None, gt=0)
    xattn: dict[str, object] = Field(default_factory=dict)
    vllm_args: tuple[str, ...] = ()
    run_dir: Path | None = None
    startup_timeout_s: float = Field(600.0, gt=0)
    router: bool = True
    sampling_verify: bool | None = None
    vllm_api_key: str | None = Field(None, min_length=16, repr=False)
    cache_salt_secret: str | None = Field(None, min_length=16, repr=False)
    allow_open: bool = False

    @field_validator("prefix_cache_policy")
    @classmethod
    def _known_policy(cls, name: str) -> str:
        # Fail here, in one line, rather than as a plugin error inside vLLM's engine process.
        from server.engine.prefix_cache.registry import policy_class

        policy_class(name)
        return name
