"""A second KV tier in host memory behind vLLM's own cache (issue 15): blocks vLLM computed are copied out once,
and a later request whose prefix vLLM has evicted loads them back instead of recomputing them.

- ``slots``: which block hash lives in which host slot (pure Python; the scheduler side's index, LRU).
- ``config``: its ``--kv-transfer-config`` (names, keys, the size check): what the launcher writes and the
  connector reads.
- ``vllm_connector``: the vLLM KV connector (``KVConnectorBase_V1``) that runs it; the only module here that
  imports vLLM. ``xedge serve --kv-host-tier-blocks N`` turns it on.
"""
