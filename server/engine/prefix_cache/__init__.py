"""Prefix-aware KV-cache eviction: policies behind one contract (``policy.EvictionPolicy``), a registry,
the vLLM adapter (``vllm_adapter``, the only module importing vLLM), a trace-driven simulator (``sim``)
and Prometheus metrics (``metrics``)."""
