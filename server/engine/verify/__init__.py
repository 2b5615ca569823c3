"""Engine-side half of the router's sampling verify: the speculative-sampling rule on full-vocabulary
probabilities (``rule``) and the vLLM logits processor that applies it inside vLLM (``vllm_adapter``)."""

PROCESSOR_FQCN = "server.engine.verify.vllm_adapter:SpeculativeVerifyProcessor"
"""What vLLM's ``--logits-processors`` / ``LLM(logits_processors=...)`` takes (``module:Class``)."""
