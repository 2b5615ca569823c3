"""The host tier's ``--kv-transfer-config``: written by the launcher (``server.launch.vllm_cmd``), read by the
connector inside vLLM (``vllm_connector``). The one home of its names and keys; imports nothing of vLLM."""

from __future__ import annotations

from typing import Any

CONNECTOR_NAME = "HostKVTier"
CONNECTOR_MODULE = "server.engine.kv_tier.vllm_connector"
HOST_BLOCKS_KEY = "host_blocks"


class HostKVTierError(ValueError):
    """A bad host-tier configuration, named at engine start-up."""


def kv_transfer_config(host_blocks: int) -> dict[str, Any]:
    """vLLM's ``--kv-transfer-config`` for a tier of ``host_blocks`` blocks: loads are synchronous and a failed
    one is recomputed (a best-effort cache never fails a request)."""
    return {
        "kv_connector": CONNECTOR_NAME,
        "kv_connector_module_path": CONNECTOR_MODULE,
        "kv_role": "kv_both",
        "kv_load_failure_policy": "recompute",
        "kv_connector_extra_config": {HOST_BLOCKS_KEY: host_blocks},
    }


def host_blocks(extra: dict[str, Any] | None) -> int:
    """The tier's size from ``kv_connector_extra_config``; ``HostKVTierError`` naming the key when it is bad."""
    value = (extra or {}).get(HOST_BLOCKS_KEY)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HostKVTierError(
            f"kv_connector_extra_config.{HOST_BLOCKS_KEY}: the host tier's size in KV blocks, an integer >= 1; "
            f"got {value!r}"
        )
    return value
