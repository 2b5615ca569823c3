"""What the host KV tier's connector (``vllm_connector``) relies on in vLLM: checked per version by
``scripts/vllm_compat_check.py`` (no vLLM import here). ``bind_kv_cache_manager`` is optional: without it
(vLLM 0.26 - 0.29) the connector stops at start-up with that message, and ``xedge serve`` runs without the tier."""

from __future__ import annotations

from attention_backend.vllm.contract import Requirement

_BASE = "vllm.distributed.kv_transfer.kv_connector.v1.base"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("class", _BASE, "KVConnectorBase_V1"),
    Requirement("class", _BASE, "KVConnectorMetadata"),
    Requirement("class", _BASE, "KVConnectorRole"),
    Requirement("method", _BASE, "KVConnectorBase_V1.__init__", params=("self", "vllm_config", "role", "kv_cache_config")),
    Requirement("method", _BASE, "KVConnectorBase_V1.get_num_new_matched_tokens", params=("self", "request", "num_computed_tokens")),
    Requirement("method", _BASE, "KVConnectorBase_V1.update_state_after_alloc", params=("self", "request", "blocks", "num_external_tokens")),
    Requirement("method", _BASE, "KVConnectorBase_V1.build_connector_meta", params=("self", "scheduler_output")),
    Requirement("method", _BASE, "KVConnectorBase_V1.request_finished", params=("self", "request", "block_ids")),
    Requirement("method", _BASE, "KVConnectorBase_V1.register_kv_caches", params=("self", "kv_caches")),
    Requirement("method", _BASE, "KVConnectorBase_V1.start_load_kv", params=("self", "forward_context")),
    Requirement("method", _BASE, "KVConnectorBase_V1.wait_for_save", params=("self",)),
    Requirement("method", _BASE, "KVConnectorBase_V1._get_connector_metadata"),
    Requirement(
        "method", _BASE, "KVConnectorBase_V1.bind_kv_cache_manager", optional=True,
        why="the scheduler side reads a request's block ids from the bound KVCacheManager; without it the connector refuses to start",
    ),
    Requirement("name", "vllm.config.kv_transfer", "KVTransferConfig"),
    Requirement("attr", "vllm.config.kv_transfer", "KVTransferConfig.kv_connector_module_path"),
    Requirement("attr", "vllm.config.kv_transfer", "KVTransferConfig.kv_load_failure_policy"),
    Requirement("attr", "vllm.v1.request", "Request.block_hashes"),
    Requirement("method", "vllm.v1.core.kv_cache_manager", "KVCacheManager.get_block_ids"),
)  # fmt: skip
