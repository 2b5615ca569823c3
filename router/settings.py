"""Router settings: environment variables ``XEDGE_ROUTER_*`` or ``python -m router --flag ...``."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from client_edge.protocol import MAX_DRAFT, MAX_K, MAX_TOP_N
from router.auth import check_api_keys, parse_api_keys


class RouterSettings(BaseSettings):
    """Every knob of the router, each default written once here.

    ``vllm_urls``: base URLs of the vLLM replicas (all serving the same model); env var as JSON list or
    comma-separated. ``tokenizer_dir``: where the cloud tokenizer lives; unset = the model directory vLLM
    reports as ``root`` in ``/v1/models`` (works when router and vLLM share a filesystem).
    ``tenant_cache_salt``: salt vLLM's prefix cache per tenant (no cross-tenant hits or timing).
    """

    # hide_input_in_errors: a malformed api_keys value must not be echoed (with the keys in it) into logs.
    model_config = SettingsConfigDict(env_prefix="XEDGE_ROUTER_", frozen=True, extra="forbid", hide_input_in_errors=True)

    vllm_urls: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://127.0.0.1:8000"], min_length=1)
    served_model: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    tokenizer_dir: Path | None = None
    engine_timeout_s: float = Field(120.0, gt=0)
    startup_timeout_s: float = Field(60.0, ge=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    body_timeout_s: float = Field(30.0, gt=0, description="a request body not complete within this is answered 408")
    max_connections: int = Field(4096, ge=1, description="connections and requests at once (uvicorn); more get 503")
    max_k: int = Field(64, ge=1, le=MAX_K)
    max_top_n: int = Field(MAX_TOP_N, ge=0, le=MAX_TOP_N)
    max_draft: int = Field(16, ge=1, le=MAX_DRAFT)
    max_temperature: float = Field(
        2.0, gt=0, le=2.0, description="highest session sampling temperature (vLLM refuses any above 2)"
    )
    max_sessions: int = Field(10_000, ge=1)
    session_ttl_s: float = Field(3600.0, gt=0)
    session_store: str = Field(
        "memory", description="'memory' (this process only) or a redis:// / rediss:// / unix:// URL (shared, durable)"
    )
    idempotency_records: int = Field(32, ge=1, description="replies kept per session for retried request ids")
    idempotency_bytes: int = Field(
        1_048_576, ge=1024, description="bytes of those replies kept per session (oldest dropped first, the newest always kept)"
    )
    # Per-tenant caps (router.quota): no tenant can take the router from the others.
    tenant_max_sessions: int = Field(1_000, ge=1, description="edge sessions one tenant may hold")
    tenant_max_bytes: int = Field(256 * 2**20, ge=4096, description="bytes of session state one tenant may hold")
    tenant_max_concurrent: int = Field(64, ge=1, description="requests of one tenant in flight at once, any route")
    max_chars_per_token: int = Field(
        32, ge=1, description="text mode: text longer than this many characters per allowed token is refused untokenised"
    )
    tenant_cache_salt: bool = True
    cache_salt_secret: str = Field(
        default_factory=lambda: secrets.token_urlsafe(32), min_length=8, repr=False,
        description="secret of the tenants' cache salts; default: random per router process (`xedge serve`: per stack)",
    )  # fmt: skip
    vllm_api_key: str | None = Field(None, repr=False, description="key of the vLLM replicas' port (vLLM --api-key)")
    text_holdback_tokens: int = Field(2, ge=1, description="text mode: trailing cloud tokens kept re-tokenisable")
    log_level: str = "info"
    # Deployment surface (router.operations): API keys, rate limits, prefix-cache stats for /metrics.
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="API key -> tenant; env/flag 'tenant:key,tenant:key'; empty = no auth"
    )
    rate_limit_rps: float = Field(0.0, ge=0, description="requests/s per API key (0 = unlimited)")
    rate_limit_burst: int = Field(20, ge=1, description="requests an API key may burst above its rate")
    open_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/health", "/v1/info"],
        description="paths served without a key when keys are set (router.gate); comma-separated",
    )
    auth_failure_burst: int = Field(20, ge=1, description="failed authentications a client address may make at once")
    auth_failure_rps: float = Field(0.2, gt=0, description="rate at which a client address regains failed attempts")
    status_dir: Path | None = Field(None, description="the vLLM replicas' XEDGE_STATUS_DIR (prefix-cache stats)")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.lstrip().startswith("{") else parse_api_keys(value)
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: dict[str, str]) -> dict[str, str]:
        check_api_keys(value)
        return value

    @field_validator("session_store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"session_store must be 'memory' or a redis://, rediss:// or unix:// URL, not {value!r}")
        return value

    @field_validator("open_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.lstrip().startswith("[") else [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("vllm_urls", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [u.strip() for u in value.split(",") if u.strip()]
        return value
