"""Engine-side half of the router's sampling verify: the speculative-sampling rule on full-vocabulary
probabilities (``rule``) and the vLLM logits processor that applies it inside vLLM (``vllm_adapter``)."""
